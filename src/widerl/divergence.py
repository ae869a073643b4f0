"""A run that diverges stops: a non-finite loss, Q value or parameter raises `Diverged` at the
next row, found without a host synchronisation per update (the metric sums locate the first
non-finite update on the device, logger.MetricMeans; parameters are checked here at rows)."""

from __future__ import annotations

import torch

from widerl.agents.base import Agent
from widerl.errors import Diverged
from widerl.logger import Window


class FiniteCheck:
    """Every float tensor the agent (its feature learner included) trains or keeps."""

    def __init__(self, agent: Agent) -> None:
        named = [*agent.named_parameters(), *agent.named_buffers()]
        named = [(n, t) for n, t in named if t.is_floating_point()]
        self.names = [n for n, _ in named]
        self.tensors = [t for _, t in named]

    def __call__(self, window: Window, grad_step: int) -> None:
        """`Diverged` if a metric since the last row or any tensor is inf or NaN: one read of
        the metric sums (done for the row anyway) and one reduction over the parameters. A
        huge but finite value is no divergence by this definition."""
        if window.first_nonfinite:
            name, pos = min(window.first_nonfinite.items(), key=lambda kv: kv[1])
            raise Diverged(name, grad_step - window.count + pos)
        # max |x| per tensor: finite exactly when every element is (a 2-norm could overflow).
        peaks = torch.stack([t.detach().abs().amax() for t in self.tensors if t.numel()])
        finite = torch.isfinite(peaks).cpu().tolist()
        names = [n for n, t in zip(self.names, self.tensors, strict=True) if t.numel()]
        for name, ok in zip(names, finite, strict=True):
            if not ok:
                raise Diverged(f"parameter {name}", grad_step, by=True)
