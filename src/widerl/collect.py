"""The env loop that fills the replay buffer: steps a vector of envs with random actions
(warm-up, A.4) or the agent's current policy. Used inline by the learner (`--actors 0`)."""

from __future__ import annotations

from collections import deque

import gymnasium as gym
import numpy as np
import torch

from widerl.agents.base import Agent
from widerl.replay import ReplayBuffer

# With a held-out buffer, one transition in this many goes there instead of the replay.
HOLDOUT_EVERY = 100


class Collector:
    def __init__(
        self,
        envs: gym.vector.VectorEnv,
        seed: int,
        device: torch.device,
        holdout: ReplayBuffer | None = None,
    ) -> None:
        self.envs, self.device, self.holdout = envs, device, holdout
        self.num_envs = envs.num_envs
        self.act_shape = envs.single_action_space.shape
        self.rng = np.random.default_rng(seed)
        self.recent_returns: deque[float] = deque(maxlen=10)
        self.episodes = 0
        self.env_steps = 0
        self.reset()

    def reset(self) -> None:
        """Start fresh episodes in every env (at start, and after restoring a checkpoint)."""
        self.obs, _ = self.envs.reset(seed=int(self.rng.integers(2**31)))
        self.ep_return = np.zeros(self.num_envs)

    def policy_actions(self, agent: Agent | None) -> np.ndarray:
        if agent is None:  # random policy of the warm-up phase
            return self.rng.uniform(-1.0, 1.0, (self.num_envs, *self.act_shape)).astype(np.float32)
        obs = torch.as_tensor(self.obs, dtype=torch.float32, device=self.device)
        return agent.act(obs, deterministic=False).cpu().numpy()

    def step(self, agent: Agent | None, replay: ReplayBuffer) -> None:
        """One step of every env; the transitions go to `replay`."""
        act = self.policy_actions(agent)
        next_obs, rew, term, trunc, info = self.envs.step(act)
        done = term | trunc
        real_next = next_obs
        if done.any():
            real_next = next_obs.copy()
            mask = info["_final_obs"]
            real_next[mask] = np.stack(info["final_obs"][mask])
        dest = replay
        if self.holdout is not None and (self.env_steps // self.num_envs) % HOLDOUT_EVERY == 0:
            dest = self.holdout
        dest.add(self.obs, act, rew.astype(np.float32), real_next, term)
        self.ep_return += rew
        for i in np.flatnonzero(done):
            self.recent_returns.append(float(self.ep_return[i]))
            self.episodes += 1
            self.ep_return[i] = 0.0
        self.obs = next_obs
        self.env_steps += self.num_envs

    def state_dict(self) -> dict:
        return {
            "rng": self.rng.bit_generator.state,
            "episodes": self.episodes,
            "env_steps": self.env_steps,
            "recent_returns": list(self.recent_returns),
        }

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.episodes = int(state["episodes"])
        self.env_steps = int(state["env_steps"])
        self.recent_returns.extend(state["recent_returns"])
