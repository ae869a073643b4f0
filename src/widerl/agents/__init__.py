"""SAC and TD3 agents sharing one critic update."""

from __future__ import annotations

from widerl.agents.base import Agent
from widerl.agents.sac import SAC
from widerl.agents.td3 import TD3

__all__ = ["Agent", "SAC", "TD3", "make_agent"]


def make_agent(cfg, obs_dim: int, act_dim: int, device, features=None) -> Agent:  # noqa: ANN001
    """Build the agent named by `cfg.algo` on `device`."""
    cls = {"sac": SAC, "td3": TD3}[cfg.algo]
    return cls(cfg, obs_dim, act_dim, device, features)
