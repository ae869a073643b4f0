"""Reliability end to end at tiny sizes (Pendulum-v1, 150 updates): interrupts at any moment,
divergence, run-folder locks, srank's sample and BatchNorm modes, exact resume.

Signals land at exact points through tests/hooked_train.py (a real signal sent by the process
to itself from a patched function), or in-process from a patched Trainer method; nothing here
depends on timing.
"""

from __future__ import annotations

import csv
import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

import widerl.run.trainer as train_mod
from widerl.agents import make_agent
from widerl.config import resolve
from widerl.record.logger import TIMING_COLUMNS, MetricMeans
from widerl.run.signals import StopSignals

HOOK = Path(__file__).parents[1] / "hooked_train.py"
TINY = ["--units", "16", "--layers", "2", "--batch-size", "32", "--eval-episodes", "2"]
TINY += ["--no-progress", "--compile=off"]  # some runs are 1M updates, stopped early
RUN = ["--env", "Pendulum-v1", "--warmup", "60", "--eval-every", "50", "--steps", "150"]
RUN += ["--seed", "4"]
STEPS = [0, 50, 100, 150]


def main(argv: list[str]) -> int:
    from widerl.cli import main as cli_main

    try:
        return cli_main(argv)
    except SystemExit as e:  # a command may also end by sys.exit
        return int(e.code)


def train(out: Path, *args: str) -> int:
    return main(["train", "--out", str(out), *TINY, *RUN, *args])


def resume(out: Path, *args: str) -> int:
    return main(["train", "--resume", str(out), "--no-progress", *args])


def rows(out: Path) -> list[dict[str, str]]:
    with (out / "metrics.csv").open() as f:
        return [{k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in csv.DictReader(f)]


def grad_steps(out: Path) -> list[int]:
    return [int(r["grad_step"]) for r in rows(out)]


def hooked(out: Path, target: str, n: int, sig: str, when: str, *args: str):  # noqa: ANN201
    """`widerl train` in a subprocess that sends itself `sig` at the n-th call of `target`."""
    cmd = [sys.executable, str(HOOK), target, str(n), sig, when, "--out", str(out)]
    return subprocess.run([*cmd, *TINY, *RUN, *args], capture_output=True, text=True, timeout=300)


def signal_at_update(monkeypatch: pytest.MonkeyPatch, k: int, sig: int = signal.SIGINT) -> None:
    """In-process: a real `sig` to this process right after update k (the run's own handler
    turns it into a clean stop)."""
    original = train_mod.Trainer.learn_step

    def learn_step(self: train_mod.Trainer) -> None:
        original(self)
        if self.grad_step == k:
            os.kill(os.getpid(), sig)

    monkeypatch.setattr(train_mod.Trainer, "learn_step", learn_step)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, str]]:
    """metrics.csv of the uninterrupted run (timing columns aside)."""
    out = tmp_path_factory.mktemp("reference") / "run"
    assert train(out, "--checkpoint-replay") == 0
    assert grad_steps(out) == STEPS
    return rows(out)


# --- interrupts: SIGINT / SIGTERM / SIGKILL at any moment --------------------------------------
def test_stop_signals_remember_the_first_signal() -> None:
    with StopSignals() as s:
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGINT)
    assert (s.signum, s.count) == (signal.SIGTERM, 2)


def test_sigterm_before_the_run_folder_exists_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "run"
    p = hooked(out, "widerl.collect.envs:check_env_id", 1, "SIGTERM", "before")
    assert p.returncode == 143, p.stderr
    assert "stopped before the run started" in p.stderr and "Traceback" not in p.stderr
    assert not out.exists()


def signal_at_call(
    monkeypatch: pytest.MonkeyPatch, owner: object, attr: str, n: int, sig: int
) -> None:
    """In-process: a real `sig` to this process right after the n-th call of owner.attr."""
    original, calls = getattr(owner, attr), [0]

    def hooked_call(*args: object, **kwargs: object) -> object:
        result = original(*args, **kwargs)
        calls[0] += 1
        if calls[0] == n:
            os.kill(os.getpid(), sig)
        return result

    monkeypatch.setattr(owner, attr, hooked_call)


def _stopped_line(err: str, out: Path) -> None:
    last = err.strip().splitlines()[-1]
    assert last.startswith("stopped at ") and f"widerl train --resume {out}" in last, err
    assert "Traceback" not in err


