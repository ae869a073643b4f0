"""DeepMind Control Suite tasks through Gymnasium (shimmy, the `dmc` extra): flattened
observations, actions in [-1, 1], the 1000-step limit a truncation, and a tiny run."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("shimmy", reason="the dmc extra (shimmy, dm-control) is not installed")

from widerl.cli import main  # noqa: E402
from widerl.collect.envs import check_env_id, env_dims, make_vec_env  # noqa: E402

TASK = "dm_control/cartpole-swingup-v0"


def test_dmc_observations_are_flat_and_episodes_truncate() -> None:
    check_env_id(TASK)
    assert env_dims(TASK) == (5, 1)  # position (3) + velocity (2), one force
    envs = make_vec_env(TASK, 1)
    obs, _ = envs.reset(seed=0)
    assert obs.shape == (1, 5)
    steps, terminated, truncated = 0, False, False
    while not truncated and steps < 2000:
        obs, rew, term, trunc, _ = envs.step(np.ones((1, 1), np.float32))
        assert 0.0 <= float(rew[0]) <= 1.0  # DMC rewards live in [0, 1]
        terminated |= bool(term[0])
        truncated = bool(trunc[0])
        steps += 1
    envs.close()
    assert truncated and steps == 1000 and not terminated  # the time limit is no termination


def test_unknown_dmc_task_is_one_line(capsys) -> None:
    assert main(["train", "--env", "dm_control/cartpole-swingdown-v0", "--steps", "5"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("widerl: error: unknown env id") and "cartpole-swingup" in err


def test_tiny_run_on_a_dmc_task(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["train", "--env", TASK, "--out", str(out), "--units", "16", "--batch-size", "32"]
    args += ["--warmup", "100", "--steps", "40", "--eval-every", "20", "--eval-episodes", "1"]
    args += ["--no-progress", "--threads", "1", "--arch", "simba", "--obs-norm"]
    assert main(args) == 0
    with (out / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["grad_step"]) for r in rows] == [0, 20, 40]
    assert all(0.0 <= float(r["eval_return_mean"]) <= 1000.0 for r in rows)
    assert main(["eval", str(out), "--episodes", "1"]) == 0
