"""Deterministic evaluation on its own env, seeded apart from the training env."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from widerl.agents.base import Agent
from widerl.collect.envs import MISSING_PACKAGE, make_env
from widerl.config import ConfigError
from widerl.errors import first_line


class Evaluator:
    """Runs `episodes` episodes with the deterministic policy of every seed, each seed on its
    own env from its own episode seeds (`seeds[k]`, the seed's eval stream). Every evaluation
    starts its episodes from the same seeds, so curves compare policies on the same initial
    states. The seeds' episodes run side by side: one forward pass of the stacked policies
    chooses all their actions."""

    def __init__(self, env_id: str, seeds: list[int], episodes: int) -> None:
        self.envs = [make_env(env_id) for _ in seeds]
        self.seeds, self.episodes = list(seeds), episodes

    def __call__(self, agent: Agent) -> np.ndarray:
        """Returns `[K, episodes]`."""
        return np.array(
            [
                run_episodes(self.envs, agent, [s + i for s in self.seeds])
                for i in range(self.episodes)
            ]
        ).T

    def close(self) -> None:
        for env in self.envs:
            env.close()


def run_episodes(envs: list[gym.Env], agent: Agent, seeds: list[int]) -> list[float]:
    """The return of one deterministic episode per env: env k is seed k's, acted on by the
    agent's member k. An env whose episode ended waits (its last observation goes through the
    forward pass, its action unused); in eval mode no member's output depends on another's
    input, so each return is the one that seed's single run gets."""
    obs = [env.reset(seed=seed)[0] for env, seed in zip(envs, seeds, strict=True)]
    totals, done = [0.0] * len(envs), [False] * len(envs)
    while not all(done):
        x = torch.as_tensor(np.stack(obs), dtype=torch.float32, device=agent.device)
        actions = agent.act(x.unsqueeze(1), deterministic=True)[:, 0].cpu().numpy()
        for k, env in enumerate(envs):
            if done[k]:
                continue
            obs[k], rew, term, trunc, _ = env.step(actions[k])
            totals[k] += float(rew)
            done[k] = bool(term or trunc)
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