@pytest.mark.slow
def test_sigterm_while_the_trainer_is_built_exits_143_and_resumes_exactly(
    tmp_path: Path, reference: list
) -> None:
    out = tmp_path / "run"
    p = hooked(
        out, "widerl.run.trainer:Trainer.__init__", 1, "SIGTERM", "before", "--checkpoint-replay"
    )
    assert p.returncode == 143, p.stderr
    _stopped_line(p.stderr, out)
    assert resume(out) == 0
    assert rows(out) == reference


@pytest.mark.parametrize(
    ("stage", "owner", "attr", "n", "sig"),
    [
        ("random warm-up", "collect.collector:Collector", "advance", 30, signal.SIGINT),
        ("the first evaluation", "run.trainer:Trainer", "evaluate_and_log", 1, signal.SIGTERM),
        ("a checkpoint write", "os", "fsync", 2, signal.SIGINT),
    ],
)
def test_sigint_sigterm_at_any_stage_stop_cleanly_and_resume_exactly(
    tmp_path: Path,
    reference: list,
    monkeypatch: pytest.MonkeyPatch,
    capsys,
    stage: str,
    owner: str,
    attr: str,
    n: int,
    sig: int,
) -> None:
    import importlib

    module, _, cls = owner.partition(":")
    target = importlib.import_module(module if module == "os" else f"widerl.{module}")
    target = getattr(target, cls) if cls else target
    out = tmp_path / "run"
    with monkeypatch.context() as m:
        signal_at_call(m, target, attr, n, sig)
        assert train(out, "--checkpoint-replay") == 128 + sig, stage
    _stopped_line(capsys.readouterr().err, out)
    assert resume(out) == 0
    assert rows(out) == reference, stage


@pytest.mark.slow
def test_sigkill_during_a_checkpoint_write_leaves_a_run_that_resume_finishes(
    tmp_path: Path, reference: list
) -> None:
    """Killed between the second checkpoint's temporary file and its rename: the folder has
    the first checkpoint (update 0, before row 0) but rows 0 and 50; the resumed run drops
    the rows its checkpoint had not seen and writes them again, once each."""
    out = tmp_path / "run"
    p = hooked(out, "os:fsync", 2, "SIGKILL", "after", "--checkpoint-replay")
    assert p.returncode == -signal.SIGKILL, p.stderr
    assert grad_steps(out) == [0, 50] and list(out.glob(".checkpoint.pt.*.tmp"))
    assert resume(out) == 0
    assert rows(out) == reference  # no gap, no duplicate: the uninterrupted run's rows
    assert not list(out.glob(".*.tmp"))


