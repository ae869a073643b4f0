"""widerl.bench.update: result shape, the ratios' definitions, the FLOP count against a hand count,
the sbx peer (JAX threads, compilations kept out of the timing), presets and a compiled step."""

from __future__ import annotations

import statistics
import sys
from typing import Any

import pytest
import torch

from widerl.bench.update import format_bench, measure_matmul_peak, run_bench

OBS, ACT, UNITS, B = 11, 3, 16, 32

KEYS = {
    "algo", "arch", "units", "layers", "obs_dim", "act_dim", "batch_size", "device", "updates",
    "rounds", "torch_threads", "ours_updates_per_s", "peer_updates_per_s", "ratio",
    "ours_per_round", "peer_per_round", "flops_per_update", "peak_flops", "achieved_flops",
    "peak_flops_fraction",
}  # fmt: skip


def tiny(algo: str, peer: bool | str | None = True, **kw: Any) -> dict[str, Any]:
    # A small square keeps the peak measurement at milliseconds; the rest is the brief's tiny size.
    return run_bench(
        algo, UNITS, 1, obs_dim=OBS, act_dim=ACT, batch_size=B, updates=5, rounds=2,
        warmup_updates=2, fill=500, peer=peer, peak_square=256, **kw,
    )  # fmt: skip


@pytest.fixture(scope="module", params=["sac", "td3"])
def result(request: pytest.FixtureRequest) -> dict[str, Any]:
    pytest.importorskip("stable_baselines3")
    return tiny(request.param)


def f(n_in: int, n_out: int) -> int:
    """FLOPs of one (B x n_in) @ (n_in x n_out) product, as FlopCounterMode counts them."""
    return 2 * B * n_in * n_out


def hand_count(algo: str) -> float:
    """Matmul FLOPs of one update of a one-hidden-layer MLP agent, counted by hand.

    ``*_fwd``: all Linear layers of one network forward (the bias add is not a matmul FLOP).
    Backward costs one product per weight gradient and one per input gradient; autograd skips
    the input gradient of a first layer whose input (raw obs/actions) needs no gradient, so
    ``*_in`` is ``*_fwd`` without the first layer. The critic ensemble's products count what
    the same products of separate critics would.
    """
    critic = [f(OBS + ACT, UNITS), f(UNITS, 1)]
    c_fwd, c_in = sum(critic), sum(critic[1:])
    c_to_action = c_fwd  # the whole input gradient, and the output layer's as a matmul
    if algo == "sac":
        actor = [f(OBS, UNITS), f(UNITS, ACT), f(UNITS, ACT)]  # body, mean and log-std heads
        a_fwd, a_in = sum(actor), sum(actor[1:])
        target = a_fwd + 2 * c_fwd  # a' ~ pi(s'), both target critics
        critic_step = 2 * c_fwd + 2 * c_fwd + 2 * c_in  # forward, weight and input grads
        # Actor step: actor and both (frozen) critics forward; backward through the critics
        # down to the action input (no critic weight grads), then the actor's weights.
        actor_step = a_fwd + 2 * c_fwd + 2 * c_to_action + a_fwd + a_in
        return target + critic_step + actor_step
    actor = [f(OBS, UNITS), f(UNITS, ACT)]
    a_fwd, a_in = sum(actor), sum(actor[1:])
    every = a_fwd + 2 * c_fwd + 2 * c_fwd + 2 * c_fwd + 2 * c_in  # target + critic step
    # Every 2nd update (policy delay): actor and critic 1 forward, backward through critic 1's
    # input and the actor's weights.
    delayed = a_fwd + c_fwd + c_to_action + a_fwd + a_in
    return every + delayed / 2


@pytest.mark.parametrize("algo", ["sac", "td3"])
def test_update_flops_match_hand_count(algo: str) -> None:
    from widerl.agents import make_agent
    from widerl.bench.update import update_flops
    from widerl.config import resolve
    from widerl.replay.buffer import ReplayBuffer

    agent = make_agent(
        resolve({"algo": algo, "units": UNITS, "layers": 1}), OBS, ACT, torch.device("cpu")
    )
    rb = ReplayBuffer(OBS, ACT, 100)
    rb.add(torch.randn(100, OBS), torch.rand(100, ACT), torch.randn(100), torch.randn(100, OBS),
           torch.zeros(100))  # fmt: skip
    flops = update_flops(agent, rb, B, 2 if algo == "td3" else 1)
    assert flops == pytest.approx(hand_count(algo), rel=1e-9)


