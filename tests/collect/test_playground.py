"""MuJoCo Playground (`--env playground/<EnvName>`): the JAX vector env behind Gymnasium's
vector API (same-step autoreset, the time limit as a truncation), a whole run on it, and the
refusals. JAX on a CPU: slow (compiling takes tens of seconds), hence marked slow."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

import widerl
from widerl.cli import main

ENV = "playground/CartpoleBalance"  # a DeepMind Control Suite task: its model ships with it


@pytest.mark.slow
def test_the_vector_env_truncates_resets_and_feeds_a_run(tmp_path: Path) -> None:
    """One test, one batch size (4) and the evaluation's 1: JAX compiles the env's functions
    once per batch size (they are shared per name), for tens of seconds on a CPU."""
    from widerl.collect.envs import make_vec_env
    from widerl.collect.playground import PlaygroundVectorEnv

    envs = PlaygroundVectorEnv(ENV, 4, episode_length=5)
    obs, _ = envs.reset(seed=1)
    assert obs.shape == (4, 5) and obs.dtype == np.float32 and obs.flags.writeable
    again, _ = PlaygroundVectorEnv(ENV, 4, episode_length=5).reset(seed=1)
    np.testing.assert_array_equal(obs, again)  # the seed decides the start
    rng = np.random.default_rng(0)
    for t in range(1, 6):
        act = rng.uniform(-1, 1, (4, 1)).astype(np.float32)
        nxt, rew, term, trunc, info = envs.step(act)
        assert rew.shape == (4,) and not term.any()
        if t < 5:
            assert not trunc.any() and info == {}
        obs = nxt
    assert trunc.all() and info["_final_obs"].all()  # the limit: truncated, bootstrapped
    final = info["final_obs"]
    assert final.shape == (4, 5) and not np.allclose(final, obs)  # obs: the reset's
    _, _, _, trunc, _ = envs.step(np.zeros((4, 1), np.float32))
    assert not trunc.any()  # the step counters started again
    assert make_vec_env(ENV, 2).num_envs == 2  # what the learner builds for --num-envs

    # a whole run on 4 of them
    run = tmp_path / "run"
    flags = ["--env", ENV, "--num-envs", "4", "--units", "32", "--layers", "2", "--batch-size",
             "32", "--warmup", "64", "--steps", "20", "--eval-every", "10", "--eval-episodes",
             "1", "--threads", "1", "--no-progress", "--out", str(run)]  # fmt: skip
    assert main(["train", *flags]) == 0
    with (run / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["grad_step"]) for r in rows] == [0, 10, 20]
    assert [int(r["env_step"]) for r in rows] == [64, 104, 144]  # 4 envs per update
    assert all(float(r["eval_return_mean"]) > 0 for r in rows)  # 1,000 balancing steps


def test_an_unknown_playground_env_is_refused_with_close_names() -> None:
    from widerl.collect.envs import check_env_id

    with pytest.raises(widerl.ConfigError, match="did you mean playground/CartpoleBalance"):
        check_env_id("playground/CartpoleBalanse")


def test_an_env_whose_assets_cannot_be_fetched_is_refused_in_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Playground's locomotion envs clone MuJoCo Menagerie on first use; without network
    that fails (here: made to fail, so that the test needs no network either way)."""
    import subprocess

    from mujoco_playground import registry

    from widerl.collect import playground

    def fetch_fails(name: str, **_: object) -> None:
        raise subprocess.CalledProcessError(128, ["git", "clone"])

    monkeypatch.setattr(registry, "load", fetch_fails)
    playground._compiled.cache_clear()
    with pytest.raises(widerl.ConfigError) as e:
        playground.PlaygroundVectorEnv("playground/Go1JoystickFlatTerrain", 2)
    line = str(e.value)
    assert "\n" not in line and "'playground/Go1JoystickFlatTerrain' cannot be loaded" in line
    assert "returned non-zero exit status 128" in line and "MuJoCo Menagerie" in line
    playground._compiled.cache_clear()


def test_observations_cross_by_dlpack_without_a_copy_on_the_cpu() -> None:
    import jax.numpy as jnp

    from widerl.collect.playground import _host

    x = jnp.arange(12, dtype=jnp.float32).reshape(4, 3)
    a = _host(x)
    assert a.dtype == np.float32 and a.shape == (4, 3)
    assert a.ctypes.data == np.asarray(x).ctypes.data  # the JAX buffer itself
    np.testing.assert_array_equal(a, np.arange(12).reshape(4, 3))
