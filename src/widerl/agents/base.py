"""What SAC and TD3 share: twin critics and their targets, the critic step, optimizers.

The update step is the hot path: it never calls `.item()`, `.cpu()` or branches on tensor
values, so on CUDA it queues kernels without waiting for the GPU. Metrics come back as
detached 0-dim tensors; the caller decides when to read them (only when logging).
"""

from __future__ import annotations

import abc
import copy
import inspect
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from widerl.config import Config
from widerl.nets.blocks import Body
from widerl.nets.features import make_features
from widerl.nets.heads import Critic
from widerl.replay import Batch

_ADAM_HAS_FUSED = "fused" in inspect.signature(torch.optim.Adam).parameters


def make_adam(params: Iterable[torch.Tensor], lr: float, device: torch.device) -> torch.optim.Adam:
    """Adam with the fused kernel where this torch has it: one kernel per step, not one per
    tensor, which matters for small networks bound by per-op overhead (REFERENCE.md)."""
    params = list(params)
    if _ADAM_HAS_FUSED and device.type in ("cpu", "cuda"):
        return torch.optim.Adam(params, lr=lr, fused=True)
    return torch.optim.Adam(params, lr=lr)


def elementwise_critic_loss(kind: str, q: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample loss: 0.5 * delta^2 (SAC Eq. 2 / paper Eq. 2) or Huber with delta 1 (A.1),
    which equals the former for |delta| < 1 and grows linearly beyond."""
    if kind == "huber":
        return F.huber_loss(q, target, reduction="none", delta=1.0)
    return 0.5 * (q - target).square()


class Agent(nn.Module, abc.ABC):
    """Base of SAC and TD3: `act(obs, deterministic)` and `update(batch) -> metrics`."""

    def __init__(
        self,
        cfg: Config,
        obs_dim: int,
        act_dim: int,
        device: torch.device,
        features: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.cfg, self.obs_dim, self.act_dim, self.device = cfg, obs_dim, act_dim, device
        self.features = (
            features if features is not None else make_features(cfg, obs_dim, act_dim, device)
        )
        self.critics = nn.ModuleList(Critic(self.body(self.features.sa_dim)) for _ in range(2))
        self.critics_target = copy.deepcopy(self.critics).requires_grad_(False)
        self.n_updates = 0
        self._has_bn = cfg.batchnorm
        self._build_networks()
        self.to(device)
        self.critic_params = list(self.critics.parameters())
        self._critic_target_params = list(self.critics_target.parameters())
        self.critic_opt = make_adam(self.critic_params, cfg.lr, device)
        self._build_optimizers()

    @abc.abstractmethod
    def _build_networks(self) -> None:
        """Create the actor (and anything else trained) before the agent moves to its device."""

    @abc.abstractmethod
    def _build_optimizers(self) -> None:
        """Create the remaining optimizers once parameters live on the device."""

    def body(self, in_dim: int) -> Body:
        c = self.cfg
        return Body(in_dim, c.arch, c.units, c.layers, c.activation, c.batchnorm)

    @abc.abstractmethod
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Every optimizer of the agent by name (checkpointed with it)."""

    # --- acting -------------------------------------------------------------------------
    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        """Actions in [-1, 1] for a batch of raw observations (BatchNorm in eval mode)."""
        if self._has_bn:
            self.eval()
        try:
            return self._act(self.features.state(obs), deterministic)
        finally:
            if self._has_bn:
                self.train()

    @abc.abstractmethod
    def _act(self, z_s: torch.Tensor, deterministic: bool) -> torch.Tensor:
        """Policy actions from state features."""

    # --- learning -----------------------------------------------------------------------
    def critic_step(
        self, batch: Batch, z_s: torch.Tensor, target_q: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """One gradient step of both critics towards the same target (clipped double Q)."""
        z_sa = self.features.state_action(z_s, batch.act)
        q1, q2 = (critic(z_sa) for critic in self.critics)
        per_sample = elementwise_critic_loss(
            self.cfg.critic_loss, q1, target_q
        ) + elementwise_critic_loss(self.cfg.critic_loss, q2, target_q)
        if batch.weight is not None:  # prioritized replay's importance weights
            per_sample = per_sample * batch.weight
        loss = per_sample.mean()
        self.critic_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.critic_opt.step()
        with torch.no_grad():
            td_abs = torch.maximum((q1 - target_q).abs(), (q2 - target_q).abs())
        return {"critic_loss": loss.detach(), "q_mean": q1.detach().mean(), "td_abs": td_abs}

    def min_q(self, critics: nn.ModuleList, z_sa: torch.Tensor) -> torch.Tensor:
        return torch.minimum(critics[0](z_sa), critics[1](z_sa))

    def freeze_critics(self, frozen: bool) -> None:
        """The actor step needs dQ/da but no gradient for the critics' weights: freezing them
        skips those weight-gradient matmuls (about a third of the actor step's FLOPs)."""
        for p in self.critic_params:
            p.requires_grad_(not frozen)

    @staticmethod
    @torch.no_grad()
    def soft_update(target: list[torch.Tensor], online: list[torch.Tensor], tau: float) -> None:
        """theta' <- tau * theta + (1 - tau) * theta', one fused call for all tensors. Under
        no_grad: otherwise autograd records each in-place lerp from parameters that require
        grad, and every target tensor grows an ever longer history of them."""
        torch._foreach_lerp_(target, online, tau)

    @abc.abstractmethod
    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One learning step on a batch; returns detached metric tensors and `td_abs`."""

    # --- checkpointing ------------------------------------------------------------------
    def all_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """The agent's optimizers and those of its features (OFENet's own Adam)."""
        return {**self.optimizers(), **self.features.optimizers()}

    def checkpoint_state(self) -> dict:
        """Everything trained: networks, targets, features (OFENet and its target copy),
        BatchNorm statistics, optimizers and the update counter."""
        return {
            "modules": self.state_dict(),
            "optimizers": {k: o.state_dict() for k, o in self.all_optimizers().items()},
            "n_updates": self.n_updates,
        }

    def load_checkpoint_state(self, state: dict) -> None:
        self.load_state_dict(state["modules"])
        for k, opt in self.all_optimizers().items():
            opt.load_state_dict(state["optimizers"][k])
        self.n_updates = int(state["n_updates"])