def test_keys_and_positive(result: dict[str, Any]) -> None:
    assert not KEYS - result.keys(), "missing keys"
    for key in ("ours_updates_per_s", "peer_updates_per_s", "ratio", "flops_per_update",
                "peak_flops", "achieved_flops", "peak_flops_fraction"):  # fmt: skip
        assert result[key] > 0, key
    assert len(result["ours_per_round"]) == len(result["peer_per_round"]) == result["rounds"]
    assert all(x > 0 for x in result["ours_per_round"] + result["peer_per_round"])
    assert result["torch_threads"] == torch.get_num_threads()


def test_summaries_follow_rounds(result: dict[str, Any]) -> None:
    ours, peer = result["ours_per_round"], result["peer_per_round"]
    assert result["ours_updates_per_s"] == pytest.approx(statistics.median(ours))
    assert result["peer_updates_per_s"] == pytest.approx(statistics.median(peer))
    per_round = [o / p for o, p in zip(ours, peer, strict=True)]
    assert result["ratio"] == pytest.approx(statistics.median(per_round))
    assert min(per_round) <= result["ratio"] <= max(per_round)
    achieved = result["flops_per_update"] * result["ours_updates_per_s"]
    assert result["achieved_flops"] == pytest.approx(achieved)
    assert result["peak_flops_fraction"] == pytest.approx(achieved / result["peak_flops"])


def test_flops_match_hand_count(result: dict[str, Any]) -> None:
    # Exact: both count the same matmuls. A counter wired around the wrong region (e.g. only
    # the forward pass, or one TD3 update without the delayed actor step) misses by > 20%.
    assert result["flops_per_update"] == pytest.approx(hand_count(result["algo"]), rel=1e-9)


def test_format(result: dict[str, Any]) -> None:
    text = format_bench(result)
    assert "SB3" in text and "ratio" in text and "peak" in text
    assert f"{result['ratio']:.2f}" in text


def test_no_peer() -> None:
    r = tiny("sac", peer=False, threads=1)
    assert r["peer_updates_per_s"] is None and r["ratio"] is None and r["peer_per_round"] is None
    assert r["flops_per_update"] == pytest.approx(hand_count("sac"), rel=1e-9)
    assert "SB3" not in format_bench(r)


def test_threads_restored() -> None:
    # The work runs on 1 thread: 2 OpenMP threads on a busy 2-vCPU machine can take minutes.
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        r = tiny("td3", peer=False, threads=1)
        assert r["torch_threads"] == 1
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_missing_sb3_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "stable_baselines3", None)  # makes the import fail
    with pytest.raises(ImportError, match=r"pip install widerl\[bench\]"):
        tiny("sac")


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        tiny("sac", peer=False, threads=0)
    with pytest.raises(ValueError):
        run_bench("sac", UNITS, 1, updates=0, peer=False)
    with pytest.raises(ValueError, match="sb3, sbx"):
        tiny("sac", peer="sbz")


def test_peak_of_known_shapes() -> None:
    peak, shapes = measure_matmul_peak([(64, 64, 64), (128, 128, 128)], repeats=1,
                                       min_seconds=0.005)  # fmt: skip
    assert [(s["m"], s["k"], s["n"]) for s in shapes] == [(64, 64, 64), (128, 128, 128)]
    assert peak == max(s["flops"] for s in shapes) > 0


