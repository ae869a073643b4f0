"""Normalisation layers with a members dimension (inputs `[E, B, F]`, statistics and affine
parameters per member): BatchNorm, Batch Renormalization (CrossQ) and LayerNorm (SimBa, BRO).

BatchNorm's running statistics are buffers, but a learning step is one pure function of the
parameters (written once, run eagerly or compiled with `torch.func`), and such a function may
not mutate buffers from values that carry gradients. So in train mode a norm layer computes
its batch statistics and, inside `record_running_stats()`, hands the new running statistics
to the recorder instead of writing them; `autodiff.Differentiable.grad` records every loss's
forward pass this way and writes the statistics back after the gradient. Outside a recorder
(a forward in train mode under no_grad, e.g. a TD target) the layer updates its buffers
directly, as torch's BatchNorm does.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class RunningStats:
    """New running statistics produced by norm layers during one forward pass."""

    active: RunningStats | None = None  # the recorder of the forward pass in progress

    def __init__(self) -> None:
        self.buffers: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []

    def current(self, buffer: torch.Tensor) -> torch.Tensor:
        """The buffer's value as this pass has moved it so far: a layer used twice in one
        step moves its statistics twice, as torch's BatchNorm would."""
        for i in range(len(self.buffers) - 1, -1, -1):
            if self.buffers[i] is buffer:
                return self.values[i]
        return buffer

    def add(self, buffer: torch.Tensor, value: torch.Tensor) -> None:
        self.buffers.append(buffer)
        self.values.append(value.detach())


@contextmanager
def record_running_stats() -> Iterator[RunningStats]:
    previous, RunningStats.active = RunningStats.active, RunningStats()
    try:
        yield RunningStats.active
    finally:
        RunningStats.active = previous


def _current(buffer: torch.Tensor) -> torch.Tensor:
    """The buffer as the forward pass in progress has moved it so far."""
    rec = RunningStats.active
    return buffer if rec is None else rec.current(buffer)


def _record(buffer: torch.Tensor, new: torch.Tensor) -> None:
    """Hand a buffer's new value to the recorder, or write it when there is none."""
    rec = RunningStats.active
    if rec is not None:
        rec.add(buffer, new)
    else:
        with torch.no_grad():
            buffer.copy_(new)


def _update_running(buffer: torch.Tensor, batch_value: torch.Tensor, momentum: float) -> None:
    """running <- (1 - momentum) running + momentum batch (torch's BatchNorm convention)."""
    _record(buffer, torch.lerp(_current(buffer), batch_value.detach(), momentum))


class EnsembleNorm(nn.Module):
    """A per-member affine normalisation: weight (ones) and bias (zeros) `[E, 1, F]`."""

    def __init__(self, members: int, features: int, eps: float) -> None:
        super().__init__()
        self.members, self.features, self.eps = members, features, eps
        self.weight = nn.Parameter(torch.ones(members, 1, features))
        self.bias = nn.Parameter(torch.zeros(members, 1, features))

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Back to the initial state (a BRO reset): unit scale, zero shift, and for layers
        with running statistics, the statistics of a fresh layer. In place, so optimizers and
        compiled steps keep their references."""
        self.weight.fill_(1.0)
        self.bias.zero_()
        for name, b in self.named_buffers(recurse=False):
            b.fill_(1.0 if name == "running_var" else 0.0)

    def extra_repr(self) -> str:
        return f"members={self.members}, features={self.features}, eps={self.eps}"


def batch_moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x - mean, mean, biased var) over the batch dim of `[E, B, F]`, the variance as the
    mean of the centred squares: the same value as `x.var(1, unbiased=False)` to float
    rounding, but torch's CPU var kernel took 1.5 ms for a [2, 512, 256] batch where this takes
    0.1 ms (one thread; benchmarks/README.md, issue 24), and the centred x is reused."""
    mean = x.mean(1, keepdim=True)
    centred = x - mean
    return centred, mean, (centred * centred).mean(1, keepdim=True)


