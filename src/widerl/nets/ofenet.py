"""OFENet (Ota et al. 2020; this paper Sec. 3.1, A.1, A.2): representation learning decoupled
from RL.

    z_s  = phi_s(s)            DenseNet: each block Linear -> BatchNorm -> Swish, its output
    z_sa = phi_sa(z_s, a)      concatenated to its input (8 blocks by default)
    L_aux = || f_pred(z_sa) - s_{t+1}[:target_dim] ||^2     (Eq. 1, f_pred linear)

OFENet has its own Adam (3e-4) and learns only from L_aux. A.1 adds a target copy updated with
tau = 0.005, because the replay's distribution moves quickly under distributed collection.

Which copy feeds what: the online copy is what L_aux trains. The agent (actor, critics,
their targets) and the collectors see features from the *target* copy, in BatchNorm eval
mode: their inputs then drift slowly and do not depend on the batch they come in, which is
the stability A.1 asks for. RL losses never reach OFENet's parameters (the agent's gradients
are taken with respect to its own parameters only), but the critics' gradient with respect
to the action still flows through phi_sa, as the actor update needs dQ/da.

With K seeds in one process each seed has its own OFENet: members K of every layer.
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from widerl.nets.autodiff import Differentiable
from widerl.nets.bodies.densenet import DenseNet
from widerl.nets.ensemble import EnsembleLinear, constant_prefix, reset_members, trained_names
from widerl.nets.features import FeatureLearner
from widerl.nets.optim import Adam, soft_update


def _dense(members: int, in_dim: int, total_units: int, layers: int) -> DenseNet:
    """A DenseNet adding `total_units` features in `layers` blocks (2048 = 8 x 256, Table 2),
    with Glorot-uniform weights and zero biases, and BatchNorm with Keras' defaults as in
    OFENet: momentum 0.99 (0.01 in torch's terms), eps 1e-3."""
    body = DenseNet(
        members, in_dim, total_units // layers, layers, "swish", batchnorm=True, init="glorot"
    )
    for layer in body.layers:
        layer.norm.momentum, layer.norm.eps = 0.01, 1e-3
    return body


class OFENetNets(torch.nn.Module):
    """phi_s, phi_sa and the linear predictor; one instance is online, one the target."""

    def __init__(
        self, members: int, obs_dim: int, act_dim: int, units: int, layers: int, target_dim: int
    ) -> None:
        super().__init__()
        self.phi_s = _dense(members, obs_dim, units, layers)
        self.phi_sa = _dense(members, self.phi_s.out_dim + act_dim, units, layers)
        self.predictor = EnsembleLinear(members, self.phi_sa.out_dim, target_dim, init="glorot")

    def state_action(self, z_s: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        # The agent's z_s carries no gradient: phi_sa's layers skip its columns' gradient.
        return self.phi_sa(torch.cat([z_s, act], dim=-1), constant_prefix(z_s, 0))

    def predict(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        return self.predictor(self.state_action(self.phi_s(obs), act))


class OFENet(FeatureLearner):
    """See the module docstring for which copy feeds what."""

    metric_name = "aux_loss"
    has_heldout = True

    @classmethod
    def from_config(cls, cfg: Any, obs_dim: int, act_dim: int, seeds: int = 1) -> OFENet:
        return cls(obs_dim, act_dim, units=cfg.ofenet_units, layers=cfg.ofenet_layers,
                   target_dim=cfg.ofenet_target_dim, pretrain_updates=cfg.ofenet_pretrain,
                   seeds=seeds)  # fmt: skip

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        units: int = 2048,
        layers: int = 8,
        target_dim: int = 0,
        lr: float = 3e-4,
        tau: float = 0.005,
        pretrain_updates: int = 0,
        seeds: int = 1,
    ) -> None:
        super().__init__()
        if units % layers:
            raise ValueError(f"OFENet units {units} must split evenly across {layers} layers")
        self.target_dim = target_dim or obs_dim
        if not 0 < self.target_dim <= obs_dim:
            raise ValueError(f"OFENet target dim {target_dim} must be in [1, {obs_dim}]")
        self.tau, self.lr, self.pretrain_updates = tau, lr, pretrain_updates
        self.online = OFENetNets(seeds, obs_dim, act_dim, units, layers, self.target_dim)
        self.target = copy.deepcopy(self.online)
        self.requires_grad_(False)  # gradients only inside the loss (autodiff.Differentiable)
        self.target.eval()
        self.s_dim = self.online.phi_s.out_dim
        self.sa_dim = self.online.phi_sa.out_dim
        self.build_optimizer()

    def reset_parameters(self, generators: list[torch.Generator]) -> None:
        reset_members(self.online, generators)
        self.target.load_state_dict(self.online.state_dict())

    def build_optimizer(self) -> None:
        """The optimizer and parameter lists, once the parameters live on their device."""
        names = trained_names(self.online, "online.")
        self.params = Differentiable(self, names)
        self.opt = Adam(self.params.params, self.lr)
        self._online = self.params.params
        target = dict(self.target.named_parameters())
        self._target = [target[n.removeprefix("online.")] for n in names]
        # BatchNorm running statistics follow the online copy in the same way.
        self._online_stats = [b for b in self.online.buffers() if b.is_floating_point()]
        self._target_stats = [b for b in self.target.buffers() if b.is_floating_point()]

    def train(self, mode: bool = True) -> OFENet:
        """The target copy always stays in eval mode: it only produces features."""
        super().train(mode)
        self.target.eval()
        return self

    # --- features for the agent (target copy, eval-mode BatchNorm) ----------------------
    def state(self, obs: torch.Tensor) -> torch.Tensor:
        return self.target.phi_s(obs)

    def state_action(self, z_s: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        return self.target.state_action(z_s, act)

    # --- the auxiliary task ---------------------------------------------------------------
    def aux_loss(
        self,
        obs: torch.Tensor,
        act: torch.Tensor,
        next_obs: torch.Tensor,
        net: OFENetNets | None = None,
    ) -> torch.Tensor:
        """Eq. 1 per seed `[K]`: mean squared error of the predicted next state (its first
        target_dim dims)."""
        pred = (net or self.online).predict(obs, act)
        return (pred - next_obs[..., : self.target_dim]).square().mean(dim=(1, 2))

    def _loss(
        self, obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        per_seed = self.aux_loss(obs, act, next_obs)
        # Summed over seeds: each seed's parameters get exactly its own loss's gradient.
        return per_seed.sum(), per_seed.detach()

    def update(self, obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        """One Adam step on L_aux (BatchNorm in train mode), then the target moves by tau.
        Returns L_aux per seed (a scalar for single-seed `[B, obs_dim]` inputs)."""
        single = obs.dim() == 2
        if single:
            obs, act, next_obs = obs.unsqueeze(0), act.unsqueeze(0), next_obs.unsqueeze(0)
        self.online.train()
        grads, loss = self.params.grad(self._loss, obs, act, next_obs)
        self.opt.step(grads)
        soft_update(self._target, self._online, self.tau)
        soft_update(self._target_stats, self._online_stats, self.tau)
        return loss[0] if single else loss

    @torch.no_grad()
    def heldout_loss(
        self, obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor
    ) -> torch.Tensor:
        """L_aux of the online copy in eval mode, e.g. on a held-out batch."""
        single = obs.dim() == 2
        if single:
            obs, act, next_obs = obs.unsqueeze(0), act.unsqueeze(0), next_obs.unsqueeze(0)
        self.online.eval()
        loss = self.aux_loss(obs, act, next_obs)
        self.online.train()
        return loss[0] if single else loss

    eval_loss = heldout_loss  # the name the trainer used before the feature-learner seam

    def acting_state(self) -> dict[str, torch.Tensor]:
        """Only the target copy: it alone feeds the agent (the module docstring)."""
        return {f"target.{k}": v for k, v in self.target.state_dict().items()}

    def optimizers(self) -> dict[str, Adam]:
        return {"ofenet": self.opt}
