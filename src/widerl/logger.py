"""A run's outputs while it trains: metrics.csv, TensorBoard events and the progress bar.

One row per evaluation. Loss columns are means over the updates since the previous row,
accumulated on the device and read back only when a row is written (one host sync a row).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

METRICS = "metrics.csv"
BASE_COLUMNS = [
    "grad_step",
    "env_step",
    "wall_time",
    "eval_return_mean",
    "eval_return_std",
    "train_return_mean",
    "episodes",
    "updates_per_s",
    "env_steps_per_s",
    # Where transitions come from (the same columns with --actors 0 and --actors N):
    "replay_size",
    "weight_age",  # mean updates between the weights that acted and now, last sampled batch
    "sync_lag",  # mean updates the collectors' weights were behind when chunks arrived
    "collector_returns",  # recent episode return per collector, ';'-separated
    "restarts",  # collectors replaced after dying
    "collectors_waiting",  # collectors not placed for want of resources (e.g. a lost node)
    "srank",  # effective rank (delta 0.01) of the critic's features on the probe states (A.4)
]
# Columns that depend on the clock; everything else is reproducible from the seed.
TIMING_COLUMNS = ("wall_time", "updates_per_s", "env_steps_per_s")


class MetricMeans:
    """Running sums of an update's metric tensors, kept on the device."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.sums: list[torch.Tensor] | None = None
        self.count = 0

    def add(self, metrics: dict[str, torch.Tensor]) -> None:
        values = [metrics[n] for n in self.names]
        if self.sums is None:
            self.sums = [v.detach().clone().float() for v in values]
        else:
            torch._foreach_add_(self.sums, values)
        self.count += 1

    def pop(self) -> dict[str, float]:
        if self.sums is None:
            return {}
        values = torch.stack(self.sums).cpu().tolist()  # the one sync of a row
        means = {n: v / self.count for n, v in zip(self.names, values, strict=True)}
        self.sums, self.count = None, 0
        return means


def _fmt(v: object) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, float):
        return f"{v:.8g}"
    return str(v)


class RunLogger:
    def __init__(self, run_dir: Path, metric_names: list[str], resume_step: int | None) -> None:
        self.path = Path(run_dir) / METRICS
        self.columns = BASE_COLUMNS + metric_names
        if resume_step is None:
            with self.path.open("w", newline="") as f:
                csv.writer(f).writerow(self.columns)
        else:
            self._truncate_after(resume_step)
        from torch.utils.tensorboard import SummaryWriter  # slow import; only when training

        self.tb = SummaryWriter(str(Path(run_dir) / "tb"))

    def _truncate_after(self, step: int) -> None:
        """Drop rows logged after the checkpoint, so the resumed rows continue without gaps
        or repeats."""
        rows = read_metrics(self.path) if self.path.exists() else []
        kept = [r for r in rows if int(r["grad_step"]) <= step]
        tmp = self.path.with_suffix(".csv.tmp")
        with tmp.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=self.columns, extrasaction="ignore")
            w.writeheader()
            w.writerows(kept)
        tmp.replace(self.path)

    def write(self, row: dict[str, object]) -> None:
        with self.path.open("a", newline="") as f:
            csv.writer(f).writerow([_fmt(row.get(c)) for c in self.columns])
        step = int(row["grad_step"])  # type: ignore[arg-type]
        for k, v in row.items():
            if k != "grad_step" and isinstance(v, (int, float)) and not math.isnan(v):
                self.tb.add_scalar(k, v, step)
        self.tb.flush()

    def close(self) -> None:
        self.tb.close()


def read_metrics(path: Path) -> list[dict[str, str]]:
    with Path(path).open(newline="") as f:
        return list(csv.DictReader(f))


def make_progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("updates"),
        TextColumn("{task.fields[ups]:>6.1f} upd/s"),
        TextColumn("env {task.fields[env_step]}"),
        TextColumn("eval {task.fields[last_eval]}"),
        TimeRemainingColumn(),
        disable=not enabled,
    )