class BatchNormalize(torch.autograd.Function):
    """`y = shift + centred * (inv_std [* r] * weight)`, the output of a norm layer in train
    mode, with batch normalisation's gradient written as one formula.

    `centred = x - mu_B` and `inv_std = 1 / sqrt(var_B + eps)` come in computed from `x`
    without autograd; `r` is Batch Renormalization's constant (None for BatchNorm). The
    backward holds the statistics' dependence on `x`, the textbook BatchNorm gradient (Ioffe &
    Szegedy 2015, Sec. 3) with gamma = r * weight; with factor = inv_std [* r]:

        dx = scale * (g - mean_B(g) - centred * inv_std^2 * mean_B(g * centred)),
        scale = factor * weight,   d_weight = sum_B(g * centred) * factor,   d_shift = sum_B(g)

    Why: autograd's chain through the mean, the centring, the variance and the affine map is
    about a dozen passes over the `[E, B, F]` batch in eager mode, this backward is five; an
    eager CrossQ 256 x 2 learning step took 0.94x the time (benchmarks/README.md, issue 24).
    Eager only (`normalize`): traced, autograd's own chain is what inductor fuses anyway, and
    an autograd function in the graph keeps AOTAutograd's cache from storing it (a warm
    compile of the CrossQ step took 19 s instead of 10). `setup_context` keeps it usable
    under torch.func all the same."""

    @staticmethod
    def forward(  # type: ignore[override]
        x: torch.Tensor,
        centred: torch.Tensor,
        inv_std: torch.Tensor,
        r: torch.Tensor | None,
        weight: torch.Tensor,
        shift: torch.Tensor,
    ) -> torch.Tensor:
        factor = inv_std if r is None else inv_std * r
        return torch.addcmul(shift, centred, factor * weight)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        _, centred, inv_std, r, weight, _ = inputs
        ctx.save_for_backward(centred, inv_std, inv_std if r is None else inv_std * r, weight)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        centred, inv_std, factor, weight = ctx.saved_tensors
        n = centred.shape[1]
        g_sum = g.sum(1, keepdim=True)
        g_centred = (g * centred).sum(1, keepdim=True)
        dx = None
        if ctx.needs_input_grad[0]:
            scale = factor * weight
            dx = torch.addcmul(
                scale * g_sum / -n, centred, scale * inv_std * inv_std * g_centred / -n
            )
            dx.addcmul_(g, scale)
        return dx, None, None, None, g_centred * factor, g_sum