def test_update_anatomy_benchmark_splits_an_update() -> None:
    """benchmarks/update_anatomy.py at a tiny size: both sides' updates split into matmul
    kernels, other kernels and the rest, with SB3 running more ops per update than ours."""
    pytest.importorskip("stable_baselines3")
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[2] / "benchmarks" / "update_anatomy.py"
    spec = importlib.util.spec_from_file_location("update_anatomy", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    res = mod.anatomy("td3", 16, 2, batch_size=B, updates=4, rounds=1)
    for side in ("ours", "sb3"):
        r = res[side]
        assert r["ms_per_update"] > 0 and r["matmul_ms"] > 0 and r["other_kernels_ms"] > 0
        # At least the forward products of the target actor, both target critics and both
        # critics: 3 layers each.
        assert r["matmul_ops"] >= 15
    assert res["sb3"]["other_ops"] > res["ours"]["other_ops"]
    assert res["ceiling"] == pytest.approx(res["sb3"]["ms_per_update"] / res["ours"]["matmul_ms"])
    assert "ceiling" in mod.format_anatomy(res)


# --- the sbx peer ---------------------------------------------------------------------------
def _sbx() -> None:
    pytest.importorskip("sbx", reason="sbx (Stable Baselines Jax) is not installed: widerl[bench]")


def _cli_json(args: list[str]) -> dict[str, Any]:
    """`widerl bench ... --json` through the real entry point, its stdout parsed."""
    import contextlib
    import io
    import json

    from widerl.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["bench", *args, "--json"]) == 0
    return json.loads(out.getvalue())


TINY_CLI = ["--units", str(UNITS), "--layers", "1", "--batch-size", str(B), "--updates", "5",
            "--rounds", "2", "--obs-dim", str(OBS), "--act-dim", str(ACT),
            "--threads", "1"]  # fmt: skip


@pytest.fixture(scope="module")
def sbx_result() -> dict[str, Any]:
    """TD3, so that its policy delay gives sbx's compiled train two variants per mode."""
    _sbx()
    return _cli_json(["--algo", "td3", "--peer", "sbx", *TINY_CLI])


@pytest.mark.slow
def test_sbx_peer_end_to_end(sbx_result: dict[str, Any]) -> None:
    r = sbx_result
    assert r["peer"] == "sbx" and r["peer_version"]
    assert r["peer_modes"] == ["one_per_call", "many_per_call"]
    assert r["peer_updates_per_call"] == {"one_per_call": 1, "many_per_call": 5}
    assert r["peer_threads"] == 1 and r["peer_device"].lower().startswith(("cpu", "tfrt_cpu"))
    assert r["peer_net_arch"] == [UNITS]
    for mode in r["peer_modes"]:
        assert len(r[f"peer_{mode}_per_round"]) == r["rounds"]
        assert all(x > 0 for x in r[f"peer_{mode}_per_round"])
    # JAX compiles sbx's train once per step count and policy-delay phase: all in the burn-in.
    assert r["peer_compiles_timed"] == 0
    assert r["flops_per_update"] == pytest.approx(hand_count("td3"), rel=1e-9)


@pytest.mark.slow
def test_sbx_ratios_are_medians_of_per_round_ratios(sbx_result: dict[str, Any]) -> None:
    r = sbx_result
    ours = r["ours_per_round"]
    for mode in ("one_per_call", "many_per_call"):
        peer = r[f"peer_{mode}_per_round"]
        per_round = [o / p for o, p in zip(ours, peer, strict=True)]
        assert r[f"ratio_{mode}"] == pytest.approx(statistics.median(per_round))
        assert r[f"peer_{mode}_updates_per_s"] == pytest.approx(statistics.median(peer))
    # The headline figures are one update per call: what a training loop pays.
    assert r["ratio"] == r["ratio_one_per_call"]
    assert r["peer_updates_per_s"] == r["peer_one_per_call_updates_per_s"]
    assert r["peer_per_round"] == r["peer_one_per_call_per_round"]
    text = format_bench(r)
    assert "sbx updates/s 1/call" in text and "sbx updates/s 5/call" in text
    assert f"{r['ratio_one_per_call']:.2f}" in text and f"{r['ratio_many_per_call']:.2f}" in text


