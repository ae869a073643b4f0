"""Fail fast: every setting that cannot work is refused before anything is allocated or
written, in one line naming the value and what is allowed, exit 2."""

import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from widerl.cli import main
from widerl.config import Config, ConfigError, resolve
from widerl.replay.buffer import ReplayBuffer

# Tiny enough that code which accepted a bad setting finishes quickly (and the test fails).
PENDULUM = ["train", "--env", "Pendulum-v1", "--units", "16", "--no-progress", "--steps", "20"]
PENDULUM += ["--warmup", "40", "--batch-size", "16", "--eval-episodes", "1", "--threads", "1"]

# (extra flags, words the one-line error must contain)
REFUSED = [
    (["--prioritized", "--per-alpha", "-1"], ["--per-alpha", "-1", ">= 0"]),
    (["--per-beta", "1.5"], ["--per-beta", "1.5", "[0, 1]"]),
    (["--per-beta", "-0.1"], ["--per-beta", "[0, 1]"]),
    (["--algo", "td3", "--policy-noise", "-1"], ["--policy-noise", "-1", ">= 0"]),
    (["--algo", "td3", "--noise-clip", "-0.5"], ["--noise-clip", ">= 0"]),
    (["--algo", "td3", "--expl-noise", "-0.1"], ["--expl-noise", ">= 0"]),
    (["--alpha-init", "0"], ["--alpha-init", "> 0"]),
    (["--lr", "0"], ["--lr", "> 0"]),
    (["--lr", "nan"], ["--lr", "nan", "finite"]),
    (["--lr", "inf"], ["--lr", "inf", "finite"]),
    (["--tau", "1.5"], ["--tau", "(0, 1]"]),
    (["--gamma", "1.01"], ["--gamma", "[0, 1]"]),
    (["--max-env-per-update", "nan"], ["--max-env-per-update", "finite"]),
    (["--seed", "-1"], ["--seed", "-1"]),
    (["--steps", "20", "--eval-every", "1000"], ["--eval-every 1000", "--steps 20", "<= 20"]),
    (["--batch-size", "1", "--batchnorm"], ["--batch-size 1", "--batchnorm", ">= 2"]),
    (
        ["--batch-size", "1", "--ofenet-units", "4", "--ofenet-layers", "2"],
        ["--batch-size 1", "OFENet", ">= 2"],
    ),
    (
        ["--ofenet-units", "16", "--ofenet-layers", "2", "--ofenet-target-dim", "50"],
        ["--ofenet-target-dim 50", "Pendulum-v1", "3 dims", "1..3"],
    ),
    (["--buffer-size", "1000000000000"], ["--buffer-size 1000000000000", "TB", "available"]),
    (["--units", "200000"], ["--units 200000", "TB", "available", "smaller networks"]),
]


@pytest.mark.parametrize(("flags", "words"), REFUSED)
def test_impossible_settings_are_refused_before_the_folder_exists(
    flags: list[str], words: list[str], tmp_path: Path, capsys
) -> None:
    out = tmp_path / "run"
    assert main([*PENDULUM, "--out", str(out), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("widerl: error: ") and len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    for word in words:
        assert word in err, (word, err)
    assert not out.exists()


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        # It hung forever at 0 updates: the warm-up waits for one batch in the replay.
        (["--buffer-size", "100", "--batch-size", "256"], ["--buffer-size 100", ">= 256"]),
        # OpenMP failed to create its threads and the process segfaulted.
        (["--threads", "100000"], ["--threads 100000", "CPUs"]),
    ],
)
def test_settings_that_hung_or_crashed_are_refused(
    flags: list[str], words: list[str], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    p = subprocess.run(
        [sys.executable, "-m", "widerl.cli", *PENDULUM, "--out", str(out), *flags],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 2, p.stderr
    assert p.stderr.startswith("widerl: error: ") and p.stderr.count("\n") == 1, p.stderr
    assert all(word in p.stderr for word in words), p.stderr
    assert not out.exists()


def test_resume_checks_the_stored_settings_too(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert main([*PENDULUM, "--out", str(out), "--eval-every", "20"]) == 0
    cfg = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**cfg, "per_beta": 2.0}))
    before = snapshot(out)
    assert main(["train", "--resume", str(out), "--steps", "40"]) == 2
    assert "--per-beta must be in [0, 1], got 2.0" in capsys.readouterr().err
    assert snapshot(out) == before


def snapshot(run: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}


@pytest.mark.parametrize(
    "name", [f.name for f in dataclasses.fields(Config) if isinstance(f.default, float)]
)
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_every_float_setting_must_be_finite(name: str, bad: float) -> None:
    with pytest.raises(ConfigError, match="--" + name.replace("_", "-")):
        resolve({name: bad})


def test_default_eval_every_above_steps_is_kept() -> None:
    """Only an explicit --eval-every above --steps is an error: a default or preset one is
    kept (the run evaluates at update 0 and at its last update)."""
    assert resolve({"steps": 20}).eval_every == 5_000
    assert resolve({"steps": 500}, "demo").eval_every == 1_000
    with pytest.raises(ConfigError, match="--eval-every 1000"):
        resolve({"steps": 500, "eval_every": 1_000}, "demo")
    assert resolve({"steps": 20, "eval_every": 20}).eval_every == 20


