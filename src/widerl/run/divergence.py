"""A run that diverges stops: a non-finite loss, Q value or parameter raises `Diverged` at the
next row, found without a host synchronisation per update (the metric sums locate the first
non-finite update on the device, logger.MetricMeans; parameters are checked here at rows)."""

from __future__ import annotations

import torch

from widerl.agents.base import Agent
from widerl.errors import Diverged
from widerl.record.logger import Window


class FiniteCheck:
    """Every float tensor the agent (its feature learner included) trains or keeps, per seed:
    with K seeds stacked, a tensor's first dimension holds K blocks of members."""

    def __init__(self, agent: Agent) -> None:
        named = [*agent.named_parameters(), *agent.named_buffers()]
        named = [(n, t) for n, t in named if t.is_floating_point() and t.numel()]
        self.names = [n for n, _ in named]
        self.tensors = [t for _, t in named]
        self.k = agent.k

    def _per_seed(self, t: torch.Tensor) -> torch.Tensor:
        """max |x| of each seed's block `[K]` (a tensor without members: the same for all)."""
        t = t.detach().abs()
        if t.dim() and t.shape[0] % self.k == 0:
            return t.reshape(self.k, -1).amax(1)
        return t.amax().expand(self.k)

    def failures(self, windows: list[Window], grad_step: int) -> list[Diverged]:
        """One `Diverged` per seed (its `lane` set) with a metric since the last row or a
        tensor that is inf or NaN: one read of the metric sums (done for the row anyway) and
        one reduction over the parameters. A huge but finite value is no divergence by this
        definition."""
        found: dict[int, Diverged] = {}
        for lane, window in enumerate(windows):
            if window.first_nonfinite:
                name, pos = min(window.first_nonfinite.items(), key=lambda kv: kv[1])
                found[lane] = Diverged(name, grad_step - window.count + pos)
        # max |x| per tensor and seed: finite exactly when every element is (a 2-norm could
        # overflow).
        peaks = torch.stack([self._per_seed(t) for t in self.tensors])  # [tensors, K]
        finite = torch.isfinite(peaks).cpu().tolist()
        for lane in range(self.k):
            for name, ok in zip(self.names, finite, strict=True):
                if not ok[lane] and lane not in found:
                    found[lane] = Diverged(f"parameter {name}", grad_step, by=True)
        for lane, err in found.items():
            err.lane = lane
        return [found[lane] for lane in sorted(found)]

    def __call__(self, windows: list[Window], grad_step: int) -> None:
        """`Diverged` for the first seed that has a non-finite value (see `failures`)."""
        bad = self.failures(windows, grad_step)
        if bad:
            raise bad[0]
