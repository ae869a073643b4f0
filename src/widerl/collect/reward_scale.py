"""SimbaV2's reward scaling (Lee et al. 2025, Sec. 4.4, --reward-scaling): rewards divided by
a running estimate of the scale of the discounted return, so that returns stay within about
[-G_max, G_max] whatever the task's reward magnitude, and the distributional critic's fixed
support [-G_max, G_max] (--v-min, --v-max) fits every task:

    G_t = gamma * (1 - done_{t-1}) * G_{t-1} + r_t          per env, from its episode start
    r_bar = r / max(sqrt(var(G) + eps), max|G| / G_max)

var(G) and max|G| run over every G_t collected so far. Each collector (inline or in a Ray
process: `collect/collector.py`) keeps its envs' G_t, since only it sees each env's steps in
order; the learner's intake folds them into `ReturnScale` (host numbers, checkpointed with
the intake), and the learning step divides the sampled rewards by the current scale (a
device tensor of the agent, its `reward_scale` buffer): a transition stored early is learned from
at the scale of the moment, as in SimbaV2, which scales its sampled batches.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

EPS = 1e-8


class ReturnScale:
    """Running count, mean, variance and largest magnitude of the discounted returns."""

    def __init__(self, g_max: float) -> None:
        self.g_max = g_max
        self.count, self.mean, self.var, self.abs_max = 0, 0.0, 0.0, 0.0

    def add(self, returns: np.ndarray) -> None:
        """Fold a batch of G_t in (Chan et al.'s parallel update, as nets/obs_norm.py)."""
        m = len(returns)
        if not m:
            return
        g = returns.astype(np.float64)
        total = self.count + m
        delta = float(g.mean()) - self.mean
        m2 = self.var * self.count + float(g.var()) * m + delta**2 * self.count * m / total
        self.mean += delta * m / total
        self.var, self.count = m2 / total, total
        self.abs_max = max(self.abs_max, float(np.abs(g).max()))

    def scale(self) -> float:
        """max(sqrt(var + eps), max|G| / G_max); 1 before any return was seen."""
        if not self.count:
            return 1.0
        return max(math.sqrt(self.var + EPS), self.abs_max / self.g_max)

    def state_dict(self) -> dict[str, Any]:
        return {"count": self.count, "mean": self.mean, "var": self.var, "abs_max": self.abs_max}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.count, self.mean = int(state["count"]), float(state["mean"])
        self.var, self.abs_max = float(state["var"]), float(state["abs_max"])
