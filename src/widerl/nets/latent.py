"""What TD7's SALE (nets/sale.py) and MR.Q's encoder (nets/mrq.py) share: an online encoder
trained on a latent target, and a *fixed* copy that feeds the agent, refreshed from the online
one every N updates (TD7: "target_update_rate" 250; MR.Q: "target_update_freq" 250), so the
agent's inputs hold still between refreshes.

Which copy feeds what (as OFENet's target copy, nets/ofenet.py): the agent (actor, critics,
their targets) and the collectors see the fixed copy; the encoder's own loss trains the
online copy and takes its latent targets from the fixed one (MR.Q) or the online one without
gradient (TD7). RL losses never reach the encoders' parameters; the critics' gradient with
respect to the action still flows through the fixed copy's state-action encoder, as the actor
update needs dQ/da.

The refresh is a `torch.where` on an update counter kept as a device tensor, so a compiled
learning step holds it without reading the counter on the host.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from widerl.nets.autodiff import Differentiable
from widerl.nets.ensemble import EnsembleLinear, reset_members, trained_names
from widerl.nets.features import FeatureLearner
from widerl.nets.norms import EnsembleLayerNorm
from widerl.nets.optim import Adam


def avg_l1_norm(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """AvgL1Norm(x) = x / mean_i |x_i| over the last dim (TD7, Fujimoto et al. 2023, Eq. 4)."""
    return x / x.abs().mean(-1, keepdim=True).clamp_min(eps)


class EncoderMLP(nn.Module):
    """Linear -> [LayerNorm] -> ELU, twice, then a Linear: TD7's encoders (no norm) and
    MR.Q's (LayerNorm before each ELU), for every member."""

    def __init__(
        self, members: int, in_dim: int, hidden: int, out_dim: int, layernorm: bool
    ) -> None:
        super().__init__()
        self.l1 = EnsembleLinear(members, in_dim, hidden)
        self.l2 = EnsembleLinear(members, hidden, hidden)
        self.l3 = EnsembleLinear(members, hidden, out_dim)
        self.norms = nn.ModuleList(
            [EnsembleLayerNorm(members, hidden) for _ in range(2)] if layernorm else []
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate((self.l1, self.l2)):
            x = layer(x)
            x = F.elu(self.norms[i](x) if len(self.norms) else x)
        return self.l3(x)


class LatentLearner(FeatureLearner):
    """An online encoder (`self.online`), the agent's fixed copy (`self.fixed`), the
    encoder's own Adam, the refresh; subclasses build the networks and define the loss."""

    metric_name = "aux_loss"
    has_heldout = True
    raw_target = False  # the targets are encodings of s': normalised with --obs-norm

    def setup(self, online: nn.Module, lr: float, weight_decay: float, refresh_every: int) -> None:
        self.online = online
        self.fixed = copy.deepcopy(online)
        self.lr, self.weight_decay, self.refresh_every = lr, weight_decay, refresh_every
        self.register_buffer("updates", torch.zeros(()))
        self.requires_grad_(False)  # gradients only inside the loss (autodiff.Differentiable)
        self.build_optimizer()

    def reset_parameters(self, generators: list[torch.Generator]) -> None:
        reset_members(self.online, generators)
        self.fixed.load_state_dict(self.online.state_dict())

    def build_optimizer(self) -> None:
        names = trained_names(self.online, "online.")
        self.params = Differentiable(self, names)
        self.opt = Adam(self.params.params, self.lr, weight_decay=self.weight_decay)
        fixed = dict(self.fixed.named_parameters())
        self._online = self.params.params
        self._fixed = [fixed[n.removeprefix("online.")] for n in names]

    def optimizers(self) -> dict[str, Adam]:
        return {"encoder": self.opt}

    def acting_state(self) -> dict[str, torch.Tensor]:
        """Only the fixed copy: it alone feeds the agent."""
        return {f"fixed.{k}": v for k, v in self.fixed.state_dict().items()}

    @torch.no_grad()
    def refresh(self) -> None:
        """Count an update; every `refresh_every`-th copies the online encoder to the fixed
        one (a select on the device, no host read)."""
        self.updates += 1
        due = torch.remainder(self.updates, self.refresh_every) == 0
        for f, o in zip(self._fixed, self._online, strict=True):
            f.copy_(torch.where(due, o, f))

    def step_on(
        self, loss: Callable[..., torch.Tensor], *args: torch.Tensor | object
    ) -> torch.Tensor:
        """One Adam step on `loss(*args)` (per seed `[K]`, summed: each seed's parameters get
        its own loss's gradient), then the refresh; returns the loss per seed."""

        def total(*a: object) -> tuple[torch.Tensor, torch.Tensor]:
            per_seed = loss(*a)
            return per_seed.sum(), per_seed.detach()

        self.online.train()
        grads, per_seed = self.params.grad(total, *args)
        self.opt.step(grads)
        self.refresh()
        return per_seed


def encoder_settings(cfg: Any, published: dict[str, Any]) -> dict[str, Any]:
    """The --encoder-* flags of `cfg` as keyword arguments, each left at 0 replaced by the
    method's `published` value (keys: units, dim, lr, refresh_every, and horizon for MR.Q)."""
    flags = {"units": "encoder_units", "dim": "encoder_dim", "lr": "encoder_lr",
             "refresh_every": "encoder_target_every", "horizon": "encoder_horizon"}  # fmt: skip
    return {k: getattr(cfg, flags[k]) or v for k, v in published.items()}


def seeded(tensors: Sequence[torch.Tensor]) -> tuple[bool, list[torch.Tensor]]:
    """Single-seed inputs `[B, ...]` as `[1, B, ...]`; whether they were single."""
    single = tensors[0].dim() == 2
    return single, [t.unsqueeze(0) for t in tensors] if single else list(tensors)
