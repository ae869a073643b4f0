"""One row of metrics.csv: what an evaluation reports (the columns are logger.BASE_COLUMNS plus
the agent's and the feature learner's metrics)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from widerl.run.probes import sranks as probe_sranks
from widerl.run.step import stack_batches

HOLDOUT_BATCH = 1_024  # held-out transitions the feature learner's test loss is measured on


def evaluation_row(
    parts: Any,
    lane: Any,
    progress: Any,
    returns: np.ndarray,
    since: tuple[float, int, int],
    wall_time: float,
    sranks: dict[str, int | None],
    means: dict[str, float],
) -> dict[str, object]:
    """The row of seed `lane` (a build.Lane of the build.Run `parts`) for
    `progress.grad_step`: `since` is the (clock, grad_step, env_steps) of the previous row,
    `means` the metric means since then."""
    intake, grad_step, cfg = lane.intake, progress.grad_step, lane.cfg
    t, g, e = since
    dt = max(time.perf_counter() - t, 1e-9)
    collectors = intake.collector_returns(max(cfg.actors, 1))
    idx = None if progress.last_idx is None else progress.last_idx[lane.index]
    return {
        "grad_step": grad_step,
        "env_step": intake.env_steps,
        "wall_time": round(wall_time, 3),
        "eval_return_mean": float(returns.mean()),
        "eval_return_std": float(returns.std()),
        "train_return_mean": intake.train_return(),
        "episodes": intake.episodes,
        "updates_per_s": (grad_step - g) / dt if grad_step > g else None,
        "env_steps_per_s": (intake.env_steps - e) / dt if intake.env_steps > e else None,
        "replay_size": lane.replay.size,
        "weight_age": intake.weight_age(idx, grad_step),
        "sync_lag": intake.take_sync_lag(),
        "collector_returns": ";".join("" if r is None else f"{r:.6g}" for r in collectors),
        "restarts": parts.source.restarts,
        "collectors_waiting": parts.source.waiting,
        **sranks,
        # Resets happen before update k * R + 1 (trainer): by row g, (g - 1) // R of them.
        "resets": (grad_step - 1) // cfg.reset_every if cfg.reset_every and grad_step else 0,
        **means,
    }


def heldout_losses(parts: Any) -> list[float | None]:
    """The feature learner's loss on each seed's held-out transitions (None without them):
    seed k's learner on seed k's, all seeds in one pass."""
    holdouts = [lane.holdout for lane in parts.lanes]
    if any(h is None or not h.size for h in holdouts):
        return [None] * len(holdouts)
    n = min(HOLDOUT_BATCH, *(h.size for h in holdouts))
    loss = parts.features.heldout(stack_batches([h.sample(n) for h in holdouts]))
    return [None if loss is None else float(v) for v in loss.cpu().tolist()]


def write_rows(parts: Any, progress: Any, loggers: list[Any], since: list[tuple[float, int, int]],
               wall_time: float, check_finite: Any) -> None:  # fmt: skip
    """Every seed's row at `progress.grad_step` into its logger (metrics.csv, TensorBoard):
    the evaluation returns, srank, the held-out loss and the metric means since `since`.
    The divergence check comes first: evaluating or measuring srank with non-finite weights
    would fail or log garbage."""
    p, pr = parts, progress
    windows = [m.read() for m in pr.means]
    check_finite(windows, pr.grad_step)
    for m in pr.means:
        m.reset()
    sranks = probe_sranks([lane.probes for lane in p.lanes], p.agent, pr.grad_step)
    returns = p.evaluator(p.agent)  # [K, episodes]
    heldout = heldout_losses(p)
    for lane, logger in zip(p.lanes, loggers, strict=True):
        k = lane.index
        pr.last_eval[k] = float(returns[k].mean())
        row = evaluation_row(p, lane, pr, returns[k], since[k], wall_time, sranks[k],
                             windows[k].means)  # fmt: skip
        if heldout[k] is not None:
            row[f"{p.features.metric_name}_heldout"] = heldout[k]
        by_collector = lane.intake.collector_returns(max(lane.cfg.actors, 1))
        extra = {f"collector/{i}/return": r for i, r in enumerate(by_collector) if r is not None}
        logger.write(row, extra)
    pr.logged_step = pr.grad_step
