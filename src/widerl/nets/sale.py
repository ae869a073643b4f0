"""SALE, TD7's state-action learned embeddings (Fujimoto et al. 2023, NeurIPS, Sec. 4):
OFENet's idea (Ota et al. 2020) with a latent target instead of the raw next state.

    z_s  = AvgL1Norm(f(s))                      f: Linear -> ELU -> Linear -> ELU -> Linear
    z_sa = g(z_s, a)                            g: the same shape on [z_s, a]
    L    = || g(f(s), a) - sg(f(s')) ||^2       (Eq. 3: the next state's embedding, no gradient)

The agent's inputs (Sec. 4.1): the actor sees [s, z_s], the critics [s, a, z_sa, z_s], with
the embeddings of the fixed encoder (nets/latent.py), refreshed every --encoder-target-every
updates (TD7: 250). Here z_s = [s, z_s] and z_sa = [s, z_s, a, z_sa]: the same values, in
the order widerl's feature seam asks for (z_sa begins with z_s, nets/features.py).

What differs (decisions): TD7 normalises the first hidden layer of its actor and critic with
AvgL1Norm too and keeps a second fixed copy for the TD target (the one before the last
refresh); widerl's agent bodies are its own (--arch), and one fixed copy feeds both the
current and the target values.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from widerl.nets.latent import EncoderMLP, LatentLearner, avg_l1_norm, encoder_settings, seeded

# TD7's published encoder (its Hyperparameters: zs_dim 256, enc_hdim 256, encoder_lr 3e-4,
# target_update_rate 250), used where the --encoder-* flags are left at 0.
TD7_ENCODER = {"units": 256, "dim": 256, "lr": 3e-4, "refresh_every": 250}


class SALENets(nn.Module):
    def __init__(self, members: int, obs_dim: int, act_dim: int, hidden: int, dim: int) -> None:
        super().__init__()
        self.f = EncoderMLP(members, obs_dim, hidden, dim, layernorm=False)
        self.g = EncoderMLP(members, dim + act_dim, hidden, dim, layernorm=False)

    def zs(self, obs: torch.Tensor) -> torch.Tensor:
        return avg_l1_norm(self.f(obs))

    def zsa(self, zs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        return self.g(torch.cat([zs, act], dim=-1))


class SALE(LatentLearner):
    @classmethod
    def from_config(cls, cfg: Any, obs_dim: int, act_dim: int, seeds: int = 1) -> SALE:
        return cls(obs_dim, act_dim, **encoder_settings(cfg, TD7_ENCODER), seeds=seeds)

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        units: int = 256,
        dim: int = 256,
        lr: float = 3e-4,
        refresh_every: int = 250,
        seeds: int = 1,
    ) -> None:
        super().__init__()
        self.obs_dim, self.dim = obs_dim, dim
        self.s_dim = obs_dim + dim
        self.sa_dim = self.s_dim + act_dim + dim
        self.setup(SALENets(seeds, obs_dim, act_dim, units, dim), lr, 0.0, refresh_every)

    # --- features for the agent (the fixed copy) -------------------------------------------
    def state(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.cat([obs, self.fixed.zs(obs)], dim=-1)

    def state_action(self, z_s: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        zsa = self.fixed.zsa(z_s[..., self.obs_dim :], act)
        return torch.cat([z_s, act, zsa], dim=-1)

    # --- the encoder's loss ---------------------------------------------------------------
    def sale_loss(
        self, obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor
    ) -> torch.Tensor:
        """Eq. 3 per seed `[K]`: the mean squared error of g(f(s), a) against f(s') (the
        online encoder's, without gradient)."""
        net = self.online
        target = net.zs(next_obs).detach()
        pred = net.zsa(net.zs(obs), act)
        return (pred - target).square().mean(dim=(1, 2))

    def update(self, obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        single, (obs, act, next_obs) = seeded([obs, act, next_obs])
        loss = self.step_on(self.sale_loss, obs, act, next_obs)
        return loss[0] if single else loss

    @torch.no_grad()
    def heldout_loss(
        self, obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor
    ) -> torch.Tensor:
        single, (obs, act, next_obs) = seeded([obs, act, next_obs])
        loss = self.sale_loss(obs, act, next_obs)
        return loss[0] if single else loss
