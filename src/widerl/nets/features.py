"""What the agent sees: z_s for the actor, z_sa for the critics.

The agent never knows whether representation learning is on (DESIGN.md): it receives a
features object with `s_dim`, `sa_dim`, `state(obs)` and `state_action(z_s, act)`.
Without OFENet these are the raw state and the concatenated state-action pair.
"""

from __future__ import annotations

import torch
from torch import nn

from widerl.config import Config


class RawFeatures(nn.Module):
    """No representation learning: z_s = s, z_sa = [s, a]."""

    def __init__(self, obs_dim: int, act_dim: int) -> None:
        super().__init__()
        self.s_dim = obs_dim
        self.sa_dim = obs_dim + act_dim

    def state(self, obs: torch.Tensor) -> torch.Tensor:
        return obs

    def state_action(self, z_s: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        return torch.cat([z_s, act], dim=-1)

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {}


def make_features(cfg: Config, obs_dim: int, act_dim: int, device: torch.device) -> nn.Module:
    """OFENet when `cfg.ofenet_units` > 0, the raw state and state-action pair otherwise."""
    if not cfg.ofenet_units:
        return RawFeatures(obs_dim, act_dim).to(device)
    from widerl.nets.ofenet import OFENet

    return OFENet(
        obs_dim,
        act_dim,
        units=cfg.ofenet_units,
        layers=cfg.ofenet_layers,
        target_dim=cfg.ofenet_target_dim,
        device=device,
    )