def test_sb3_result_names_its_one_mode(result: dict[str, Any]) -> None:
    assert result["peer"] == "stable-baselines3" and result["peer_modes"] == ["many_per_call"]
    assert result["ratio"] == result["ratio_many_per_call"]
    assert result["peer_updates_per_call"] == {"many_per_call": result["updates"]}
    assert result["peer_net_arch"] == [UNITS]


def test_jax_compiles_are_counted() -> None:
    _sbx()
    import jax

    from widerl.bench.peers import count_jax_compiles

    f = jax.jit(lambda x: x * 3.0 + 1.0)
    x = jax.numpy.ones(7)
    with count_jax_compiles() as first:
        f(x).block_until_ready()
    with count_jax_compiles() as again:
        f(x).block_until_ready()
    assert len(first) >= 1 and again == []


def test_jax_runs_on_the_thread_count_asked_for() -> None:
    """start_jax(1) sizes XLA's CPU pool by pinning the thread that creates it, then unpins
    every thread: afterwards one thread does a matmul loop's work, and no thread stays pinned."""
    _sbx()
    import os

    import jax
    import jax.numpy as jnp

    from widerl.bench.peers import start_jax

    cores = os.sched_getaffinity(0)

    def ticks() -> dict[str, int]:
        out = {}
        for tid in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{tid}/stat") as fh:
                    stat = fh.read().rsplit(")", 1)[1].split()
            except OSError:  # a thread that ended meanwhile
                continue
            out[tid] = int(stat[11]) + int(stat[12])  # utime + stime
        return out

    start_jax(1, "cpu")
    for tid in os.listdir("/proc/self/task"):
        assert os.sched_getaffinity(int(tid)) == cores
    f = jax.jit(lambda x: jnp.tanh(x @ x) @ x)
    a = jnp.ones((512, 512))
    f(a).block_until_ready()
    before = ticks()
    for _ in range(100):
        f(a).block_until_ready()
    used = [t - before.get(k, 0) for k, t in ticks().items()]
    busy = [u for u in used if u > 0.25 * sum(used)]
    assert len(busy) == 1, sorted(used, reverse=True)[:4]


