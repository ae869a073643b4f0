"""Gradient-update throughput of widerl next to a peer library, in one process.

``run_bench`` answers two questions about one network size:

1. How many learning steps per second does ours run (what `widerl train` runs per update:
   sampling, the feature learner's update, the agent's update, priorities; eager or
   torch.compile'd), and how does that compare with a peer's SAC/TD3 at the same width, depth,
   batch size and device: Stable-Baselines3 (PyTorch) or sbx (Stable Baselines Jax)? All run in
   the same process on the same random transitions, interleaved round by round, so that load
   changes on a shared machine hit every side; the ratio reported is the median of the
   per-round ratios, which cancels slow drifts better than a ratio of two medians. The peers
   live in ``bench_peers``.
   With ``baseline="mlp"`` the same run also times our plain MLP agent of the same width and
   depth (`baseline_config`), interleaved the same way: what a body (SimBa, BroNet), a critic
   head (C51, HL-Gauss) or CrossQ costs over the MLP, measured side by side.
2. What fraction of the device's matmul peak does our update reach? FLOPs of one update come from
   ``torch.utils.flop_counter.FlopCounterMode`` (matmul-family ops only, forward and backward,
   exactly the matmuls the update runs), and the peak is measured in the same run with the same
   thread count, on matmul shapes of the network's widest layers and a large square one.

The environment never steps: replay buffers are filled with random transitions, which is all an
update-throughput measurement needs.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from widerl.agents import make_agent
from widerl.agents.base import Agent
from widerl.bench.peers import ONE, PEERS, count_jax_compiles, make_peer, peer_method
from widerl.config import Config, resolve
from widerl.nets import onednn
from widerl.nets.ensemble import EnsembleLinear
from widerl.replay.buffer import ReplayBuffer
from widerl.run.step import LearnStep

__all__ = [
    "BASELINES",
    "baseline_config",
    "format_bench",
    "measure_matmul_peak",
    "run_bench",
    "update_flops",
]

# Transitions in both replay buffers: enough that a batch of 256 rarely repeats rows, small
# enough that filling costs nothing and both buffers stay cache-comparable.
DEFAULT_FILL = 10_000
# Side of the square matmul added to the peak shapes: large enough for BLAS to reach its best
# rate on a few CPU cores, small enough (17 GFLOP) to take ~0.1 s there.
PEAK_SQUARE = 2048
BASELINES = ("mlp",)
# Algorithms whose actor step runs every policy_delay-th update: a compiled step has two
# variants, and one update's FLOPs depend on its phase (averaged over a whole cycle).
DELAYED = ("td3", "crossq")


def _resolve_device(device: str | torch.device) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _synchronizer(device: torch.device) -> Callable[[], None]:
    """A function that waits for queued device work: CUDA kernels are asynchronous, so the clock
    may only be read after the stream has drained."""
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def _load_average() -> float | None:
    """1-minute load average, recorded with the result: other processes on the machine change
    the figures (a lot with 2+ OpenMP threads on a few cores), and this shows whether they ran."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):  # not on every platform
        return None


def _random_transitions(n: int, obs_dim: int, act_dim: int, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "obs": torch.randn(n, obs_dim, generator=g),
        "act": torch.rand(n, act_dim, generator=g) * 2.0 - 1.0,
        "rew": torch.randn(n, generator=g),
        "next_obs": torch.randn(n, obs_dim, generator=g),
        # A few terminations so the (1 - term) mask is not constant.
        "term": (torch.rand(n, generator=g) < 0.01).to(torch.float32),
    }


def random_replay(
    obs_dim: int,
    act_dim: int,
    n: int,
    seed: int,
    device: torch.device | str = "cpu",
    prioritized: bool = False,
) -> ReplayBuffer:
    """A full replay of `n` random transitions (`_random_transitions(n, ..., seed)`; the
    replay's own sampler seeded with `seed` too): what the benchmarks time updates on."""
    data = _random_transitions(n, obs_dim, act_dim, seed)
    replay = ReplayBuffer(obs_dim, act_dim, n, device, prioritized=prioritized, seed=seed)
    replay.add(data["obs"], data["act"], data["rew"], data["next_obs"], data["term"])
    return replay


