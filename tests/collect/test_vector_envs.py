"""--num-envs N: the learner steps N envs together, N transitions per vector step, --utd
updates per vector step; exact resume; refused beside Ray collectors."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

import widerl
from widerl.record.logger import TIMING_COLUMNS

TINY = {
    "env": "Hopper-v5",  # episodes end early under random actions: terminations in every env
    "units": 16,
    "layers": 1,
    "batch_size": 32,
    "buffer_size": 5_000,
    "warmup": 200,
    "eval_every": 30,
    "eval_episodes": 1,
    "threads": 1,
    "progress": False,
    "checkpoint_replay": True,
}


def rows(run: Path) -> list[dict[str, str]]:
    with (run / "metrics.csv").open() as f:
        return [{k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in csv.DictReader(f)]


@pytest.mark.parametrize(("num_envs", "utd"), [(4, 1), (4, 2), (1, 1)])
def test_each_vector_step_adds_num_envs_transitions(
    num_envs: int, utd: int, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    widerl.train(widerl.resolve({**TINY, "steps": 60, "num_envs": num_envs, "utd": utd}), run)
    got = rows(run)
    warm = int(got[0]["env_step"])
    assert warm >= 200 and warm % num_envs == 0  # whole vector steps of random actions
    steps = [int(r["env_step"]) - warm for r in got]
    assert steps == [0, 30 // utd * num_envs, 60 // utd * num_envs]
    assert int(got[-1]["replay_size"]) == int(got[-1]["env_step"])
    assert int(got[-1]["episodes"]) >= num_envs  # every env ended episodes (autoreset)


@pytest.mark.slow
def test_a_run_of_many_envs_resumed_midway_writes_the_uninterrupted_rows(tmp_path: Path) -> None:
    settings = {**TINY, "num_envs": 3, "n_step": 2}  # (PER's beta follows --steps: left out)
    widerl.train(widerl.resolve({**settings, "steps": 90}), tmp_path / "ref")
    widerl.train(widerl.resolve({**settings, "steps": 60}), tmp_path / "cut")
    widerl.train(resume=tmp_path / "cut", steps=90)
    ref = rows(tmp_path / "ref")
    assert [r["grad_step"] for r in ref] == ["0", "30", "60", "90"]
    assert rows(tmp_path / "cut") == ref  # every env's episode went on where it stopped


def test_num_envs_beside_ray_collectors_is_refused() -> None:
    with pytest.raises(widerl.ConfigError, match="--num-envs 4 steps envs in the learner"):
        widerl.resolve({**TINY, "num_envs": 4, "actors": 2})
