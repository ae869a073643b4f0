"""Environment construction: checked ids, actions rescaled to [-1, 1], vectorised stepping.

Termination and truncation stay separate all the way to the replay buffer: only a real
termination stops bootstrapping (a time-limit end is not a terminal state).
"""

from __future__ import annotations

import difflib

import gymnasium as gym
import numpy as np
from gymnasium.wrappers import RescaleAction

from widerl.config import ConfigError


def check_env_id(env_id: str) -> None:
    """Raise ConfigError unless `env_id` is a registered env with a continuous action space."""
    if env_id not in gym.registry:
        close = difflib.get_close_matches(env_id, list(gym.registry), n=4, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(
            f"unknown env id {env_id!r}{hint} (continuous-control ids include "
            "Hopper-v5, Walker2d-v5, HalfCheetah-v5, Ant-v5, Humanoid-v5, "
            "InvertedPendulum-v5, Pendulum-v1)"
        )
    env = gym.make(env_id)
    try:
        if not isinstance(env.action_space, gym.spaces.Box):
            raise ConfigError(
                f"env {env_id!r} has a {type(env.action_space).__name__} action space; "
                "widerl needs continuous (Box) actions"
            )
    finally:
        env.close()


def make_env(env_id: str, render_mode: str | None = None) -> gym.Env:
    """One env whose actions are in [-1, 1]^|A| (the agents' convention)."""
    env = gym.make(env_id, render_mode=render_mode)
    shape = env.action_space.shape
    return RescaleAction(env, np.full(shape, -1.0, np.float32), np.full(shape, 1.0, np.float32))


def make_vec_env(env_id: str, num_envs: int) -> gym.vector.SyncVectorEnv:
    """`num_envs` copies stepped together. SAME_STEP autoreset hands back the final
    observation of an ending episode in `info["final_obs"]` in the step it ends, so the
    stored transition has the true next state and the returned obs is already the reset one."""
    return gym.vector.SyncVectorEnv(
        [lambda: make_env(env_id) for _ in range(num_envs)],
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
    )


def env_dims(env_id: str) -> tuple[int, int]:
    env = gym.make(env_id)
    try:
        return int(np.prod(env.observation_space.shape)), int(np.prod(env.action_space.shape))
    finally:
        env.close()
