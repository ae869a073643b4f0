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
the stability A.1 asks for. RL losses never reach OFENet's parameters (the target copy has
none that require gradients), but the critics' gradient with respect to the action still
flows through phi_sa, as the actor update needs dQ/da.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from widerl.nets.blocks import Body


def _glorot(module: nn.Module) -> None:
    """Glorot-uniform weights and zero biases, the Keras defaults OFENet was built with."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)


def _dense(in_dim: int, total_units: int, layers: int) -> Body:
    """A DenseNet adding `total_units` features in `layers` blocks (2048 = 8 x 256, Table 2).
    BatchNorm follows Keras' defaults as in OFENet: momentum 0.99 (0.01 in torch's terms),
    eps 1e-3."""
    body = Body(in_dim, "densenet", total_units // layers, layers, "swish", batchnorm=True)
    for layer in body.layers:
        layer.norm.momentum, layer.norm.eps = 0.01, 1e-3
    _glorot(body)
    return body


class OFENetNets(nn.Module):
    """phi_s, phi_sa and the linear predictor; one instance is online, one the target."""

    def __init__(
        self, obs_dim: int, act_dim: int, units: int, layers: int, target_dim: int
    ) -> None:
        super().__init__()
        self.phi_s = _dense(obs_dim, units, layers)
        self.phi_sa = _dense(self.phi_s.out_dim + act_dim, units, layers)
        self.predictor = nn.Linear(self.phi_sa.out_dim, target_dim)
        _glorot(self.predictor)

    def state_action(self, z_s: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        return self.phi_sa(torch.cat([z_s, act], dim=-1))

    def predict(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        return self.predictor(self.state_action(self.phi_s(obs), act))


class OFENet(nn.Module):
    """The features object the agents receive (`s_dim`, `sa_dim`, `state`, `state_action`),
    plus the auxiliary update. See the module docstring for which copy feeds what."""

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        units: int = 2048,
        layers: int = 8,
        target_dim: int = 0,
        lr: float = 3e-4,
        tau: float = 0.005,
        device: torch.device | str = "cpu",
    ) -> None:
        super().__init__()
        if units % layers:
            raise ValueError(f"OFENet units {units} must split evenly across {layers} layers")
        self.target_dim = target_dim or obs_dim
        if not 0 < self.target_dim <= obs_dim:
            raise ValueError(f"OFENet target dim {target_dim} must be in [1, {obs_dim}]")
        self.tau = tau
        self.online = OFENetNets(obs_dim, act_dim, units, layers, self.target_dim)
        self.target = copy.deepcopy(self.online).requires_grad_(False)
        self.target.eval()
        self.s_dim = self.online.phi_s.out_dim
        self.sa_dim = self.online.phi_sa.out_dim
        self.to(device)
        from widerl.agents.base import make_adam  # the agents' optimizer helper

        self.opt = make_adam(self.online.parameters(), lr, torch.device(device))
        self._online_params = list(self.online.parameters())
        self._target_params = list(self.target.parameters())
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
        """Eq. 1: mean squared error of the predicted next state (first target_dim dims)."""
        pred = (net or self.online).predict(obs, act)
        return F.mse_loss(pred, next_obs[..., : self.target_dim])

    def update(self, obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        """One Adam step on L_aux (BatchNorm in train mode), then the target moves by tau."""
        self.online.train()
        loss = self.aux_loss(obs, act, next_obs)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        with torch.no_grad():  # or autograd would chain every lerp into the target's history
            torch._foreach_lerp_(self._target_params, self._online_params, self.tau)
            torch._foreach_lerp_(self._target_stats, self._online_stats, self.tau)
        return loss.detach()

    @torch.no_grad()
    def eval_loss(
        self, obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor
    ) -> torch.Tensor:
        """L_aux of the online copy in eval mode, e.g. on a held-out batch."""
        self.online.eval()
        loss = self.aux_loss(obs, act, next_obs)
        self.online.train()
        return loss

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"ofenet": self.opt}
