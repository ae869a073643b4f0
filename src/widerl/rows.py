"""One row of metrics.csv: what an evaluation reports (the columns are logger.BASE_COLUMNS plus
the agent's and the feature learner's metrics)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

HOLDOUT_BATCH = 1_024  # held-out transitions the feature learner's test loss is measured on


def evaluation_row(
    parts: Any,
    progress: Any,
    returns: np.ndarray,
    since: tuple[float, int, int],
    wall_time: float,
    sranks: dict[str, int | None],
    means: dict[str, float],
) -> dict[str, object]:
    """The row for `progress.grad_step`: `parts` is the build.Run, `since` the (clock,
    grad_step, env_steps) of the previous row, `means` the metric means since then."""
    intake, grad_step = parts.intake, progress.grad_step
    t, g, e = since
    dt = max(time.perf_counter() - t, 1e-9)
    collectors = intake.collector_returns(max(parts.cfg.actors, 1))
    row: dict[str, object] = {
        "grad_step": grad_step,
        "env_step": intake.env_steps,
        "wall_time": round(wall_time, 3),
        "eval_return_mean": float(returns.mean()),
        "eval_return_std": float(returns.std()),
        "train_return_mean": intake.train_return(),
        "episodes": intake.episodes,
        "updates_per_s": (grad_step - g) / dt if grad_step > g else None,
        "env_steps_per_s": (intake.env_steps - e) / dt if intake.env_steps > e else None,
        "replay_size": parts.replay.size,
        "weight_age": intake.weight_age(progress.last_idx, grad_step),
        "sync_lag": intake.take_sync_lag(),
        "collector_returns": ";".join("" if r is None else f"{r:.6g}" for r in collectors),
        "restarts": parts.source.restarts,
        "collectors_waiting": parts.source.waiting,
        **sranks,
        # Resets happen before update k * R + 1 (trainer): by row g, (g - 1) // R of them.
        "resets": (grad_step - 1) // parts.cfg.reset_every
        if parts.cfg.reset_every and grad_step
        else 0,
        **means,
    }
    holdout, features = parts.holdout, parts.features
    if holdout is not None and holdout.size:
        h = holdout.sample(min(HOLDOUT_BATCH, holdout.size))
        loss = features.heldout_loss(h.obs, h.act, h.next_obs)
        row[f"{features.metric_name}_heldout"] = float(loss)
    return row
