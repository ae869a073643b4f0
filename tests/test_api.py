"""The Python API: widerl.Config / resolve, widerl.train (new and resumed runs), and
widerl.load_policy(run_dir).act(obs) for deployment."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import widerl
from widerl.run.evaluate import evaluate_run

TINY = {
    "env": "Pendulum-v1",
    "units": 16,
    "layers": 2,
    "batch_size": 32,
    "buffer_size": 5_000,
    "warmup": 200,
    "eval_every": 50,
    "eval_episodes": 1,
    "threads": 1,
    "progress": False,
}


def rows(run: Path) -> list[dict[str, str]]:
    with (run / "metrics.csv").open() as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("api") / "run"
    cfg = widerl.resolve({**TINY, "steps": 100})
    result = widerl.train(cfg, out)
    assert result.grad_step == 100 and not result.interrupted and result.run_dir == out
    assert result.curve is not None and result.curve.is_file()
    return out


def test_import_is_light_and_exports_the_api() -> None:
    code = "import sys, widerl; print('torch' in sys.modules, sorted(widerl.__all__))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    light, names = done.stdout.split(" ", 1)
    assert light == "False"  # torch loads with train or load_policy, not with `import widerl`
    for name in ("Config", "resolve", "train", "load_policy", "PRESETS"):
        assert name in names


def test_train_writes_a_run_folder_and_resume_extends_it(run: Path, tmp_path: Path) -> None:
    assert [int(r["grad_step"]) for r in rows(run)] == [0, 50, 100]
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-r", str(run), str(copy)], check=True)
    result = widerl.train(resume=copy, steps=150)
    assert result.grad_step == 150
    assert [int(r["grad_step"]) for r in rows(copy)] == [0, 50, 100, 150]


def test_train_checks_its_arguments(run: Path) -> None:
    cfg = widerl.resolve(TINY)
    with pytest.raises(widerl.ConfigError, match="not both"):
        widerl.train(cfg, resume=run)
    with pytest.raises(widerl.ConfigError, match="needs a Config"):
        widerl.train()
    with pytest.raises(widerl.ConfigError, match="already holds a run"):
        widerl.train(widerl.resolve(TINY), run)  # the same folder, without force
    with pytest.raises(widerl.ConfigError, match="--env"):
        widerl.train(resume=run, env="Hopper-v5")  # a resume keeps what the run learns


def test_load_policy_acts_like_the_evaluation_on_the_raw_env(run: Path) -> None:
    """The policy returns actions in the env's own bounds: stepping the plain Gymnasium env
    with it reproduces `widerl eval`'s return (which rescales inside the env wrapper)."""
    policy = widerl.load_policy(run)
    one = policy.act(np.zeros(3, np.float32))
    batch = policy.act(np.zeros((5, 3), np.float32))
    assert one.shape == (1,) and batch.shape == (5, 1)
    np.testing.assert_allclose(batch[0], one, rtol=1e-6)
    assert np.all(np.abs(batch) <= 2.0)  # Pendulum's torque bounds, not [-1, 1]
    with pytest.raises(ValueError, match=r"expected \(3,\)"):
        policy.act(np.zeros(4))

    expected = float(evaluate_run(run, episodes=1, seed=7, video=None)[0])
    env = gym.make("Pendulum-v1")
    obs, _ = env.reset(seed=7)
    total, done = 0.0, False
    while not done:
        obs, rew, term, trunc, _ = env.step(policy.act(obs))
        total += float(rew)
        done = term or trunc
    env.close()
    assert total == pytest.approx(expected, rel=1e-5, abs=1e-3)


@pytest.mark.slow
def test_a_compiled_run_compiles_once_and_matches_the_eager_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--compile` through the trainer: after the first updates (TD3 compiles its two steps,
    with and without the delayed actor update) nothing recompiles for the rest of the run
    (the step reads nothing that changes between updates but device tensors), and the run's
    rows equal the eager run's but for float rounding. The graph runs with eager kernels
    ("aot_eager": the same capture as inductor, seconds instead of a minute to build)."""
    import torch

    import widerl.run.step as learner
    from widerl.run.trainer import Trainer

    original = learner.compile_step
    monkeypatch.setattr(learner, "compile_step", lambda fn, dev, backend="inductor", **kw:
        original(fn, dev, "aot_eager", **kw))  # fmt: skip
    step = Trainer.learn_step

    def strict_after_warmup(self: Trainer) -> None:
        if self.grad_step >= 2:  # both TD3 graphs exist by now
            with torch.compiler.set_stance("fail_on_recompile"):
                return step(self)
        return step(self)

    monkeypatch.setattr(Trainer, "learn_step", strict_after_warmup)
    settings = {**TINY, "algo": "td3", "steps": 60, "eval_every": 30, "prioritized": True}
    widerl.train(widerl.resolve({**settings, "compile": "on"}), tmp_path / "compiled")
    widerl.train(widerl.resolve(settings), tmp_path / "eager")
    compiled, eager = rows(tmp_path / "compiled"), rows(tmp_path / "eager")
    assert [r["grad_step"] for r in compiled] == ["0", "30", "60"]
    for a, b in zip(compiled, eager, strict=True):
        assert a["env_step"] == b["env_step"] and a["episodes"] == b["episodes"]
        for k in ("critic_loss", "q_mean", "actor_loss"):
            if b[k]:
                assert float(a[k]) == pytest.approx(float(b[k]), rel=1e-4, abs=1e-5), k


def test_only_compile_on_compiles_from_the_first_update() -> None:
    """auto starts eager and decides during the run (tests/run/test_compiling.py)."""
    from widerl.config import compiles

    assert not compiles(widerl.resolve({"steps": 10**7}))  # auto: decided by payoff later
    assert compiles(widerl.resolve({"steps": 10, "compile": "on"}))
    assert not compiles(widerl.resolve({"compile": "off"}))
    with pytest.raises(widerl.ConfigError, match="--compile 'yes' is not one of auto, on, off"):
        widerl.resolve({"compile": "yes"})
