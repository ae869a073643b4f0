"""The algorithms: each a subclass of agents.base.Agent in a file of its own, registered as
`algo` in config/registries.py (adding one is that file plus one line there); this package
makes them (torch is imported with the algorithm).
"""

from __future__ import annotations

from typing import Any

from widerl.config import registries


def agent_class(name: str) -> Any:
    return registries.load("algo", name)


def make_agent(cfg: Any, obs_dim: int, act_dim: int, device: Any, **kw: Any) -> Any:
    """The agent named by `cfg.algo` on `device` (see agents.base.Agent for `kw`)."""
    return agent_class(cfg.algo)(cfg, obs_dim, act_dim, device, **kw)


def meta_agent(cfg: Any, obs_dim: int, act_dim: int, seeds: int = 1) -> Any:
    """The agent of `cfg` on the meta device: shapes without memory. Networks whose sizes
    overflow int64 cannot be built even there: ConfigError."""
    import torch

    from widerl.errors import ConfigError

    meta = torch.device("meta")
    try:
        with meta:  # the default device too: modules built before `.to(device)` stay shapes
            return make_agent(cfg, obs_dim, act_dim, meta, seeds=list(range(seeds)))
    except (RuntimeError, OverflowError, TypeError):
        raise ConfigError(
            f"--units {cfg.units} x --layers {cfg.layers} (--critics {cfg.critics}, "
            f"--atoms {cfg.atoms}, --ofenet-units {cfg.ofenet_units}) gives weight tensors too "
            "large to count (beyond int64 elements); use smaller networks"
        ) from None
