"""A trained policy for deployment or inspection: `widerl.load_policy(run_dir).act(obs)`.

Loads a run folder's config and checkpoint on the CPU (or a given device) and returns actions
in the env's own action bounds (widerl's agents act in [-1, 1]; the training env rescales, and
so does this), for one observation or a batch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from widerl.agents import make_agent
from widerl.agents.base import Agent
from widerl.config import Config, ConfigError
from widerl.record.checkpoint import load_checkpoint


class Policy:
    """`act(obs, deterministic=True)`: obs `[obs_dim]` -> action `[act_dim]`, or a batch
    `[n, obs_dim]` -> `[n, act_dim]` (numpy arrays or anything np.asarray takes); ConfigError
    for an obs of another shape or with a NaN or inf in it."""

    def __init__(self, agent: Agent, cfg: Config, low: np.ndarray, high: np.ndarray) -> None:
        self.agent, self.cfg = agent.eval(), cfg
        self.low, self.high = low.astype(np.float32), high.astype(np.float32)
        self.obs_dim, self.act_dim = agent.obs_dim, agent.act_dim

    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        try:
            x = np.asarray(obs, dtype=np.float32)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"obs cannot be read as numbers ({e})") from None
        single = x.ndim == 1
        if x.ndim not in (1, 2) or x.shape[-1] != self.obs_dim:
            raise ConfigError(
                f"obs of shape {x.shape}: expected ({self.obs_dim},) or (n, {self.obs_dim})"
            )
        if not np.isfinite(x).all():
            where = tuple(int(i) for i in np.argwhere(~np.isfinite(x))[0])
            raise ConfigError(
                f"obs holds {x[where]} (nan or inf) at index {where}: a policy's action for a "
                "non-finite observation means nothing"
            )
        t = torch.as_tensor(x.reshape(-1, self.obs_dim), device=self.agent.device)
        a = self.agent.act(t, deterministic=deterministic).cpu().numpy()
        # [-1, 1] -> [low, high], as gymnasium's RescaleAction maps them during training.
        a = self.low + (a + 1.0) * 0.5 * (self.high - self.low)
        return a[0] if single else a


def load_policy(run_dir: str | Path, device: str = "cpu", *, arg: str = "load_policy") -> Policy:
    """The policy of the run in `run_dir` (any run folder: finished, stopped or resumed);
    `arg` names the folder in messages (`widerl export RUN_DIR` passes its own)."""
    from widerl.collect.envs import check_stored_env, make_env
    from widerl.record.folder import load_config

    run_dir = Path(run_dir)
    cfg = load_config(run_dir, arg)
    check_stored_env(cfg.env, run_dir, arg)
    dev = torch.device(device)
    state = load_checkpoint(run_dir, map_location=dev)
    env = make_env(cfg.env)
    try:
        obs_dim = int(np.prod(env.observation_space.shape))
        space = env.unwrapped.action_space  # the task's own bounds, before rescaling
        low, high = np.asarray(space.low), np.asarray(space.high)
    finally:
        env.close()
    agent = make_agent(cfg, obs_dim, int(np.prod(low.shape)), dev)
    agent.load_checkpoint_state(state["agent"])
    return Policy(agent, cfg, low, high)
