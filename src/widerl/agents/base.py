"""What SAC and TD3 share: twin critics and their targets, the critic step, optimizers.

The update step is the hot path: it never calls `.item()`, `.cpu()` or branches on tensor
values, so on CUDA it queues kernels without waiting for the GPU. Metrics come back as
detached 0-dim tensors; the caller decides when to read them (only when logging).
"""

from __future__ import annotations

import abc
import contextlib
import copy
import inspect
from collections.abc import Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from widerl.checkpoint import check_fits
from widerl.config import Config, ConfigError
from widerl.nets import manual
from widerl.nets.blocks import Body
from widerl.nets.features import RawFeatures, make_features
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


def adam_step(opt: torch.optim.Adam, grads: list[torch.Tensor | None]) -> None:
    """`opt.step()` with `grads` as the parameters' gradients, calling the fused kernel directly.

    `Optimizer.step` spends about 0.1-0.3 ms per call in Python (hooks, grouping tensors by
    device, state look-ups) around one fused kernel, which is a few % of a 256x2 update. The
    first step (it creates the state) and any setting the direct call does not cover go through
    `opt.step()` itself; the state it creates is the one checkpoints save.
    """
    # The fused kernel walks each tensor's memory in order: a transposed gradient would
    # silently update the wrong elements (contiguous() returns the others as they are).
    grads = [g if g is None else g.contiguous() for g in grads]
    group = opt.param_groups[0]
    params = group["params"]
    direct = (
        len(opt.param_groups) == 1
        and group.get("fused")
        and not (group["amsgrad"] or group["maximize"] or group["weight_decay"])
        and not group.get("decoupled_weight_decay", False)
        and all(g is not None for g in grads)
        and all(p in opt.state for p in params)
    )
    if not direct:
        # Outside inference mode even when the fast update runs in it: the state that the
        # first step creates must be ordinary tensors, usable in place by any later caller.
        with torch.inference_mode(False):
            for p, g in zip(params, grads, strict=True):
                p.grad = g.clone() if g.is_inference() else g
            opt.step()
        for p in params:
            p.grad = None
        return
    states = [opt.state[p] for p in params]
    steps = _shared_steps(opt, states)
    steps[0]._base.add_(1)  # every step count, as torch.optim.adam._fused_adam does first
    beta1, beta2 = group["betas"]
    torch._fused_adam_(
        params,
        grads,
        [s["exp_avg"] for s in states],
        [s["exp_avg_sq"] for s in states],
        [],
        steps,
        amsgrad=False,
        lr=group["lr"],
        beta1=beta1,
        beta2=beta2,
        weight_decay=0.0,
        eps=group["eps"],
        maximize=False,
        grad_scale=None,
        found_inf=None,
    )


def _shared_steps(opt: torch.optim.Adam, states: list[dict]) -> list[torch.Tensor]:
    """The states' "step" counts as 0-dim views of one tensor, so that one `add_` advances all
    of them: `torch._foreach_add_` takes a per-tensor path on CPU (about 5 us per tensor here,
    ~20 tensors per SAC update). They are rebuilt whenever something replaced them
    (`opt.step()` on the first step, `load_state_dict`); views keep `opt.step()` correct."""
    steps = [s["step"] for s in states]
    base = steps[0]._base
    if base is None or base.shape != (len(steps),) or any(t._base is not base for t in steps):
        with torch.inference_mode(False):  # ordinary tensors, as opt.step() would make
            shared = torch.stack(steps)
        steps = list(shared.unbind(0))
        for state, step in zip(states, steps, strict=True):
            state["step"] = step
    return steps


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """Every submodule in eval mode (BatchNorm uses its running statistics, so the output for
    a sample does not depend on the rest of the batch and running statistics stay as they
    are); each module's own flag is restored."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for m, training in modes:
            m.training = training


def minimum_backward(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Shares of d min(a, b) going to a and to b: 1/0, 0/1, or 1/2 each on a tie, as autograd
    splits the gradient of torch.minimum."""
    to_a = 0.5 + 0.5 * torch.sign(b - a)
    return to_a, 1.0 - to_a


