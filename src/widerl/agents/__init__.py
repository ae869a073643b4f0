"""The registry of algorithms (torch-free, so that config/fields.py can list the names).

Each algorithm is a subclass of agents.base.Agent in a file of its own; adding one is that
file plus one line here.
"""

from __future__ import annotations

import importlib
from typing import Any

ALGORITHMS: dict[str, str] = {
    "sac": "widerl.agents.sac:SAC",
    "td3": "widerl.agents.td3:TD3",
    "crossq": "widerl.agents.crossq:CrossQ",  # beyond the paper (Bhatt et al. 2024)
}


def agent_class(name: str) -> Any:
    if name not in ALGORITHMS:
        raise ValueError(f"unknown algo {name!r}; choose from {', '.join(ALGORITHMS)}")
    module, cls = ALGORITHMS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def make_agent(cfg: Any, obs_dim: int, act_dim: int, device: Any, **kw: Any) -> Any:
    """The agent named by `cfg.algo` on `device` (see agents.base.Agent for `kw`)."""
    return agent_class(cfg.algo)(cfg, obs_dim, act_dim, device, **kw)