def train_statistics(
    x: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x - mu_B, 1 / sigma_B, mu_B, var_B) over the batch dim of `[E, B, F]` for
    `normalize`: eagerly all without autograd (BatchNormalize's backward holds their gradient);
    traced, the first two with theirs. mu_B and the biased var_B never carry one."""
    traced = torch.compiler.is_compiling()
    centred, mean, var = batch_moments(x if traced else x.detach())
    return centred, torch.rsqrt(var + eps), mean.detach(), var.detach()


def normalize(
    x: torch.Tensor,
    centred: torch.Tensor,
    inv_std: torch.Tensor,
    r: torch.Tensor | None,
    weight: torch.Tensor,
    shift: torch.Tensor,
) -> torch.Tensor:
    """A norm layer's train-mode output `shift + centred * (inv_std [* r] * weight)` with the
    gradient through the batch statistics (from `train_statistics`): eagerly through
    BatchNormalize, traced (torch.compile) as autograd's chain of ordinary ops, for the reason
    BatchNormalize gives. The same forward arithmetic either way; tests hold the gradients of
    the two forms to each other."""
    if torch.compiler.is_compiling():
        # The function's forward called as plain ops: autograd differentiates them itself.
        return BatchNormalize.forward(x, centred, inv_std, r, weight, shift)
    return BatchNormalize.apply(x, centred, inv_std, r, weight, shift)


class EnsembleBatchNorm(EnsembleNorm):
    """BatchNorm1d per member: statistics over the batch dim of `[E, B, F]` (Ioffe & Szegedy
    2015). Train mode normalises with the batch's statistics and moves the running ones;
    eval mode uses the running statistics, so a sample's output does not depend on its batch."""

    def __init__(self, members: int, features: int, momentum: float = 0.1, eps: float = 1e-5):
        super().__init__(members, features, eps)
        self.momentum = momentum
        self.register_buffer("running_mean", torch.zeros(members, 1, features))
        self.register_buffer("running_var", torch.ones(members, 1, features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()  # statistics in float32 under --amp bf16, as autocast keeps torch's norms
        if self.training:
            centred, inv_std, mean, var = train_statistics(x, self.eps)
            n = x.shape[1]
            # torch's convention: normalise with the biased variance, track the unbiased one.
            _update_running(self.running_mean, mean, self.momentum)
            _update_running(self.running_var, var * (n / max(n - 1, 1)), self.momentum)
            return normalize(x, centred, inv_std, None, self.weight, self.bias)
        # The per-feature factors first (small tensors), then one pass over the batch.
        centred = x - self.running_mean
        return torch.addcmul(
            self.bias, centred, torch.rsqrt(self.running_var + self.eps) * self.weight
        )

    def extra_repr(self) -> str:
        return f"members={self.members}, features={self.features}, momentum={self.momentum}"


class EnsembleBatchRenorm(EnsembleNorm):
    """Batch Renormalization per member (Ioffe 2017, Algorithm 1), the critic's norm layer of
    CrossQ (Bhatt et al. 2024, Sec. 3). In train mode, with the batch's mean mu_B and
    sigma_B = sqrt(var_B + eps) and the running mu, sigma = sqrt(running_var + eps):

        r = stop_grad(clip(sigma_B / sigma, 1 / r_max, r_max))
        d = stop_grad(clip((mu_B - mu) / sigma, -d_max, d_max))
        y = weight * ((x - mu_B) / sigma_B * r + d) + bias

    so the output equals what the running statistics would give (whenever r and d are not
    clipped) while gradients still flow through the batch statistics. For its first `warmup`
    training passes the layer is plain BatchNorm (r = 1, d = 0) while the running statistics
    settle: CrossQ's choice (100,000 passes, r_max 3, d_max 5, fixed; Ioffe relaxes r_max and
    d_max gradually instead). Eval mode normalises with the running statistics. As in CrossQ the
    running variance tracks the biased batch variance, and momentum 0.01 (torch's convention)
    is CrossQ's 0.99 (Flax's)."""

    def __init__(
        self,
        members: int,
        features: int,
        momentum: float = 0.01,
        eps: float = 1e-3,
        r_max: float = 3.0,
        d_max: float = 5.0,
        warmup: int = 100_000,
    ) -> None:
        super().__init__(members, features, eps)
        self.momentum, self.r_max, self.d_max, self.warmup = momentum, r_max, d_max, warmup
        self.register_buffer("running_mean", torch.zeros(members, 1, features))
        self.register_buffer("running_var", torch.ones(members, 1, features))
        # Training passes so far, one per member (so that a view of some members works);
        # an integer, so it is neither a trained nor a float statistic.
        self.register_buffer("steps", torch.zeros(members, 1, 1, dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()  # statistics in float32 under --amp bf16, as autocast keeps torch's norms
        if not self.training:
            return (x - self.running_mean) * torch.rsqrt(
                self.running_var + self.eps
            ) * self.weight + self.bias
        centred, inv_std, mean, var = train_statistics(x, self.eps)
        running_mean, running_var = _current(self.running_mean), _current(self.running_var)
        steps = _current(self.steps)
        running_std = torch.sqrt(running_var + self.eps)
        r = (torch.sqrt(var + self.eps) / running_std).clamp(1.0 / self.r_max, self.r_max)
        d = ((mean - running_mean) / running_std).clamp(-self.d_max, self.d_max)
        renorm = steps >= self.warmup
        r = torch.where(renorm, r, torch.ones_like(r))
        d = torch.where(renorm, d, torch.zeros_like(d))
        _update_running(self.running_mean, mean, self.momentum)
        _update_running(self.running_var, var, self.momentum)
        _record(self.steps, steps + 1)
        # ((x - mu_B) / sigma_B * r + d) * weight + bias, the per-feature factors first (small
        # tensors), then one pass over the batch: the same value, a fraction of the kernels.
        return normalize(x, centred, inv_std, r, self.weight, d * self.weight + self.bias)

    def extra_repr(self) -> str:
        return (
            f"members={self.members}, features={self.features}, momentum={self.momentum}, "
            f"r_max={self.r_max}, d_max={self.d_max}, warmup={self.warmup}"
        )


class EnsembleLayerNorm(EnsembleNorm):
    """LayerNorm per member (Ba et al. 2016): each sample's features normalised to zero mean
    and unit variance, then an affine map of the member's own. No running statistics: train
    and eval mode compute the same thing."""

    def __init__(self, members: int, features: int, eps: float = 1e-5) -> None:
        super().__init__(members, features, eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, (self.features,), eps=self.eps) * self.weight + self.bias


NORMS = ("batchnorm", "batchrenorm", "layernorm")


def make_norm(name: str, members: int, features: int) -> EnsembleNorm:
    """A norm layer by name, with its defaults."""
    if name == "batchnorm":
        return EnsembleBatchNorm(members, features)
    if name == "batchrenorm":
        return EnsembleBatchRenorm(members, features)
    if name == "layernorm":
        return EnsembleLayerNorm(members, features)
    raise ValueError(f"unknown norm {name!r}; choose from {', '.join(NORMS)}")