def elementwise_critic_loss(kind: str, q: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample loss: 0.5 * delta^2 (SAC Eq. 2 / paper Eq. 2) or Huber with delta 1 (A.1),
    which equals the former for |delta| < 1 and grows linearly beyond."""
    if kind == "huber":
        return F.huber_loss(q, target, reduction="none", delta=1.0)
    return 0.5 * (q - target).square()


def critic_loss_grad(kind: str, delta: torch.Tensor) -> torch.Tensor:
    """d `elementwise_critic_loss` / d q for the TD error delta = q - target: delta, or for
    Huber delta clipped to [-1, 1] (what autograd's huber_loss_backward computes)."""
    return delta.clamp(-1.0, 1.0) if kind == "huber" else delta


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
        # BatchNorm running statistics: the targets take the online ones at each target
        # update (as Stable-Baselines3 copies them), so eval-mode targets (loss landscapes)
        # normalise as the online critics do. Empty without BatchNorm.
        self._critic_stats = float_buffers(self.critics)
        self._critic_target_stats = float_buffers(self.critics_target)
        self.critic_opt = make_adam(self.critic_params, cfg.lr, device)
        self._build_optimizers()
        # The hand-written update (nets/manual.py) covers plain MLPs on raw features; anything
        # else (other archs, BatchNorm, OFENet's z_sa, through which dQ/da must flow) uses
        # autograd. Tests switch it off to compare both paths on the same batch.
        bodies = [c.body for c in self.critics] + [self.actor.body]
        self.fast_path = isinstance(self.features, RawFeatures) and all(
            manual.fast_body_ok(b) for b in bodies
        )

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
        if not self._has_bn:
            return self._act(self.features.state(obs), deterministic)
        with eval_mode(self):
            return self._act(self.features.state(obs), deterministic)

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
        grads = torch.autograd.grad(loss, self.critic_params)
        adam_step(self.critic_opt, list(grads))
        with torch.no_grad():
            td_abs = torch.maximum((q1 - target_q).abs(), (q2 - target_q).abs())
        return {"critic_loss": loss.detach(), "q_mean": q1.detach().mean(), "td_abs": td_abs}

    # --- the hand-written path (plain MLP bodies on raw features) -----------------------------
    # These run under the caller's torch.no_grad(): one context per update, not one per call.
    def critic_forward(
        self, critic: Critic, z_sa: torch.Tensor
    ) -> tuple[torch.Tensor, manual.Tape, torch.Tensor]:
        """Q(z_sa) of shape (B, 1), the body's tape and its output Phi, without autograd."""
        layers = manual.linears(critic.body)
        phi, tape = manual.forward(layers, self.cfg.activation, z_sa)
        return F.linear(phi, critic.out.weight, critic.out.bias), tape, phi

    def critic_backward(
        self,
        critic: Critic,
        tape: manual.Tape,
        phi: torch.Tensor,
        g_q: torch.Tensor,
        weight_grads: bool,
    ) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """Gradients of Q's parameters for d loss / dQ = `g_q` (B, 1), or (weight_grads False)
        only d loss / da: the actor step's critics are frozen and need no weight gradients."""
        layers = manual.linears(critic.body)
        g_phi = g_q * critic.out.weight  # (B, 1) x (1, U): an outer product, as a broadcast
        cols = None if weight_grads else slice(self.features.s_dim, None)
        grads, g_act = manual.backward(
            layers, self.cfg.activation, tape, phi, g_phi, weight_grads, cols
        )
        if weight_grads:
            grads += [g_q.t().mm(phi), g_q.sum(0)]
        return grads, g_act

    def min_target_q(self, z_sa: torch.Tensor) -> torch.Tensor:
        """min of the twin target critics (clipped double Q), without autograd."""
        q1, q2 = (self.critic_forward(c, z_sa)[0] for c in self.critics_target)
        return torch.minimum(q1, q2).squeeze(-1)

    def fast_critic_step(self, batch: Batch, target_q: torch.Tensor) -> dict[str, torch.Tensor]:
        """`critic_step` with the backward written out: per-sample d loss / dQ_k, then each
        critic's weight gradients; one fused Adam step for both."""
        z_sa = self.features.state_action(batch.obs, batch.act)
        outs = [self.critic_forward(c, z_sa) for c in self.critics]
        q1, q2 = (o[0].squeeze(-1) for o in outs)
        kind = self.cfg.critic_loss
        per_sample = elementwise_critic_loss(kind, q1, target_q) + elementwise_critic_loss(
            kind, q2, target_q
        )
        # d mean / d per_sample = 1/B, times the importance weight under prioritized replay.
        g: float | torch.Tensor = 1.0 / q1.shape[0]
        if batch.weight is not None:
            per_sample = per_sample * batch.weight
            g = batch.weight * g
        loss = per_sample.mean()
        deltas = (q1 - target_q, q2 - target_q)
        grads: list[torch.Tensor] = []
        for critic, (_, tape, phi), delta in zip(self.critics, outs, deltas, strict=True):
            g_q = (critic_loss_grad(kind, delta) * g).unsqueeze(-1)
            grads += self.critic_backward(critic, tape, phi, g_q, True)[0]
        adam_step(self.critic_opt, grads)
        td_abs = torch.maximum(deltas[0].abs(), deltas[1].abs())
        return {"critic_loss": loss, "q_mean": q1.mean(), "td_abs": td_abs}

    @abc.abstractmethod
    def current_td_target(self, batch: Batch) -> torch.Tensor:
        """The TD target with the agent's current settings (SAC: its current alpha); for
        callers outside the update: Ape-X priorities, loss landscapes."""

    @torch.no_grad()
    def td_abs(self, batch: Batch) -> torch.Tensor:
        """|TD error| per transition, max over the twin critics: what the learner writes back
        as priority, and what an Ape-X collector uses as initial priority. BatchNorm in eval
        mode: priorities of one chunk must not depend on the rest of it, nor move the running
        statistics of the networks (modes restored after)."""
        with eval_mode(self):
            target = self.current_td_target(batch)
            z_sa = self.features.state_action(self.features.state(batch.obs), batch.act)
            q1, q2 = (c(z_sa) for c in self.critics)
            return torch.maximum((q1 - target).abs(), (q2 - target).abs())

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

    @staticmethod
    @torch.no_grad()
    def copy_stats(target: list[torch.Tensor], online: list[torch.Tensor]) -> None:
        """BatchNorm running statistics into a target copy (no-op without BatchNorm)."""
        if target:
            torch._foreach_copy_(target, online)

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One learning step on a batch; returns detached metric tensors and `td_abs`."""
        if self.fast_path:
            # The hand-written path needs no autograd anywhere. inference_mode skips more
            # per-op bookkeeping than no_grad (version counters of new tensors, autograd
            # dispatch keys); the tensors it creates cannot be modified in place or enter
            # autograd outside it, so the metrics leave as clones, and adam_step creates
            # optimizer state outside it.
            with torch.inference_mode():
                metrics = self._update(batch)
            return {k: v.clone() for k, v in metrics.items()}
        return self._update(batch)

    @abc.abstractmethod
    def _update(self, batch: Batch) -> dict[str, torch.Tensor]:
        """The learning step itself, on the hand-written path or autograd (`fast_path`)."""

    # --- checkpointing ------------------------------------------------------------------
    def all_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """The agent's optimizers and those of its features (OFENet's own Adam)."""
        return {**self.optimizers(), **self.features.optimizers()}

    def _extra_state(self) -> dict:
        """Training state outside modules and optimizers (TD3: the last actor loss)."""
        return {}

    def _load_extra_state(self, state: dict) -> None:
        pass

    def checkpoint_state(self) -> dict:
        """Everything trained: networks, targets, features (OFENet and its target copy),
        BatchNorm statistics, optimizers and the update counter."""
        return {
            "modules": self.state_dict(),
            "optimizers": {k: o.state_dict() for k, o in self.all_optimizers().items()},
            "n_updates": self.n_updates,
            "extra": self._extra_state(),
        }

    def load_checkpoint_state(self, state: dict, where: str = "the checkpoint") -> None:
        """Restore `checkpoint_state()`; ConfigError (one line, naming the first tensor that
        differs) when it was written by networks other than these."""
        check_fits(self.state_dict(), state["modules"], where)
        missing = [k for k in self.all_optimizers() if k not in state["optimizers"]]
        if missing:
            raise ConfigError(
                f"{where} does not fit its config.json: it has no state for the {missing[0]} "
                "optimizer; the config and the checkpoint do not belong together"
            )
        self.load_state_dict(state["modules"])
        for k, opt in self.all_optimizers().items():
            opt.load_state_dict(state["optimizers"][k])
        self.n_updates = int(state["n_updates"])
        self._load_extra_state(state.get("extra", {}))


def float_buffers(module: nn.Module) -> list[torch.Tensor]:
    return [b for b in module.buffers() if b.is_floating_point()]