# --- ours ---------------------------------------------------------------------------------
def _time_ours(step: LearnStep, n: int, sync: Callable[[], None], per_call: int = 1) -> float:
    """Learning steps per second over ``n`` steps (rounded up to whole calls of ``per_call``,
    --utd): what `widerl train` runs per update (sampling, the feature learner's update, the
    agent's update, priorities)."""
    calls = -(-n // per_call)
    sync()
    t0 = time.perf_counter()
    for i in range(calls):
        step(i * per_call, calls * per_call, per_call)
    sync()
    return calls * per_call / (time.perf_counter() - t0)


def update_flops(agent: Agent, replay: ReplayBuffer, batch_size: int, n_updates: int = 1) -> float:
    """Matmul FLOPs of one learning step, averaged over ``n_updates`` consecutive steps (run
    eagerly: the counter sees eager ops; a compiled step runs the same products or fewer).

    TD3 runs its actor step only every ``policy_delay`` updates, so one update alone would count
    either with or without it; averaging over a full delay cycle gives the per-update mean.
    """
    step = LearnStep(replay, agent.features, agent, batch_size)
    with FlopCounterMode(display=False) as counter:
        for i in range(n_updates):
            step(i, n_updates)
    return counter.get_total_flops() / n_updates


# --- peak ---------------------------------------------------------------------------------
def _linear_shapes(module: nn.Module) -> list[tuple[int, int]]:
    """(in, out) of every Linear layer, widest (most weights) first, deduplicated."""
    shapes = {(m.in_dim, m.out_dim) for m in module.modules() if isinstance(m, EnsembleLinear)}
    return sorted(shapes, key=lambda s: s[0] * s[1], reverse=True)


def peak_shapes(
    agent: Agent, batch_size: int, n_layers: int = 2, square: int = PEAK_SQUARE
) -> list[tuple[int, int, int]]:
    """(m, k, n) matmul shapes whose best rate stands for the device's peak.

    For each of the ``n_layers`` widest Linear layers, the three products an update runs on it:
    forward ``(B x in) @ (in x out)``, input gradient ``(B x out) @ (out x in)`` and weight
    gradient ``(out x B) @ (B x in)``; plus a large square product. Taking the best over several
    shapes makes the peak an upper bound the network could plausibly reach, not a lucky one.
    """
    shapes: list[tuple[int, int, int]] = []
    for k, n in _linear_shapes(agent)[:n_layers]:
        shapes += [(batch_size, k, n), (batch_size, n, k), (n, batch_size, k)]
    shapes.append((square, square, square))
    return list(dict.fromkeys(shapes))


def measure_matmul_peak(
    shapes: list[tuple[int, int, int]],
    device: str | torch.device = "cpu",
    repeats: int = 3,
    min_seconds: float = 0.05,
) -> tuple[float, list[dict[str, Any]]]:
    """Best fp32 matmul rate (FLOP/s) over ``shapes`` and ``repeats``, with per-shape results.

    Each repeat runs enough products to last ``min_seconds``, so that clock resolution and the
    per-call overhead of small shapes do not decide the figure. Runs with the thread count torch
    uses at the time of the call, i.e. the one the updates use. On a CPU both kernels widerl
    may run a product with are timed, the BLAS's and oneDNN's (nets/onednn.py), and the faster
    counts: the peak is the best this device does, whichever kernel the updates use.
    """
    device = _resolve_device(device)
    sync = _synchronizer(device)
    per_shape: list[dict[str, Any]] = []
    kernels: dict[str, Callable[[torch.Tensor, torch.Tensor, torch.Tensor], Any]] = {
        "blas": lambda a, b, out: torch.mm(a, b, out=out)
    }
    if device.type == "cpu" and onednn.available():
        linear = torch.ops.mkldnn._linear_pointwise.default
        kernels["onednn"] = lambda a, b, out: linear(a, b.t(), None, "none", [], "")
    for m, k, n in shapes:
        a = torch.randn(m, k, device=device)
        b = torch.randn(k, n, device=device)
        out = torch.empty(m, n, device=device)
        flop = 2.0 * m * k * n
        best, best_kernel = 0.0, "blas"
        for name, product in kernels.items():
            # Warm-up, then calibrate the count from one timed product.
            product(a, b, out)
            sync()
            t0 = time.perf_counter()
            product(a, b, out)
            sync()
            once = max(time.perf_counter() - t0, 1e-7)
            iters = max(1, int(min_seconds / once))
            for _ in range(repeats):
                sync()
                t0 = time.perf_counter()
                for _ in range(iters):
                    product(a, b, out)
                sync()
                rate = flop * iters / (time.perf_counter() - t0)
                if rate > best:
                    best, best_kernel = rate, name
        per_shape.append({"m": m, "k": k, "n": n, "flops": best, "kernel": best_kernel})
    peak = max(s["flops"] for s in per_shape)
    return peak, per_shape


# --- the benchmark ------------------------------------------------------------------------
@contextlib.contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    """Run the block with ``threads`` intra-op threads (None: unchanged), then restore."""
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _peer_name(peer: bool | str | None) -> str | None:
    """--peer's value; True/False are the older spelling (SB3 / none)."""
    if peer is True:
        return "sb3"
    if peer in (False, None, "none"):
        return None
    if peer not in PEERS:
        raise ValueError(f"peer must be one of {', '.join(PEERS)} or none, got {peer!r}")
    return str(peer)


def _median_ratio(ours: list[float], peer: list[float]) -> float:
    """Median over rounds of ours/peer in that round: load that drifts over a run hits both
    sides of one round alike, so this cancels it better than a ratio of two medians."""
    return statistics.median(o / p for o, p in zip(ours, peer, strict=True))


def baseline_config(cfg: Config) -> Config:
    """Our plain MLP agent of ``cfg``'s sizes: the same algorithm (SAC for CrossQ, whose
    networks are MLPs already), critic and policy widths and depths, batch and seed; an MLP
    body, a scalar critic, no obs-norm, no OFENet, every other setting at its default (--utd
    too: both sides run as many updates per call)."""
    same = ("units", "layers", "actor_units", "actor_layers", "batch_size", "buffer_size", "seed",
            "utd")  # fmt: skip
    algo = "sac" if cfg.algo == "crossq" else cfg.algo
    return resolve({"algo": algo, "arch": "mlp", **{k: getattr(cfg, k) for k in same}})


class _Side:
    """One of our configurations under test: its agent, replay and learning step."""

    def __init__(
        self,
        cfg: Config,
        data: dict[str, torch.Tensor],
        dims: tuple[int, int],
        dev: torch.device,
        compiled: bool,
    ) -> None:
        obs_dim, act_dim = dims
        n = data["obs"].shape[0]
        self.cfg = cfg
        self.agent = make_agent(cfg, obs_dim, act_dim, dev)
        self.replay = ReplayBuffer(obs_dim, act_dim, n, dev, seed=cfg.seed)
        self.replay.add(data["obs"], data["act"], data["rew"], data["next_obs"], data["term"])
        self.step = LearnStep(
            self.replay, self.agent.features, self.agent, cfg.batch_size, compiled=compiled
        )
        # One full policy-delay cycle: both variants of a compiled step, the mean FLOPs.
        self.cycle = cfg.policy_delay if cfg.algo in DELAYED else 1

    def flops(self) -> float:
        return update_flops(self.agent, self.replay, self.cfg.batch_size, self.cycle)


def run_bench(
    algo: str | None,
    units: int | None = None,
    layers: int | None = None,
    arch: str | None = None,
    obs_dim: int = 11,
    act_dim: int = 3,
    batch_size: int = 256,
    device: str = "cpu",
    updates: int = 200,
    rounds: int = 5,
    peer: bool | str | None = "sb3",
    warmup_updates: int = 20,
    fill: int = DEFAULT_FILL,
    seed: int = 0,
    threads: int | None = None,
    peak_square: int = PEAK_SQUARE,
    compiled: bool = False,
    preset: str | None = None,
    settings: dict[str, Any] | None = None,
    baseline: str | None = None,
) -> dict[str, Any]:
    """Measure update throughput (ours and a peer's), FLOPs per update and the matmul peak.

    Each of ``rounds`` rounds times ``updates`` updates of ours (in calls of --utd updates,
    ``settings["utd"]``, as a run calls its step) and of the peer in each of its modes (sbx:
    one update per call, then ``updates`` per call; SB3: ``updates`` per call),
    reversing the order every other round. ``ratio_<mode>`` is the median over rounds of
    ours/peer per round; ``ratio`` and ``peer_updates_per_s`` are the peer's first mode. The
    peer (``"sb3"``, ``"sbx"`` or None; True/False mean SB3/none) has our critics' and policy's
    widths and depths and runs the same method where its library has it (sbx: CrossQ, and SAC
    with SimBa networks for ``arch="simba"``), else its MLP SAC/TD3 (`bench_peers.peer_method`).
    ``baseline="mlp"`` adds our plain MLP agent of the same sizes (`baseline_config`) as one
    more side of every round: ``ratio_baseline`` is the median of ours/baseline per round.

    ``units``, ``layers``, ``arch`` (None: the preset's, else 256, 2, mlp) and ``settings``
    (other Config fields) override ``preset``'s values for ours. ``compiled`` times the
    torch.compile'd learning step: its compilation falls in the burn-in, and the timed rounds
    run under ``torch.compiler.set_stance("fail_on_recompile")``, so none can be timed.

    ``threads`` sets torch's intra-op thread count for the whole run (both sides and the peak
    share one process, so they share it) and restores it afterwards; sbx's JAX backend gets a
    pool of the same size (`bench_peers.start_jax`). None keeps each library's default.
    ``peak_square`` is the side of the square matmul among the peak shapes (tests shrink it).
    """
    if updates < 1 or rounds < 1 or warmup_updates < 0 or fill < 1:
        raise ValueError(
            f"need updates >= 1, rounds >= 1, warmup_updates >= 0, fill >= 1; got {updates}, "
            f"{rounds}, {warmup_updates}, {fill}"
        )
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    if baseline not in (None, *BASELINES):
        raise ValueError(f"baseline must be one of {BASELINES} or None, got {baseline!r}")
    peer_name = _peer_name(peer)
    load_before = _load_average()
    with _torch_threads(threads):
        dev = _resolve_device(device)
        sync = _synchronizer(dev)
        torch.manual_seed(seed)
        shape = {"units": units, "layers": layers, "arch": arch}
        cfg = resolve(
            {
                **({"algo": algo} if algo else {}),  # else --preset's, else sac
                **{k: v for k, v in shape.items() if v is not None},
                "batch_size": batch_size,
                "buffer_size": max(batch_size, fill),  # unused here: the bench has its own
                "seed": seed,
                **(settings or {}),
            },
            preset,
        )
        if peer_name:
            peer_method(peer_name, cfg.algo, cfg.arch)  # a peer without the method: say so now
        data = _random_transitions(fill, obs_dim, act_dim, seed)
        dims = (obs_dim, act_dim)

        ours = _Side(cfg, data, dims, dev, compiled)
        agent = ours.agent
        base = _Side(baseline_config(cfg), data, dims, dev, compiled) if baseline else None
        actor_arch = [cfg.actor_units or cfg.units] * (cfg.actor_layers or cfg.layers)
        batch_size = cfg.batch_size
        model = (
            make_peer(
                peer_name,
                cfg.algo,
                cfg.units,
                cfg.layers,
                obs_dim,
                act_dim,
                batch_size,
                dev,
                data,
                seed,
                sync,
                threads,
                arch=cfg.arch,
                actor_arch=actor_arch,
            )  # fmt: skip
            if peer_name
            else None
        )

        shapes = peak_shapes(agent, cfg.batch_size, square=peak_square)
        if base is not None:
            more = peak_shapes(base.agent, cfg.batch_size, square=peak_square)
            shapes = list(dict.fromkeys(shapes + more))
        peak_before = measure_matmul_peak(shapes, dev)

        # Burn-in: first calls allocate optimizer state and warm allocators and BLAS code paths;
        # a compiled step compiles here, once per variant (TD3, CrossQ: with and without their
        # delayed actor step, so at least a whole policy-delay cycle).
        ours_sides = {"ours": ours, **({"baseline": base} if base is not None else {})}
        for side in ours_sides.values():
            # (--utd K: calls of K updates; their actor-step patterns repeat within a cycle)
            n = max(warmup_updates, side.cycle * side.cfg.utd) if compiled else warmup_updates
            if n:
                _time_ours(side.step, n, sync, side.cfg.utd)
        if model is not None:
            model.warm_up(updates, warmup_updates)

        sides = [*ours_sides, *(model.modes if model is not None else ())]
        per_round: dict[str, list[float]] = {side: [] for side in sides}
        with contextlib.ExitStack() as timed:
            if compiled:
                timed.enter_context(torch.compiler.set_stance("fail_on_recompile"))
            jax_compiles = timed.enter_context(count_jax_compiles()) if peer_name == "sbx" else []
            for r in range(rounds):
                # Reverse the order every other round so that no side always runs right after
                # another's (possibly cache- or frequency-affecting) burst.
                for side in sides if r % 2 == 0 else reversed(sides):
                    per_round[side].append(
                        _time_ours(ours_sides[side].step, updates, sync, ours_sides[side].cfg.utd)
                        if side in ours_sides
                        else model.time(side, updates)
                    )

        # The peak is measured before and after the rounds and the better one kept: load from
        # other processes varies over a run, and the fraction must not be flattered by a peak
        # that happened to be measured in a slow moment.
        peak, per_shape = max(peak_before, measure_matmul_peak(shapes, dev), key=lambda x: x[0])
        flops = ours.flops()
        ours_rounds = per_round["ours"]
        ours_rate = statistics.median(ours_rounds)
        achieved = flops * ours_rate

        result: dict[str, Any] = {
            "algo": cfg.algo,
            "arch": cfg.arch,
            "units": cfg.units,
            "layers": cfg.layers,
            "actor_units": cfg.actor_units or cfg.units,
            "actor_layers": cfg.actor_layers or cfg.layers,
            "critic_head": cfg.critic_head,
            "atoms": cfg.atoms if cfg.critic_head != "scalar" else None,
            "obs_norm": cfg.obs_norm,
            "preset": preset,
            "ofenet_units": cfg.ofenet_units,
            "compiled": compiled,
            "utd": cfg.utd,
            "obs_dim": obs_dim,
            "act_dim": act_dim,
            "batch_size": batch_size,
            "device": str(dev),
            "updates": updates,
            "rounds": rounds,
            "warmup_updates": warmup_updates,
            "fill": fill,
            "torch_threads": torch.get_num_threads(),
            "torch_version": torch.__version__,
            "ours_updates_per_s": ours_rate,
            "ours_per_round": ours_rounds,
            "baseline": baseline,
            "peer": None,
            "peer_version": None,
            "peer_modes": [],
            "peer_updates_per_s": None,
            "peer_per_round": None,
            "ratio": None,
        }
        if base is not None:
            base_rounds = per_round["baseline"]
            base_rate = statistics.median(base_rounds)
            base_flops = base.flops()
            result |= {
                "baseline_algo": base.cfg.algo,
                "baseline_updates_per_s": base_rate,
                "baseline_per_round": base_rounds,
                "ratio_baseline": _median_ratio(ours_rounds, base_rounds),
                "baseline_flops_per_update": base_flops,
                "baseline_peak_flops_fraction": base_flops * base_rate / peak,
            }
        if model is not None:
            result |= {"peer": model.library, "peer_version": model.version, **model.info}
            result["peer_modes"] = list(model.modes)
            result["peer_updates_per_call"] = {m: 1 if m == ONE else updates for m in model.modes}
            for mode in model.modes:
                rounds_m = per_round[mode]
                result[f"peer_{mode}_updates_per_s"] = statistics.median(rounds_m)
                result[f"peer_{mode}_per_round"] = rounds_m
                result[f"ratio_{mode}"] = _median_ratio(ours_rounds, rounds_m)
            first = model.modes[0]
            result["peer_updates_per_s"] = result[f"peer_{first}_updates_per_s"]
            result["peer_per_round"] = result[f"peer_{first}_per_round"]
            result["ratio"] = result[f"ratio_{first}"]
            if peer_name == "sbx":
                result["peer_compiles_timed"] = len(jax_compiles)
        result |= {
            "flops_per_update": flops,
            "achieved_flops": achieved,
            "peak_flops": peak,
            "peak_shapes": per_shape,
            "peak_flops_fraction": achieved / peak,
            "load_average": [load_before, _load_average()],
        }
        return result


PEER_LABELS = {"stable-baselines3": "SB3", "sbx": "sbx"}
W = 26  # label column of format_bench


def format_bench(result: dict[str, Any]) -> str:
    """A short plain-text table of a ``run_bench`` result."""
    r = result
    g = 1e9

    def rounds(xs: list[float] | None) -> str:
        # Three significant digits read well from 2 updates/s (2048 units) to 2000 (tiny nets).
        return ", ".join(f"{x:.3g}" for x in xs) if xs else ""

    utd = r.get("utd") or 1  # our updates per call
    extras = f" + OFENet {r['ofenet_units']}" if r.get("ofenet_units") else ""
    head = r.get("critic_head") or "scalar"
    if head != "scalar":
        extras += f"  {head} critic ({r['atoms']} atoms)"
    actor = (r.get("actor_units"), r.get("actor_layers"))
    if None not in actor and actor != (r["units"], r["layers"]):
        extras += f"  policy {actor[0]}x{actor[1]}"
    if r.get("obs_norm"):
        extras += "  obs-norm"
    lines = [
        f"{r['algo']} {r['arch']} {r['units']}x{r['layers']}{extras}  obs {r['obs_dim']} act "
        f"{r['act_dim']}  batch {r['batch_size']}  {r['device']} ({r['torch_threads']} threads)  "
        f"{'compiled' if r.get('compiled') else 'eager'}  "
        f"{r['rounds']} rounds x {r['updates']} updates",
        f"  {'widerl updates/s' + (f' {utd}/call' if utd > 1 else ''):<{W}}"
        f"{r['ours_updates_per_s']:>12.1f}   "
        f"rounds: {rounds(r['ours_per_round'])}",
    ]
    if r.get("baseline_updates_per_s") is not None:
        lines += [
            f"  {'baseline updates/s':<{W}}{r['baseline_updates_per_s']:>12.1f}   "
            f"rounds: {rounds(r['baseline_per_round'])}   "
            f"(our {r['baseline_algo']} {r['baseline']} {r['units']}x{r['layers']}, scalar critic)",
            f"  {'ratio widerl/baseline':<{W}}{r['ratio_baseline']:>12.2f}   "
            "(median of per-round ratios)",
        ]
    if r.get("peer_updates_per_s") is not None:
        label = PEER_LABELS.get(r["peer"], r["peer"])
        modes = r.get("peer_modes") or []
        per_call = r.get("peer_updates_per_call") or {}

        def suffix(mode: str) -> str:
            return f" {per_call[mode]}/call" if len(modes) > 1 else ""

        threads = r.get("peer_threads")
        method = f"  {r['peer_method']}" if r.get("peer_method") else ""
        lines.append(
            f"  {'peer':<{W}}{label} {r['peer_version']}{method}  {r.get('peer_device', '')}"
            f"{f' ({threads} threads)' if threads else ''}"
        )
        for mode in modes:
            lines.append(
                f"  {label + ' updates/s' + suffix(mode):<{W}}"
                f"{r[f'peer_{mode}_updates_per_s']:>12.1f}   "
                f"rounds: {rounds(r[f'peer_{mode}_per_round'])}"
            )
        for mode in modes:
            lines.append(
                f"  {'ratio widerl/' + label + suffix(mode):<{W}}{r[f'ratio_{mode}']:>12.2f}   "
                "(median of per-round ratios)"
            )
    lines += [
        f"  {'GFLOP per update':<{W}}{r['flops_per_update'] / g:>12.4f}   (matmuls, fwd + bwd)",
        f"  {'achieved GFLOP/s':<{W}}{r['achieved_flops'] / g:>12.2f}",
        f"  {'peak GFLOP/s':<{W}}{r['peak_flops'] / g:>12.2f}   "
        f"(best fp32 matmul of {len(r['peak_shapes'])} shapes, same run)",
        f"  {'fraction of peak':<{W}}{r['peak_flops_fraction']:>12.3f}",
    ]
    if r.get("baseline_updates_per_s") is not None:
        lines += [
            f"  {'baseline GFLOP per update':<{W}}{r['baseline_flops_per_update'] / g:>12.4f}",
            f"  {'baseline fraction of peak':<{W}}{r['baseline_peak_flops_fraction']:>12.3f}",
        ]
    load = r.get("load_average")
    if load and None not in load:
        lines.append(f"  {'load average (1 min)':<{W}}{load[0]:>12.2f}   -> {load[1]:.2f} after")
    return "\n".join(lines)
