"""--num-envs N: the learner steps N envs together, N transitions per vector step, --utd
updates per vector step; exact resume; refused beside Ray collectors."""

from __future__ import annotations

import csv
import json
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
@pytest.mark.parametrize(
    "extra",
    [
        {"n_step": 2},  # (PER's beta follows --steps: left out)
        {"algo": "td3", "expl_noise": 0.05, "expl_noise_max": 0.5},  # each env's own std
    ],
)
def test_a_run_of_many_envs_resumed_midway_writes_the_uninterrupted_rows(
    extra: dict, tmp_path: Path
) -> None:
    settings = {**TINY, "num_envs": 3, **extra}
    widerl.train(widerl.resolve({**settings, "steps": 90}), tmp_path / "ref")
    widerl.train(widerl.resolve({**settings, "steps": 60}), tmp_path / "cut")
    widerl.train(resume=tmp_path / "cut", steps=90)
    ref = rows(tmp_path / "ref")
    assert [r["grad_step"] for r in ref] == ["0", "30", "60", "90"]
    assert rows(tmp_path / "cut") == ref  # every env's episode went on where it stopped


def test_the_collectors_envs_step_as_gymnasiums_sync_vector_env() -> None:
    """CollectorEnvs keeps of the infos only the final observations: everything it hands back
    of them, and every observation, reward and flag, is SyncVectorEnv's (SAME_STEP)."""
    import gymnasium as gym
    import numpy as np

    from widerl.collect.envs import CollectorEnvs, make_env, make_vec_env

    ours = make_vec_env("Hopper-v5", 3)
    assert isinstance(ours, CollectorEnvs)
    gyms = gym.vector.SyncVectorEnv([lambda: make_env("Hopper-v5") for _ in range(3)],
                                    autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)  # fmt: skip
    assert np.array_equal(ours.reset(seed=5)[0], gyms.reset(seed=5)[0])
    rng, ends = np.random.default_rng(0), 0
    for _ in range(600):  # random Hopper episodes end after ~20 steps
        act = rng.uniform(-1, 1, (3, 3)).astype(np.float32)
        mine, theirs = ours.step(act), gyms.step(act)
        for x, y in zip(mine[:4], theirs[:4], strict=True):
            assert np.array_equal(x, y)
        assert ("_final_obs" in mine[4]) == ("_final_obs" in theirs[4])
        if "_final_obs" in theirs[4]:
            assert np.array_equal(mine[4]["_final_obs"], theirs[4]["_final_obs"])
            for i in np.flatnonzero(theirs[4]["_final_obs"]):
                assert np.array_equal(mine[4]["final_obs"][i], theirs[4]["final_obs"][i])
                ends += 1
    assert ends > 20
    ours.close()
    gyms.close()


def test_num_envs_beside_ray_collectors_is_refused() -> None:
    with pytest.raises(widerl.ConfigError, match="--num-envs 4 steps envs in the learner"):
        widerl.resolve({**TINY, "num_envs": 4, "actors": 2})


def test_each_env_draws_its_exploration_std_when_its_episode_starts() -> None:
    """--expl-noise-max: stds uniform in [--expl-noise, --expl-noise-max], one per env, drawn
    anew for exactly the envs whose episode ended; an env with std 0 acts deterministically."""
    import numpy as np
    import torch

    from widerl.agents import make_agent
    from widerl.collect.collector import Collector
    from widerl.collect.envs import make_vec_env

    collector = Collector(make_vec_env("Hopper-v5", 6), 0, torch.device("cpu"), (0.1, 0.5))
    first = collector.noise_scale.copy()
    assert first.shape == (6, 1) and np.all((first >= 0.1) & (first <= 0.5))
    assert len(np.unique(first)) == 6
    changed = ended = 0
    for _ in range(200):  # random actions end Hopper's episodes within tens of steps
        before = collector.noise_scale.copy()
        act = collector.rng.uniform(-1, 1, (6, 3)).astype(np.float32)
        chunk = collector.advance(act)
        done = chunk.term | (chunk.next_obs != collector.obs).any(1)  # ended: reset obs differs
        moved = (collector.noise_scale != before)[:, 0]
        assert not np.any(moved & ~done)  # only envs whose episode ended draw again
        changed += int(moved.sum())
        ended += len(chunk.returns)
    assert ended > 6 and changed == ended

    cfg = widerl.resolve({"algo": "td3", "units": 16, "layers": 1})
    agent = make_agent(cfg, 11, 3, torch.device("cpu"))
    obs = torch.randn(4, 11)
    scale = torch.tensor([[0.0], [0.0], [1.0], [1.0]])
    acted, mean = agent.act(obs, noise_scale=scale), agent.act(obs, deterministic=True)
    assert torch.equal(acted[:2], mean[:2]) and not torch.allclose(acted[2:], mean[2:])


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["fasttd3", "fastsac"])
def test_the_fast_presets_run_end_to_end_on_hopper(preset: str, tmp_path: Path) -> None:
    """The published recipes (bf16 autocast, funnel networks, many envs, AdamW, obs-norm,
    FastTD3's C51 critic and per-env noise), scaled down only in size: a CPU-sized width,
    batch, replay and env count."""
    from widerl.cli import main

    run = tmp_path / "run"
    small = ["--units", "64", "--actor-units", "32", "--batch-size", "64", "--buffer-size",
             "4000", "--num-envs", "4", "--warmup", "100", "--steps", "40", "--eval-every",
             "20", "--eval-episodes", "1", "--threads", "1", "--no-progress"]  # fmt: skip
    assert main(["train", "--preset", preset, "--env", "Hopper-v5", *small, "--out", str(run)]) == 0
    got = rows(run)
    assert [r["grad_step"] for r in got] == ["0", "20", "40"]
    assert int(got[-1]["env_step"]) - int(got[0]["env_step"]) == 40 // 2 * 4  # utd 2, 4 envs
    stored = json.loads((run / "config.json").read_text())
    assert stored["arch"] == "funnel" and stored["amp"] == "bf16" and stored["tau"] == 0.1
    assert float(got[-1]["critic_loss"]) > 0


@pytest.mark.slow
def test_the_new_options_combine_with_stacked_seeds(tmp_path: Path) -> None:
    """--seeds with --num-envs (N envs per seed), --n-step, --amp bf16 and each env's own
    exploration std: every seed's run folder gets its rows, N env steps per update each."""
    out = tmp_path / "seeds"
    settings = {**TINY, "algo": "td3", "num_envs": 2, "n_step": 2, "amp": "bf16",
                "expl_noise_max": 0.3, "steps": 30}  # fmt: skip
    widerl.train(widerl.resolve(settings), out, seeds=[0, 1])
    per_seed = [rows(out / f"s{s}") for s in (0, 1)]
    for got in per_seed:
        assert [r["grad_step"] for r in got] == ["0", "30"]
        assert int(got[1]["env_step"]) - int(got[0]["env_step"]) == 30 * 2
        assert float(got[1]["critic_loss"]) > 0
    assert per_seed[0][1]["critic_loss"] != per_seed[1][1]["critic_loss"]
