"""The env loop that produces transitions: steps a vector of envs with random actions
(warm-up, A.4) or the agent's current policy, and hands back chunks of transitions.

The same `Collector` runs inline in the learner (`--actors 0`, the paper's "w/o Ape-X") and
inside every Ray collector process (`--actors N`, Sec. 3.2); where its chunks go is the
learner's business (`Intake.add`, through `Trainer.take`), so both paths fill the replay the
same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
import torch

from widerl.agents.base import Agent
from widerl.collect.envs import env_state, set_env_state
from widerl.config import Config
from widerl.replay.buffer import TRANSITION_FIELDS


@dataclass
class Chunk:
    """Consecutive steps of a collector's envs, flattened to rows (one per transition)."""

    obs: np.ndarray
    act: np.ndarray
    rew: np.ndarray
    next_obs: np.ndarray
    term: np.ndarray
    returns: list[float] = field(default_factory=list)  # episodes that ended in this chunk
    version: int = 0  # gradient updates of the weights that chose the actions
    priority: np.ndarray | None = None  # Ape-X actor-side initial priorities (|TD error|)
    source: int = 0  # which collector produced it
    # With --reward-scaling: each row's running discounted return G_t (collect/reward_scale.py)
    disc_return: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.rew)

    @staticmethod
    def concat(chunks: list[Chunk]) -> Chunk:
        if len(chunks) == 1:
            return chunks[0]
        return Chunk(
            *(np.concatenate([getattr(c, k) for c in chunks]) for k in _ARRAYS),
            returns=[r for c in chunks for r in c.returns],
            version=chunks[-1].version,
            source=chunks[-1].source,
            disc_return=None
            if chunks[0].disc_return is None
            else np.concatenate([c.disc_return for c in chunks]),  # type: ignore[misc]
        )


_ARRAYS = TRANSITION_FIELDS


def noise_range(cfg: Config) -> tuple[float, float] | None:
    """Each env's exploration std range (TD3's --expl-noise-max), or None for one std."""
    return (cfg.expl_noise, cfg.expl_noise_max) if cfg.expl_noise_max else None


def return_gamma(cfg: Config) -> float | None:
    """The discount of the returns a collector tracks for --reward-scaling, or None."""
    return cfg.gamma if cfg.reward_scaling else None


class Collector:
    """`noise_range` (low, high): each env's exploration std, drawn uniformly from it (with
    the collector's generator) whenever its episode starts (TD3's --expl-noise-max).
    `return_gamma`: keep each env's running discounted return G_t and send it with every
    row (--reward-scaling; collect/reward_scale.py)."""

    def __init__(
        self,
        envs: gym.vector.VectorEnv,
        seed: int,
        device: torch.device,
        noise_range: tuple[float, float] | None = None,
        return_gamma: float | None = None,
    ) -> None:
        self.envs, self.device = envs, device
        self.return_gamma = return_gamma
        self.num_envs = envs.num_envs
        self.act_shape = envs.single_action_space.shape
        self.rng = np.random.default_rng(seed)
        self.noise_range = noise_range
        self.noise_scale: np.ndarray | None = None  # [num_envs, 1] with a noise_range
        self.reset()

    def reset(self) -> None:
        """Start fresh episodes in every env (at start, and after restoring a checkpoint)."""
        self.obs, _ = self.envs.reset(seed=int(self.rng.integers(2**31)))
        self.ep_return = np.zeros(self.num_envs)
        self.disc_return = np.zeros(self.num_envs)  # G_t of each env's running episode
        if self.noise_range is not None:
            self.noise_scale = self._draw_scales(self.num_envs)

    def _draw_scales(self, n: int) -> np.ndarray:
        low, high = self.noise_range  # type: ignore[misc]
        return self.rng.uniform(low, high, (n, 1)).astype(np.float32)

    def policy_actions(self, agent: Agent | None) -> np.ndarray:
        if agent is None:  # random policy of the warm-up phase
            return self.rng.uniform(-1.0, 1.0, (self.num_envs, *self.act_shape)).astype(np.float32)
        obs = torch.as_tensor(self.obs, dtype=torch.float32, device=self.device)
        scale = (
            None
            if self.noise_scale is None
            else torch.as_tensor(self.noise_scale, device=self.device)
        )
        return agent.act(obs, deterministic=False, noise_scale=scale).cpu().numpy()

    def step(self, agent: Agent | None) -> Chunk:
        """One step of every env (actions from one batched forward pass)."""
        return self.advance(self.policy_actions(agent))

    def advance(self, act: np.ndarray) -> Chunk:
        """One step of every env with the actions `act` chosen elsewhere (with --seeds, one
        forward pass of all seeds' policies chooses every seed's actions)."""
        next_obs, rew, term, trunc, info = self.envs.step(act)
        done = term | trunc
        real_next = next_obs
        ending = bool(done.any())
        if ending:
            # SAME_STEP autoreset: the true last state of an ending episode is in info.
            real_next = next_obs.copy()
            mask = info["_final_obs"]
            real_next[mask] = np.stack(info["final_obs"][mask])
        chunk = Chunk(
            self.obs.astype(np.float32, copy=False),
            act,
            rew.astype(np.float32),
            real_next.astype(np.float32, copy=False),
            term.astype(bool),
        )
        self.ep_return += rew
        if self.return_gamma is not None:
            self.disc_return = self.return_gamma * self.disc_return + rew
            chunk.disc_return = self.disc_return.astype(np.float32)
            self.disc_return[done] = 0.0
        ended = np.flatnonzero(done) if ending else ()
        for i in ended:
            chunk.returns.append(float(self.ep_return[i]))
            self.ep_return[i] = 0.0
        if self.noise_scale is not None and len(ended):
            self.noise_scale[ended] = self._draw_scales(len(ended))
        self.obs = next_obs
        return chunk

    def collect(self, agent: Agent | None, steps: int) -> Chunk:
        """`steps` steps of every env as one chunk of `steps * num_envs` transitions."""
        return Chunk.concat([self.step(agent) for _ in range(steps)])

    def state_dict(self) -> dict:
        """The RNG, and (for exact resume) the running episodes: each env's state (None where
        it cannot be captured, see envs.env_state), the current observations and returns."""
        sub = getattr(self.envs, "envs", None)  # a SyncVectorEnv's own envs
        state = {
            "rng": self.rng.bit_generator.state,
            "obs": torch.from_numpy(np.array(self.obs)),
            "ep_return": torch.from_numpy(self.ep_return.copy()),
            "disc_return": torch.from_numpy(self.disc_return.copy()),
            "envs": None if sub is None else [env_state(e) for e in sub],
        }
        if self.noise_scale is not None:  # the running episodes' exploration stds
            state["noise_scale"] = torch.from_numpy(self.noise_scale.copy())
        return state

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]

    def restore_episodes(self, state: dict) -> bool:
        """Continue the episodes that ran when `state` was saved; False, changing nothing, if
        `state` lacks any env's state (then the caller starts fresh episodes)."""
        sub, states = getattr(self.envs, "envs", None), state.get("envs")
        if sub is None or states is None or len(states) != len(sub):
            return False
        if any(s is None for s in states):
            return False
        for env, s in zip(sub, states, strict=True):
            set_env_state(env, s)
        self.obs = state["obs"].numpy().copy()
        self.ep_return = state["ep_return"].numpy().copy()
        if "disc_return" in state:
            self.disc_return = state["disc_return"].numpy().copy()
        if self.noise_scale is not None and "noise_scale" in state:
            self.noise_scale = state["noise_scale"].numpy().copy()
        return True