def test_missing_sbx_says_how_to_install(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from widerl.cli import main

    monkeypatch.setitem(sys.modules, "sbx", None)
    assert main(["bench", "--peer", "sbx", *TINY_CLI]) == 2
    err = capsys.readouterr().err
    assert "--peer sbx needs sbx" in err and "pip install 'widerl[bench]'" in err
    with pytest.raises(ImportError, match=r"pip install widerl\[bench\]"):
        tiny("sac", peer="sbx")


# --- our side: presets, a compiled step ---------------------------------------------------
@pytest.mark.slow
def test_preset_shapes_ours_and_the_peer_stays_an_mlp() -> None:
    """--preset paper-S: our side is the preset's DenseNet agent with OFENet (units and layers
    overridden to tiny sizes), the SB3 peer a plain MLP of the same width and depth."""
    pytest.importorskip("stable_baselines3")
    r = _cli_json(["--preset", "paper-S", "--peer", "sb3", *TINY_CLI])
    assert (r["preset"], r["arch"], r["units"], r["layers"]) == ("paper-S", "densenet", UNITS, 1)
    assert r["ofenet_units"] == 256 and r["peer_net_arch"] == [UNITS]
    # OFENet's update and a DenseNet body cost more matmuls than the plain MLP agent.
    assert r["flops_per_update"] > 2 * hand_count("sac")
    assert "densenet 16x1 + OFENet 256" in format_bench(r)


def test_preset_gives_its_own_sizes() -> None:
    r = run_bench("sac", preset="paper-original", obs_dim=OBS, act_dim=ACT, batch_size=B,
                  updates=1, rounds=1, warmup_updates=0, fill=300, peer=None,
                  peak_square=64, threads=1)  # fmt: skip
    assert (r["arch"], r["units"], r["layers"], r["ofenet_units"]) == ("mlp", 256, 2, 0)


@pytest.mark.slow
def test_compiled_step_is_timed_after_its_compilation() -> None:
    """--compile at a tiny size (compiling takes ~20 s, in the burn-in); a compilation in the
    timed rounds would raise (fail_on_recompile). FLOPs are counted on the eager step."""
    r = _cli_json(["--algo", "sac", "--peer", "none", "--compile", "on", *TINY_CLI])
    assert r["compiled"] is True and r["ours_updates_per_s"] > 0
    assert r["flops_per_update"] == pytest.approx(hand_count("sac"), rel=1e-9)
    assert "compiled" in format_bench(r)


def test_utd_times_calls_of_several_updates(
    monkeypatch: pytest.MonkeyPatch, learn_step_sizes: list[int]
) -> None:
    """--utd 3: ours runs calls of 3 updates, as a run does, in the burn-in and the rounds
    (5 updates a round round up to 2 calls); compiled (aot_eager here), the burn-in compiles
    both of TD3's actor-delay patterns, so nothing compiles in the timed rounds."""
    import widerl.run.step as learner

    sizes = learn_step_sizes
    r = _cli_json(["--algo", "td3", "--peer", "none", "--utd", "3", *TINY_CLI])
    assert r["utd"] == 3 and r["ours_updates_per_s"] > 0
    # Burn-in (20 updates: 7 calls), 2 rounds of 2 calls; FLOPs are counted on single steps.
    assert [n for n in sizes if n > 1] == [3] * (7 + 2 * 2)
    assert "widerl updates/s 3/call" in format_bench(r)
    original = learner.compile_step
    monkeypatch.setattr(learner, "compile_step", lambda fn, dev, backend="inductor", **kw:
        original(fn, dev, "aot_eager", **kw))  # fmt: skip
    r = tiny("td3", peer=False, compiled=True, settings={"utd": 3})
    assert r["compiled"] and r["ours_updates_per_s"] > 0


def test_compile_is_refused_with_distributed(capsys) -> None:
    from widerl.cli import main

    assert main(["bench", "--distributed", "--compile", "on"]) == 2
    assert "--compile" in capsys.readouterr().err


def test_no_peer_with_a_peer_is_refused(capsys) -> None:
    """--no-peer beside --peer sbx contradicts it: refused (it once silently won)."""
    from widerl.cli import main

    assert main(["bench", "--obs-dim", "3", "--act-dim", "1", "--peer", "sbx", "--no-peer"]) == 2
    assert "--no-peer and --peer sbx" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "peer"),
    [([], "sb3"), (["--peer"], "sb3"), (["--peer", "sbx"], "sbx"), (["--peer", "none"], "none"),
     (["--no-peer"], "none"), (["--peer", "none", "--no-peer"], "none")],
)  # fmt: skip
def test_cli_peer_spellings(args: list[str], peer: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """--peer NAME, the older bare --peer (SB3) and --no-peer; only flags given reach ours."""
    import widerl.bench.update
    from widerl.cli import main

    seen: dict[str, Any] = {}
    monkeypatch.setattr(widerl.bench.update, "run_bench", lambda **kw: seen.update(kw) or {})
    monkeypatch.setattr(widerl.bench.update, "format_bench", lambda r: "")
    monkeypatch.setattr("widerl.bench.peers.peer_missing", lambda name: None)
    assert main(["bench", "--obs-dim", "3", "--act-dim", "1", *args, "--preset", "paper-S"]) == 0
    assert seen["peer"] == peer and seen["preset"] == "paper-S" and seen["compiled"] is False
    assert seen["units"] is seen["layers"] is seen["arch"] is None  # the preset's


# --- newer bodies and heads beside our MLP (--baseline mlp), same-method peers -----------
def test_baseline_is_our_mlp_of_the_same_sizes_timed_in_the_same_rounds() -> None:
    """--arch simba --baseline mlp: our SimBa agent and our plain MLP agent of the same width
    and depth interleaved in every round; the baseline's FLOPs are the MLP's hand count."""
    r = tiny("sac", peer=False, arch="simba", baseline="mlp", threads=1)
    assert (r["arch"], r["baseline"], r["baseline_algo"]) == ("simba", "mlp", "sac")
    ours, base = r["ours_per_round"], r["baseline_per_round"]
    assert len(base) == r["rounds"] and all(x > 0 for x in base)
    assert r["baseline_updates_per_s"] == pytest.approx(statistics.median(base))
    per_round = [o / b for o, b in zip(ours, base, strict=True)]
    assert r["ratio_baseline"] == pytest.approx(statistics.median(per_round))
    assert r["baseline_flops_per_update"] == pytest.approx(hand_count("sac"), rel=1e-9)
    # SimBa's blocks expand to 4d: more matmuls than the MLP of the same d.
    assert r["flops_per_update"] > 2 * r["baseline_flops_per_update"]
    frac = r["baseline_flops_per_update"] * r["baseline_updates_per_s"] / r["peak_flops"]
    assert r["baseline_peak_flops_fraction"] == pytest.approx(frac)
    text = format_bench(r)
    assert "baseline updates/s" in text and f"{r['ratio_baseline']:.2f}" in text


def test_categorical_head_costs_its_atoms() -> None:
    """--critic-head c51 --atoms 51: the critics' output layers have 51 outputs, not 1: the
    FLOPs grow by exactly those products (forward, weight and input gradients) over the MLP."""
    r = tiny("sac", peer=False, baseline="mlp", threads=1,
             settings={"critic_head": "c51", "atoms": 51})  # fmt: skip
    assert (r["critic_head"], r["atoms"]) == ("c51", 51)
    assert r["baseline_flops_per_update"] == pytest.approx(hand_count("sac"), rel=1e-9)
    assert r["flops_per_update"] > r["baseline_flops_per_update"]
    assert "c51 critic (51 atoms)" in format_bench(r)


def test_crossq_baseline_is_sac() -> None:
    from widerl.bench.update import baseline_config
    from widerl.config import resolve

    cfg = resolve({"algo": "crossq", "units": 64, "layers": 3, "actor_units": 32})
    base = baseline_config(cfg)
    shape = (base.algo, base.arch, base.units, base.layers, base.actor_units)
    assert shape == ("sac", "mlp", 64, 3, 32)
    assert base.critic_head == "scalar" and not base.obs_norm and base.ofenet_units == 0


def test_peer_runs_the_same_method_where_its_library_has_it() -> None:
    from widerl.bench.peers import _net_arch, peer_method
    from widerl.config import ConfigError

    assert peer_method("sbx", "crossq", "mlp") == ("CrossQ", "MlpPolicy")
    assert peer_method("sbx", "sac", "simba") == ("SAC", "SimbaPolicy")
    assert peer_method("sbx", "sac", "bronet") == ("SAC", "MlpPolicy")  # no BroNet in sbx
    assert peer_method("sb3", "sac", "simba") == ("SAC", "MlpPolicy")
    assert peer_method("sb3", "td3", "mlp") == ("TD3", "MlpPolicy")
    with pytest.raises(ConfigError, match="--peer sb3 has no CrossQ"):
        peer_method("sb3", "crossq", "mlp")
    assert _net_arch(256, 2, None) == _net_arch(256, 2, [256, 256]) == [256, 256]
    assert _net_arch(512, 2, [128]) == {"pi": [128], "qf": [512, 512]}


def test_cli_refuses_crossq_against_sb3(capsys) -> None:
    from widerl.cli import main

    assert main(["bench", "--algo", "crossq", "--peer", "sb3", *TINY_CLI]) == 2
    assert "--peer sb3 has no CrossQ" in capsys.readouterr().err


@pytest.mark.slow
def test_sbx_crossq_peer_end_to_end() -> None:
    """--algo crossq --peer sbx: sbx's CrossQ with our widths (policy delay 3: three phases
    of its compiled train, all compiled in the burn-in), our CrossQ and our MLP SAC."""
    _sbx()
    r = _cli_json(["--algo", "crossq", "--peer", "sbx", "--baseline", "mlp", *TINY_CLI])
    assert r["peer_method"] == "CrossQ MlpPolicy" and r["peer_net_arch"] == [UNITS]
    assert r["peer_compiles_timed"] == 0
    assert r["algo"] == "crossq" and r["baseline_algo"] == "sac"
    assert r["ratio"] > 0 and r["ratio_baseline"] > 0
