"""Deterministic evaluation on envs of its own, seeded apart from the training env."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from widerl.agents.base import Agent
from widerl.collect.envs import MISSING_PACKAGE, make_env
from widerl.config import ConfigError
from widerl.errors import first_line

# Episodes of one seed run side by side, at most this many at a time: one forward pass of
# the policy over 5 observations costs about 1.2-2x one over a single observation on a CPU
# (HalfCheetah-v5, 256 x 2, 2026-12-06), so 5 side by side cut an evaluation's time about 3x;
# more would save less and hold more envs (a DeepMind Control env holds about 13 MB).
SIDE_BY_SIDE = 5


def side_by_side(episodes: int) -> list[int]:
    """How many episodes each group of an evaluation runs side by side (SIDE_BY_SIDE at most,
    the last group the rest): each group's forward passes take that many observations."""
    return [min(SIDE_BY_SIDE, episodes - start) for start in range(0, episodes, SIDE_BY_SIDE)]


class Evaluator:
    """Runs `episodes` episodes with the deterministic policy of every seed, each seed on envs
    of its own from its own episode seeds (`seeds[k] + i` for episode i, the seed's eval
    stream). Every evaluation starts its episodes from the same seeds, so curves compare
    policies on the same initial states. Episodes run side by side, `SIDE_BY_SIDE` per seed at
    a time, one env each: one forward pass of the stacked policies chooses the actions of
    every running episode of every seed."""

    def __init__(self, env_id: str, seeds: list[int], episodes: int) -> None:
        width = min(episodes, SIDE_BY_SIDE)
        self.envs = [[make_env(env_id) for _ in range(width)] for _ in seeds]
        self.seeds, self.episodes = list(seeds), episodes

    def __call__(self, agent: Agent) -> np.ndarray:
        """Returns `[K, episodes]`."""
        groups, start = [], 0
        for n in side_by_side(self.episodes):
            seeds = [[s + start + i for i in range(n)] for s in self.seeds]
            groups.append(run_episodes([row[:n] for row in self.envs], agent, seeds))
            start += n
        return np.concatenate(groups, axis=1)

    def close(self) -> None:
        for envs in self.envs:
            for env in envs:
                env.close()


def run_episodes(envs: list[list[gym.Env]], agent: Agent, seeds: list[list[int]]) -> np.ndarray:
    """The returns `[K, E]` of one deterministic episode per env: `envs[k][i]` runs from
    `seeds[k][i]`, acted on by the agent's member k. An env whose episode ended waits (its last
    observation goes through the forward pass, its action unused); in eval mode no row's
    output depends on another row's input, so each return is that of its policy alone (at the
    numerics of a forward pass over E rows: the same for a seed run alone or stacked)."""
    obs = np.stack(
        [[env.reset(seed=s)[0] for env, s in zip(row, ss, strict=True)]
         for row, ss in zip(envs, seeds, strict=True)]
    )  # fmt: skip
    totals = np.zeros(obs.shape[:2])
    running = [(k, i) for k, row in enumerate(envs) for i in range(len(row))]
    while running:
        x = torch.as_tensor(obs, dtype=torch.float32, device=agent.device)
        actions = agent.act(x, deterministic=True).cpu().numpy()
        still = []
        for k, i in running:
            obs[k, i], rew, term, trunc, _ = envs[k][i].step(actions[k, i])
            totals[k, i] += float(rew)
            if not (term or trunc):
                still.append((k, i))
        running = still
    return totals


def run_episode(
    env: gym.Env, agent: Agent, seed: int, frames: list | None = None
) -> tuple[float, int]:
    """Return and length of one deterministic episode; appends rendered frames if asked."""
    obs, _ = env.reset(seed=seed)
    total, length, done = 0.0, 0, False
    while not done:
        if frames is not None:
            frames.append(env.render())
        x = torch.as_tensor(obs, dtype=torch.float32, device=agent.device).unsqueeze(0)
        action = agent.act(x, deterministic=True)[0].cpu().numpy()
        obs, rew, term, trunc, _ = env.step(action)
        total += float(rew)
        length += 1
        done = term or trunc
    return total, length


def check_renders(env: gym.Env, env_id: str, video: Path) -> None:
    """One frame before any episode runs: an env whose renderer needs a package that is not
    installed (pygame for classic control) is a ConfigError, not a traceback after the
    episodes."""
    env.reset(seed=0)
    try:
        env.render()
    except MISSING_PACKAGE as e:
        raise ConfigError(
            f"--video {str(video)!r}: env {env_id!r} cannot render here: {first_line(e)}"
        ) from None


def write_video(frames: list, path: Path, fps: int = 30) -> None:
    """GIF through Pillow; MP4 (or any other suffix) through imageio's ffmpeg plugin."""
    import imageio.v3 as iio

    video = np.stack(frames)
    if path.suffix == ".gif":
        iio.imwrite(path, video, duration=1000 / fps, loop=0)
    else:
        iio.imwrite(path, video, fps=fps)


def evaluate_run(
    run_dir: Path, episodes: int, seed: int, video: Path | None, device: str = "cpu"
) -> np.ndarray:
    """Load a run's config and checkpoint, then run `episodes` deterministic episodes."""
    from widerl.analysis.run import load_run
    from widerl.run.device import resolve_device

    cfg, agent, _ = load_run(Path(run_dir), resolve_device(device), "widerl eval RUN_DIR")
    env = make_env(cfg.env, render_mode="rgb_array" if video is not None else None)
    try:
        if video is not None:
            check_renders(env, cfg.env, video)
        returns = []
        for i in range(episodes):
            frames: list | None = [] if (video is not None and i == 0) else None
            returns.append(run_episode(env, agent, seed + i, frames)[0])
            if frames:
                write_video(frames, video)
        return np.array(returns)
    finally:
        env.close()