def test_ofenet_target_dim_without_ofenet_is_not_checked(tmp_path: Path) -> None:
    from widerl.run.preflight import check_env_settings

    check_env_settings(resolve({"env": "Pendulum-v1", "ofenet_target_dim": 50}), obs_dim=3)
    with pytest.raises(ConfigError, match="--ofenet-target-dim 50"):
        check_env_settings(resolve({"ofenet_target_dim": 50, "ofenet_units": 16}), obs_dim=3)


# --- the memory estimate ------------------------------------------------------------------
# (imported in each test, so that the tests above run, and fail, on code without them)


@pytest.mark.parametrize("prioritized", [False, True])
@pytest.mark.parametrize(
    ("obs_dim", "act_dim", "capacity"), [(3, 1, 1), (11, 3, 1000), (7, 2, 4097)]
)
def test_replay_estimate_is_what_the_buffer_allocates(
    obs_dim: int, act_dim: int, capacity: int, prioritized: bool
) -> None:
    from widerl.replay.buffer import replay_nbytes

    rb = ReplayBuffer(obs_dim, act_dim, capacity, prioritized=prioritized)
    actual = rb.storage.nbytes() + rb.sampler.nbytes()
    assert replay_nbytes(obs_dim, act_dim, capacity, prioritized) == actual


def test_network_estimate_counts_weights_grads_and_adam() -> None:
    import widerl.run.memory as memory
    from widerl.agents import make_agent

    cfg = resolve({"units": 16, "ofenet_units": 8, "ofenet_layers": 2})
    agent = make_agent(cfg, 3, 1, torch.device("cpu"))
    tensors = [*agent.parameters(), *agent.buffers()]
    stored = sum(t.numel() * t.element_size() for t in tensors)
    # Trained: everything but the target copies and the biases before OFENet's BatchNorms.
    targets = ("critics_target.", "actor_target.", "features.target.")
    trainable = sum(
        p.numel() * 4
        for n, p in agent.named_parameters()
        if not n.startswith(targets) and not (".phi_" in n and n.endswith("linear.bias"))
    )
    assert memory.network_nbytes(cfg, 3, 1) == stored + 3 * trainable


def test_memory_check_names_the_figure_and_a_capacity_that_fits(monkeypatch) -> None:
    import widerl.run.memory as memory

    cfg = resolve({"buffer_size": 1_000_000, "units": 16})
    need = sum(p.nbytes for p in memory.run_parts(cfg, 11, 3))
    monkeypatch.setattr(memory, "host_available", lambda: need // 2)
    with pytest.raises(ConfigError) as e:
        memory.check_memory(cfg, 11, 3, torch.device("cpu"))
    text = str(e.value)
    assert text.startswith("--buffer-size 1000000 needs ") and memory.fmt_bytes(need) in text
    hint = int(text.rsplit("<= ", 1)[1].replace(",", ""))
    fits = dataclasses.replace(cfg, buffer_size=hint)
    assert sum(p.nbytes for p in memory.run_parts(fits, 11, 3)) <= need // 2
    monkeypatch.setattr(memory, "host_available", lambda: need)
    memory.check_memory(cfg, 11, 3, torch.device("cpu"))  # exactly enough


def test_memory_check_on_cuda_compares_the_device_part_with_its_free_memory(monkeypatch) -> None:
    import widerl.run.memory as memory

    cfg = resolve({"buffer_size": 100_000, "units": 16, "device": "cuda"})
    parts = memory.run_parts(cfg, 11, 3)
    on_gpu = sum(p.nbytes for p in parts if p.on_device)
    monkeypatch.setattr(memory, "host_available", lambda: 10**12)
    monkeypatch.setattr(memory, "device_available", lambda device: on_gpu - 1)
    with pytest.raises(ConfigError, match="but cuda:0 has"):
        memory.check_memory(cfg, 11, 3, torch.device("cuda", 0))
    monkeypatch.setattr(memory, "device_available", lambda device: on_gpu)
    memory.check_memory(cfg, 11, 3, torch.device("cuda", 0))
    # Only the weight versions live on the host when training on a GPU.
    host = sum(p.nbytes for p in parts if not p.on_device)
    assert host == memory.VERSION_BYTES * cfg.buffer_size
    monkeypatch.setattr(memory, "host_available", lambda: host - 1)
    with pytest.raises(ConfigError, match="but this machine has"):
        memory.check_memory(cfg, 11, 3, torch.device("cuda", 0))


def test_checkpoint_replay_counts_the_host_copy() -> None:
    import widerl.run.memory as memory
    from widerl.replay.buffer import compact_reserve, replay_nbytes

    plain = memory.run_parts(resolve({"units": 16}), 11, 3)
    kept = memory.run_parts(resolve({"units": 16, "checkpoint_replay": True}), 11, 3)
    extra = sum(p.nbytes for p in kept) - sum(p.nbytes for p in plain)
    assert extra == replay_nbytes(11, 3, 1_000_000, False, compact_reserve(1_000_000))


def test_the_default_run_fits_this_machine() -> None:
    import widerl.run.memory as memory

    cfg = resolve({"prioritized": True})  # Hopper-v5, 1M transitions: about 110 MB
    assert sum(p.nbytes for p in memory.run_parts(cfg, 11, 3)) < 200e6
    memory.check_memory(cfg, 11, 3, torch.device("cpu"))