def test_a_folder_with_only_config_json_resumes_from_scratch(
    tmp_path: Path, reference: list, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """A run that crashed (or was killed) before its first checkpoint: the plain rerun points
    at --resume, and --resume starts it cleanly from its stored config."""
    out = tmp_path / "run"

    def crash(*_: object, **__: object) -> None:
        raise RuntimeError("crash before the first checkpoint")

    with monkeypatch.context() as m:
        m.setattr(train_mod.Trainer, "__init__", crash)
        with pytest.raises(RuntimeError):
            train(out)
    assert (out / "config.json").is_file() and not (out / "checkpoint.pt").exists()
    capsys.readouterr()
    assert train(out) == 2
    err = capsys.readouterr().err
    assert "--resume" in err and "before its first checkpoint" in err
    assert resume(out) == 0
    assert rows(out) == reference


def test_a_kill_while_config_json_is_written_leaves_the_old_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from widerl.record.folder import load_config, write_config

    cfg = resolve({"env": "Pendulum-v1", "units": 16})
    write_config(tmp_path, cfg)

    def torn(self: Path, text: str, *a: object, **k: object) -> None:
        with self.open("w") as f:
            f.write(text[:10])
        raise SystemExit(-9)  # the process dies half-way through the write

    with monkeypatch.context() as m:
        m.setattr(Path, "write_text", torn)
        with pytest.raises(SystemExit):
            write_config(tmp_path, resolve({"env": "Pendulum-v1", "units": 32}))
    assert load_config(tmp_path).units == 16


# --- divergence --------------------------------------------------------------------------------
def _finite_checkpoint(out: Path) -> dict:
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    for name, t in state["agent"]["modules"].items():
        assert not t.is_floating_point() or torch.isfinite(t).all(), name
    return state


@pytest.mark.parametrize("algo_lr", [("sac", "10"), ("td3", "1e6")])
def test_a_nonfinite_loss_stops_the_run_in_one_line(tmp_path: Path, capsys, algo_lr) -> None:
    algo, lr = algo_lr
    out = tmp_path / "run"
    assert train(out, "--algo", algo, "--lr", lr) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "diverged: critic_loss became non-finite at update " in err, err
    record = json.loads((out / "diverged.json").read_text())
    assert record["quantity"] == "critic_loss" and f"update {record['update']}" in err
    assert _finite_checkpoint(out)["grad_step"] < record["update"]
    assert resume(out) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "diverged" in err and "--force" in err, err
    assert train(out, "--algo", algo, "--force") == 0  # --force replaces it (diverged.json too)
    assert not (out / "diverged.json").exists()


@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EACCES])
def test_a_folder_that_stops_taking_writes_mid_run_ends_in_one_line_and_resumes(
    err: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """A disk that fills (or a permission that goes) at the second metrics row: exit 1, the
    file and the cause in one line with the resume command, the last checkpoint kept; once
    the folder takes writes again the resume finishes the run."""
    from widerl.record.logger import RunLogger

    out = tmp_path / "run"
    write, calls = RunLogger.write, [0]

    def failing(self: RunLogger, row: dict, *extra: dict) -> None:
        calls[0] += 1
        if calls[0] == 3:  # rows at updates 0 and 50 are written; the one at 100 is not
            raise OSError(err, os.strerror(err), str(self.path))
        write(self, row, *extra)

    monkeypatch.setattr(RunLogger, "write", failing)
    assert train(out) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("widerl: error: cannot write "), lines
    assert os.strerror(err) in lines[0] and f"widerl train --resume {out}" in lines[0]
    assert "metrics.csv" in lines[0] and "last checkpoint (update 50)" in lines[0], lines[0]
    assert torch.load(out / "checkpoint.pt", weights_only=True)["grad_step"] == 50
    monkeypatch.setattr(RunLogger, "write", write)
    assert resume(out) == 0
    assert [int(r["grad_step"]) for r in rows(out)] == STEPS


def test_a_nonfinite_parameter_is_caught_at_the_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """BatchNorm statistics never enter the updates' losses (train mode normalises with the
    batch): only the parameter check at the row can see them go NaN."""
    original = train_mod.Trainer.learn_step

    def learn_step(self: train_mod.Trainer) -> None:
        original(self)
        if self.grad_step == 70:
            self.agent.critics.body.layers[0].norm.running_var[0].fill_(float("nan"))

    monkeypatch.setattr(train_mod.Trainer, "learn_step", learn_step)
    out = tmp_path / "run"
    assert train(out, "--batchnorm") == 1
    err = capsys.readouterr().err.strip()
    assert "diverged: parameter critics.body.layers.0.norm" in err and "by update 100" in err, err
    assert _finite_checkpoint(out)["grad_step"] == 50


def test_an_interrupt_never_saves_a_nonfinite_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    original = train_mod.Trainer.learn_step

    def learn_step(self: train_mod.Trainer) -> None:
        original(self)
        if self.grad_step == 60:
            with torch.no_grad():
                self.agent.critics.out.weight[1].fill_(float("inf"))
        if self.grad_step == 63:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(train_mod.Trainer, "learn_step", learn_step)
    out = tmp_path / "run"
    assert train(out) == 1  # not 130: the stop found the divergence first
    err = capsys.readouterr().err
    assert "non-finite at update 61" in err and "(update 50)" in err, err
    assert _finite_checkpoint(out)["grad_step"] == 50


def test_metric_means_locate_the_first_nonfinite_update_without_host_sync(
    forbid_host_sync,
) -> None:
    means = MetricMeans(["loss", "q"])
    values = [(1.0, 2.0), (3.0, float("inf")), (float("nan"), 1.0), (1.0, 1.0)]
    with forbid_host_sync("cpu"):
        for loss, q in values:
            means.add({"loss": torch.tensor(loss), "q": torch.tensor(q)})
    window = means.read()
    assert window.count == 4 and window.first_nonfinite == {"loss": 3, "q": 2}
    means.reset()
    means.add({"loss": torch.tensor(1e38), "q": torch.tensor(3e38)})
    means.add({"loss": torch.tensor(1e38), "q": torch.tensor(3e38)})
    window = means.read()  # float32 sums would overflow to inf: huge is not non-finite
    assert window.first_nonfinite == {} and window.means["q"] == pytest.approx(3e38, rel=1e-6)


def test_metric_means_fold_the_sums_one_value_after_another(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Summed in folds of a few updates, the sums are those of adding each update at once,
    bit for bit: values whose float64 sum depends on the order (a pairwise or blocked sum
    would differ) and a fold boundary inside them."""
    monkeypatch.setattr(MetricMeans, "FOLD_EVERY", 8)
    big = float(2**53)  # 2^53 + 1 + 1 - 2^53: 0 one after another, 1 or 2 in another order
    a = [big, 1.0, 1.0, -big, 1.0, 1.0, 1.0, 1.0, 0.5, 0.25, 3.0]
    b = torch.randn(11, generator=torch.Generator().manual_seed(0)).mul(1e7).tolist()
    rows = [torch.tensor([x, y]) for x, y in zip(a, b, strict=True)]
    means = MetricMeans(["a", "b"])
    for r in rows:
        means.add_values(r)
    sums = rows[0].to(torch.float64)
    for r in rows[1:]:
        sums.add_(r)  # one at a time, as the sums were kept before folding
    window = means.read()
    assert window.count == 11 and window.first_nonfinite == {}
    assert window.means == {n: v / 11 for n, v in zip("ab", sums.tolist(), strict=True)}
    assert torch.equal(means.state_dict()["sums"], sums)


# --- run-folder lock ---------------------------------------------------------------------------
@pytest.mark.slow
def test_a_running_run_locks_its_folder(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "widerl.cli", "train", "--out", str(out), *TINY, *RUN]
    proc = subprocess.Popen([*cmd, "--steps", "1000000"], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240  # generous: only a hung run should reach it
        while not (out / "metrics.csv").exists():  # the run is past its set-up
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        config = (out / "config.json").read_text()
        for argv in (
            ["train", "--out", str(out), *TINY, *RUN, "--force"],
            ["train", "--out", str(out), *TINY, *RUN],
            ["train", "--resume", str(out)],
        ):
            assert main(argv) == 2, argv
            err = capsys.readouterr().err.strip()
            assert len(err.splitlines()) == 1 and f"pid {proc.pid}" in err, err
        assert (out / "config.json").read_text() == config
        assert (out / "run.lock").read_text().strip() == str(proc.pid)
    finally:
        proc.kill()  # SIGKILL: the kernel drops the lock, nothing stale is left
        proc.communicate(timeout=60)
    assert resume(out, "--steps", "50") == 0


def test_report_refuses_rows_that_repeat_or_go_back(tmp_path: Path, capsys) -> None:
    run = tmp_path / "runs" / "a"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"env": "Pendulum-v1", "seed": 0}))
    header = "grad_step,eval_return_mean\n"
    for body, named in (("0,1\n50,2\n50,3\n", "repeats"), ("0,1\n50,2\n20,3\n", "goes back")):
        (run / "metrics.csv").write_text(header + body)
        argv = ["report", str(tmp_path / "runs"), "--out", str(tmp_path / "r"), "--force"]
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and named in err and "line 4" in err, err


# --- srank on the replay as it is; BatchNorm modes ------------------------------------------
def test_srank_is_measured_on_a_fresh_replay_sample_that_moves_no_random_stream(
    tmp_path: Path,
) -> None:
    cfg = resolve({"env": "Pendulum-v1", "units": 16, "layers": 2, "buffer_size": 10_000})
    trainer = train_mod.Trainer(cfg, tmp_path)
    n = 6_000
    obs = np.zeros((n, 3), np.float32)
    obs[:, 0] = np.arange(n)  # a row's index, readable from the sample
    trainer.replay.add(obs, np.zeros((n, 1)), np.zeros(n), obs, np.zeros(n))
    from widerl.run.probes import PROBE_SIZE

    probes = trainer.parts.probes
    streams = (torch.get_rng_state(), trainer.replay.generator.get_state())
    first = probes.fresh_sample(0)[0][:, 0].long()
    assert torch.equal(torch.get_rng_state(), streams[0])
    assert torch.equal(trainer.replay.generator.get_state(), streams[1])
    assert len(first) == PROBE_SIZE == len(set(first.tolist()))
    assert torch.equal(probes.fresh_sample(0)[0][:, 0].long(), first)  # same row, same sample
    later = probes.fresh_sample(5_000)[0][:, 0].long()
    assert not torch.equal(later, first) and int(later.max()) > 4_000  # the whole replay
    trainer.parts.close()


def test_metrics_have_srank_on_the_replay_and_on_the_warmup_probe(reference: list) -> None:
    for r in reference:
        assert int(r["srank"]) > 0 and int(r["srank_probe"]) > 0


def _bn_agent(algo: str):  # noqa: ANN202
    cfg = resolve({"algo": algo, "units": 16, "layers": 2, "batchnorm": True})
    torch.manual_seed(0)
    return make_agent(cfg, 3, 1, torch.device("cpu"))


def _batch(n: int = 64, seed: int = 0):  # noqa: ANN202
    from widerl.replay.buffer import Batch

    g = torch.Generator().manual_seed(seed)
    obs, nxt = torch.randn(n, 3, generator=g), torch.randn(n, 3, generator=g)
    act = torch.rand(n, 1, generator=g) * 2 - 1
    return Batch(obs, act, torch.randn(n, generator=g), nxt, torch.zeros(n), None, torch.arange(n))


@pytest.mark.parametrize("algo", ["sac", "td3"])
def test_td_abs_uses_batchnorm_in_eval_mode_and_restores_the_modes(algo: str) -> None:
    agent = _bn_agent(algo)
    agent.update(_batch(seed=1))
    agent.critics.body.layers[1].eval()  # a module's own mode is given back as it was
    modes = {n: m.training for n, m in agent.named_modules()}
    stats = {k: v.clone() for k, v in agent.state_dict().items()}
    batch, other = _batch(seed=2), _batch(seed=3)
    mixed = batch._replace(
        **{k: torch.cat([getattr(batch, k)[:8], getattr(other, k)[8:]]) for k in batch._fields[:5]}
    )
    for g in agent.update_gens:  # the same action noise for both batches
        g.manual_seed(5)
    whole = agent.td_abs(batch)
    for g in agent.update_gens:
        g.manual_seed(5)
    # A transition's priority is its own, whatever else is in its chunk.
    assert torch.allclose(whole[:8], agent.td_abs(mixed)[:8], atol=1e-6)
    assert {n: m.training for n, m in agent.named_modules()} == modes
    for k, v in agent.state_dict().items():
        assert torch.equal(v, stats[k]), k  # running statistics untouched


@pytest.mark.parametrize("algo", ["sac", "td3"])
def test_target_copies_take_the_online_batchnorm_statistics(algo: str) -> None:
    agent = _bn_agent(algo)
    for i in range(4):  # TD3 moves its targets every second update
        agent.update(_batch(seed=i))
    online = dict(agent.critics.named_buffers())
    target = dict(agent.critics_target.named_buffers())
    means = [k for k in online if k.endswith("running_mean")]
    assert means and all(torch.equal(online[k], target[k]) for k in means)
    if algo == "td3":
        a, t = dict(agent.actor.named_buffers()), dict(agent.actor_target.named_buffers())
        assert all(torch.equal(a[k], t[k]) for k in a if k.endswith("running_var"))


# --- exact resume with --checkpoint-replay --------------------------------------------------
@pytest.mark.parametrize("k", [37, 100])
def test_sigint_at_an_update_resumes_to_the_same_metrics(
    tmp_path: Path, reference: list, monkeypatch: pytest.MonkeyPatch, k: int
) -> None:
    out = tmp_path / "run"
    with monkeypatch.context() as m:
        signal_at_update(m, k)
        assert train(out, "--checkpoint-replay") == 130
    assert torch.load(out / "checkpoint.pt", weights_only=True)["grad_step"] == k
    assert resume(out) == 0
    assert rows(out) == reference


@pytest.mark.slow
def test_exact_resume_through_ofenet_pretraining_and_td3(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from widerl.nets.ofenet import OFENet

    ofenet = ["--ofenet-units", "16", "--ofenet-layers", "2", "--ofenet-pretrain", "20"]
    ofenet += ["--algo", "td3", "--checkpoint-replay"]
    assert train(tmp_path / "ref", *ofenet) == 0
    # Inside OFENet's pre-training, and at an odd TD3 update (between two actor steps).
    points = [("ofenet", OFENet, "update", 9), ("td3", train_mod.Trainer, "learn_step", 73)]
    for name, owner, attr, n in points:
        with monkeypatch.context() as m:
            signal_at_call(m, owner, attr, n, signal.SIGINT)
            assert train(tmp_path / name, *ofenet) == 130, name
        assert resume(tmp_path / name) == 0
        assert rows(tmp_path / name) == rows(tmp_path / "ref"), name


@pytest.mark.slow
def test_exact_resume_on_mujoco(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    args = ["--env", "InvertedPendulum-v5", "--checkpoint-replay"]
    assert train(tmp_path / "ref", *args) == 0
    with monkeypatch.context() as m:
        signal_at_update(m, 77)
        assert train(tmp_path / "cut", *args) == 130
    assert resume(tmp_path / "cut") == 0
    assert rows(tmp_path / "cut") == rows(tmp_path / "ref")


@pytest.mark.parametrize("env_id", ["Pendulum-v1", "Hopper-v5", "Ant-v5"])
def test_env_state_round_trips_through_a_safe_checkpoint(tmp_path: Path, env_id: str) -> None:
    """Ant-v5 reads xpos before each step, which mj_step leaves at the previous substep's
    state: the captured state covers it, not only qpos/qvel."""
    from widerl.collect.envs import env_state, make_env, set_env_state

    a, b = make_env(env_id), make_env(env_id)
    a.reset(seed=1)
    b.reset(seed=2)
    acts = np.random.default_rng(0).uniform(-1, 1, (260, *a.action_space.shape))
    for act in acts[:20]:
        a.step(act.astype(np.float32))
    torch.save(env_state(a), tmp_path / "s.pt")
    set_env_state(b, torch.load(tmp_path / "s.pt", weights_only=True))
    for act in acts[20:]:
        sa, sb = a.step(act.astype(np.float32)), b.step(act.astype(np.float32))
        assert np.array_equal(sa[0], sb[0]) and sa[1:4] == sb[1:4]
        if sa[2] or sa[3]:  # a new episode draws from the restored RNG
            assert np.array_equal(a.reset()[0], b.reset()[0])


class _Opaque(gym.Env):
    """An env whose state widerl cannot capture (neither MuJoCo nor classic control)."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def __init__(self, render_mode: str | None = None) -> None:
        self.render_mode = render_mode

    def reset(self, *, seed: int | None = None, options: dict | None = None):  # noqa: ANN201
        super().reset(seed=seed)
        self._x = self.np_random.uniform(-1, 1, 2).astype(np.float32)
        return self._x, {}

    def step(self, action: np.ndarray):  # noqa: ANN201
        self._x = np.clip(self._x + 0.1 * float(action[0]), -1, 1).astype(np.float32)
        return self._x, -float(np.abs(self._x).sum()), False, False, {}


def test_an_env_without_capturable_state_warns_once_and_starts_fresh_episodes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    gym.register("WiderlOpaque-v0", entry_point=_Opaque, max_episode_steps=40)
    try:
        out = tmp_path / "run"
        args = ["--env", "WiderlOpaque-v0", "--checkpoint-replay"]
        with monkeypatch.context() as m:
            signal_at_update(m, 70)
            assert train(out, *args) == 130
        err = capsys.readouterr().err
        assert err.count("warning:") == 1 and "cannot be captured" in err, err
        assert resume(out) == 0
        err = capsys.readouterr().err
        assert err.count("warning:") == 1 and "fresh episodes" in err, err
        assert grad_steps(out) == STEPS
    finally:
        gym.registry.pop("WiderlOpaque-v0")


# --- --utd and --reset-every, scheduled by the trainer ---------------------------------------
def test_utd_steps_the_env_once_per_n_updates(tmp_path: Path) -> None:
    assert train(tmp_path / "utd", "--utd", "3") == 0
    last = rows(tmp_path / "utd")[-1]
    # The 60 random warm-up steps, then one env step every 3rd of the 150 updates.
    assert int(last["env_step"]) == 60 + 150 // 3


def test_resets_are_scheduled_counted_and_resumed_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--reset-every 40: full resets before updates 41, 81 and 121; the rows count them, and a
    run stopped just before a reset was due resumes to the uninterrupted run's rows."""
    from widerl.agents.base import Agent

    calls: list[int] = []
    original = Agent.reset_networks

    def counted(self: Agent, *args: object) -> None:
        calls.append(self.n_updates)
        original(self, *args)

    flags = ["--reset-every", "40", "--checkpoint-replay"]
    with monkeypatch.context() as m:
        m.setattr(Agent, "reset_networks", counted)
        assert train(tmp_path / "ref", *flags) == 0
    assert calls == [40, 80, 120]
    ref = rows(tmp_path / "ref")
    assert [int(r["resets"]) for r in ref] == [0, 1, 2, 3]
    with monkeypatch.context() as m:  # stop right after update 80: the next reset is due
        signal_at_call(m, train_mod.Trainer, "learn_step", 80, signal.SIGINT)
        assert train(tmp_path / "cut", *flags) == 130
    assert resume(tmp_path / "cut") == 0
    assert rows(tmp_path / "cut") == ref
