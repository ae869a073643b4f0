"""Normalisation layers with a members dimension (inputs `[E, B, F]`, statistics per member).

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

import torch
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


def _update_running(buffer: torch.Tensor, batch_value: torch.Tensor, momentum: float) -> None:
    """running <- (1 - momentum) running + momentum batch (torch's BatchNorm convention)."""
    rec = RunningStats.active
    base = buffer if rec is None else rec.current(buffer)
    new = torch.lerp(base, batch_value.detach(), momentum)
    if rec is not None:
        rec.add(buffer, new)
    else:
        with torch.no_grad():
            buffer.copy_(new)


class EnsembleBatchNorm(nn.Module):
    """BatchNorm1d per member: statistics over the batch dim of `[E, B, F]` (Ioffe & Szegedy
    2015). Train mode normalises with the batch's statistics and moves the running ones;
    eval mode uses the running statistics, so a sample's output does not depend on its batch."""

    def __init__(self, members: int, features: int, momentum: float = 0.1, eps: float = 1e-5):
        super().__init__()
        self.members, self.features, self.momentum, self.eps = members, features, momentum, eps
        self.weight = nn.Parameter(torch.ones(members, 1, features))
        self.bias = nn.Parameter(torch.zeros(members, 1, features))
        self.register_buffer("running_mean", torch.zeros(members, 1, features))
        self.register_buffer("running_var", torch.ones(members, 1, features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            mean = x.mean(1, keepdim=True)
            var = x.var(1, unbiased=False, keepdim=True)
            n = x.shape[1]
            # torch's convention: normalise with the biased variance, track the unbiased one.
            _update_running(self.running_mean, mean, self.momentum)
            _update_running(self.running_var, var * (n / max(n - 1, 1)), self.momentum)
        else:
            mean, var = self.running_mean, self.running_var
        return (x - mean) * torch.rsqrt(var + self.eps) * self.weight + self.bias

    def extra_repr(self) -> str:
        return f"members={self.members}, features={self.features}, momentum={self.momentum}"
