"""Aggregate scores across tasks: interquartile mean (IQM) with stratified bootstrap confidence
intervals, the method of Agarwal et al. (2021), "Deep RL at the Edge of the Statistical Precipice".

Written here with numpy instead of depending on `rliable`: rliable 1.2 pulls in arch, scipy,
seaborn, pandas and absl-py for what is two short functions.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def iqm(scores: np.ndarray) -> float:
    """Mean of the middle 50% of all scores pooled: drop floor(n/4) from each end of the sorted
    scores (scipy.stats.trim_mean(x, 0.25), which rliable's IQM uses)."""
    flat = np.sort(np.asarray(scores, dtype=np.float64).ravel())
    if flat.size == 0:
        raise ValueError("iqm of no scores")
    cut = flat.size // 4
    return float(flat[cut : flat.size - cut].mean())


def _iqm_rows(samples: np.ndarray) -> np.ndarray:
    """iqm() of every row of a 2-D array at once."""
    s = np.sort(samples, axis=1)
    cut = s.shape[1] // 4
    return s[:, cut : s.shape[1] - cut].mean(axis=1)


def stratified_bootstrap_ci(
    scores_per_task: Sequence[np.ndarray],
    reps: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile confidence interval of the IQM of pooled scores.

    Each replicate resamples the runs of every task with replacement, keeping each task's
    number of runs (stratified: a task never gains or loses runs), pools them and takes the
    IQM. Deterministic given `seed`.
    """
    tasks = [np.asarray(t, dtype=np.float64).ravel() for t in scores_per_task]
    if not tasks or any(t.size == 0 for t in tasks):
        raise ValueError("stratified bootstrap needs at least one score in every task")
    rng = np.random.default_rng(seed)
    pooled = np.concatenate([t[rng.integers(0, t.size, size=(reps, t.size))] for t in tasks], 1)
    stats = _iqm_rows(pooled)
    tail = 100.0 * (1.0 - level) / 2.0
    lo, hi = np.percentile(stats, [tail, 100.0 - tail])
    return float(lo), float(hi)


def minmax_per_task(scores: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Scale one task's scores (all runs of all groups) to [0, 1]: 0 = its worst run, 1 = its
    best. Tasks' returns differ by orders of magnitude (Table 1); this works for any sign of
    return. A task whose runs all score the same maps to 1."""
    lo = min(float(np.min(v)) for v in scores.values())
    hi = max(float(np.max(v)) for v in scores.values())
    if hi == lo:
        return {k: np.ones_like(np.asarray(v, dtype=np.float64)) for k, v in scores.items()}
    return {k: (np.asarray(v, dtype=np.float64) - lo) / (hi - lo) for k, v in scores.items()}
