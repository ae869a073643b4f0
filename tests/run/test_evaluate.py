"""The training run's evaluation: episodes side by side return what each would alone."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import widerl
from widerl.agents.base import Agent
from widerl.collect.envs import make_env
from widerl.run import evaluate
from widerl.run.build import build

TINY = {"env": "Pendulum-v1", "algo": "sac", "units": 16, "layers": 1, "steps": 4,
        "eval_every": 4, "warmup": 4, "batch_size": 4, "threads": 1}  # fmt: skip


@pytest.mark.parametrize("episodes", [3, 7])
def test_side_by_side_episodes_return_their_single_episodes(
    episodes: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 7 episodes with 5 side by side: a group of 5, then one of 2. Each episode's return is
    # the one run_episode gets for the same seed alone (a forward pass over several rows may
    # round differently from one over a single row, hence the tolerance).
    monkeypatch.setattr(evaluate, "SIDE_BY_SIDE", 5)
    run = build(widerl.resolve(TINY), seeds=[0, 1])
    try:
        seeds = [100, 200]
        returns = evaluate.Evaluator("Pendulum-v1", seeds, episodes)(run.agent)
        assert returns.shape == (2, episodes)
        assert len(set(returns.ravel().tolist())) == returns.size  # every episode its own
        env = make_env("Pendulum-v1")
        for k, s in enumerate(seeds):
            for i in range(episodes):
                alone = _episode_of_member(env, run.agent, k, s + i)
                assert returns[k, i] == pytest.approx(alone, rel=1e-4), (k, i)
        env.close()
    finally:
        run.close()


def _episode_of_member(env: gym.Env, agent: Agent, k: int, seed: int) -> float:
    """Seed k's deterministic episode alone: its observation in row k of a stacked batch of
    one observation per member (the other members see zeros)."""
    obs, _ = env.reset(seed=seed)
    total, done = 0.0, False
    while not done:
        x = torch.zeros(len(agent.seeds), 1, len(obs))
        x[k, 0] = torch.as_tensor(obs, dtype=torch.float32)
        a = agent.act(x, deterministic=True)[k, 0].numpy()
        obs, rew, term, trunc, _ = env.step(a)
        total += float(rew)
        done = term or trunc
    return total


def test_an_episode_that_ends_early_waits_for_the_others() -> None:
    # Episodes of different lengths: each return stops at its own end.
    class Ends:
        def __init__(self, length: int) -> None:
            self.length, self.t = length, 0

        def reset(self, seed: int) -> tuple[np.ndarray, dict]:
            self.t = 0
            return np.zeros(3), {}

        def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
            self.t += 1
            return np.zeros(3), 1.0, self.t == self.length, False, {}

    run = build(widerl.resolve(TINY))
    try:
        envs = [[Ends(2), Ends(5), Ends(3)]]
        returns = evaluate.run_episodes(envs, run.agent, [[0, 1, 2]])  # type: ignore[arg-type]
        np.testing.assert_array_equal(returns, [[2.0, 5.0, 3.0]])
    finally:
        run.close()
