"""A run's outputs while it trains: metrics.csv, TensorBoard events and the progress bar.

One row per evaluation. Loss columns are means over the updates since the previous row,
accumulated on the device and read back only when a row is written (one host sync a row).
"""

from __future__ import annotations

import csv
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from widerl.record.folder import read_rows
from widerl.record.names import METRICS, TB
from widerl.record.tracking import Tracker

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
    # Effective rank (delta 0.01) of the critic's penultimate features (A.4): on a fresh
    # uniform sample of the replay at each row (the paper's reading, Kumar et al. 2021), and
    # on the fixed probe drawn right after the random warm-up.
    "srank",
    "srank_probe",
    "resets",  # full resets of the agent's networks so far (--reset-every)
]
# Columns that depend on the clock; everything else is reproducible from the seed.
TIMING_COLUMNS = ("wall_time", "updates_per_s", "env_steps_per_s")

# TensorBoard tags, grouped as SB3 and CleanRL users expect: eval/ (deterministic policy),
# train/ (the learning run), losses/, charts/ (speed), replay/, collector/ (Ape-X; the trainer
# adds collector/<i>/return). Columns not named here: losses/ if a loss, else train/.
TB_TAGS = {
    "eval_return_mean": "eval/return_mean",
    "eval_return_std": "eval/return_std",
    "train_return_mean": "train/episode_return",
    "episodes": "train/episodes",
    "env_step": "train/env_step",
    "wall_time": "charts/wall_time",
    "updates_per_s": "charts/updates_per_s",
    "env_steps_per_s": "charts/env_steps_per_s",
    "replay_size": "replay/size",
    "weight_age": "replay/weight_age",
    "sync_lag": "collector/sync_lag",
    "restarts": "collector/restarts",
    "collectors_waiting": "collector/waiting",
    "resets": "train/resets",
}


def tb_tag(column: str) -> str:
    """The TensorBoard tag of a metrics.csv column (the CSV keeps its flat names)."""
    if column in TB_TAGS:
        return TB_TAGS[column]
    return f"losses/{column}" if "loss" in column else f"train/{column}"


@dataclass
class Window:
    """What `MetricMeans` read back: the means since the last row over `count` updates, and
    for each metric that became non-finite the 1-based position within those updates of the
    first update at which it did."""

    means: dict[str, float]
    count: int
    first_nonfinite: dict[str, int]


class MetricMeans:
    """Running sums of an update's metric tensors, kept on the device, and per metric the
    number of updates after which its running sum was still finite. A sum that became inf or
    NaN stays so (inf + x is inf or NaN) and float64 sums of float32 values cannot overflow,
    so that count is the position of the first non-finite update: divergence is located
    without reading anything back before a row.

    An update's values are only kept when added; every `FOLD_EVERY` updates (and before any
    read) they are summed in one pass, a cumulative sum that adds them one after another as
    adding each at once would (the same float64 sums, bit for bit). Three ops per update
    less on the trainer's path, ahead of every learning step."""

    FOLD_EVERY = 256

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.sums: torch.Tensor | None = None  # float64, one entry per name
        self.finite: torch.Tensor | None = None  # int64, one entry per name
        self.count = 0
        self._pending: list[torch.Tensor] = []  # values added since the last fold

    @torch.no_grad()
    def add(self, metrics: dict[str, torch.Tensor]) -> None:
        self.add_values(torch.stack([metrics[n] for n in self.names]))

    def add_values(self, values: torch.Tensor) -> None:
        """One update's metrics as one tensor, in the order of `names`."""
        self._pending.append(values)
        self.count += 1
        if len(self._pending) >= self.FOLD_EVERY:
            self._fold()

    @torch.no_grad()
    def _fold(self) -> None:
        if not self._pending:
            return
        block = torch.stack(self._pending, dim=1).to(torch.float64)  # [names, updates]
        self._pending = []
        if self.sums is not None:
            block = torch.cat([self.sums.unsqueeze(1), block], dim=1)
        prefix = block.cumsum(1)  # a scan: each sum the one before plus the next value
        new = prefix if self.sums is None else prefix[:, 1:]
        finite = torch.isfinite(new).sum(1)
        self.finite = finite if self.finite is None else self.finite + finite
        self.sums = prefix[:, -1].clone()

    def read(self) -> Window:
        """The means and first non-finite positions so far, without resetting."""
        self._fold()
        if self.sums is None:
            return Window({}, 0, {})
        values = torch.cat([self.sums, self.finite.to(torch.float64)]).cpu().tolist()  # one sync
        k = len(self.names)
        means = {n: v / self.count for n, v in zip(self.names, values[:k], strict=True)}
        bad = {n: int(f) + 1 for n, f in zip(self.names, values[k:], strict=True) if f < self.count}
        return Window(means, self.count, bad)

    def reset(self) -> None:
        self.sums, self.finite, self.count, self._pending = None, None, 0, []

    def pop(self) -> dict[str, float]:
        means = self.read().means
        self.reset()
        return means

    def state_dict(self) -> dict:
        """The partial sums since the last row, so that a resumed run writes the same row."""
        self._fold()
        cpu = None if self.sums is None else self.sums.cpu()
        finite = None if self.finite is None else self.finite.cpu()
        return {"names": list(self.names), "sums": cpu, "finite": finite, "count": self.count}

    def load_state_dict(self, state: dict, device: torch.device) -> None:
        self._pending = []
        if list(state["names"]) != list(self.names) or state["sums"] is None:
            self.reset()
            return
        self.sums = state["sums"].to(device, torch.float64)
        self.finite = state["finite"].to(device, torch.int64)
        self.count = int(state["count"])


def _fmt(v: object) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, float):
        return f"{v:.8g}"
    return str(v)


class RunLogger:
    """metrics.csv, TensorBoard and, with --wandb, the run's W&B run (record/tracking.py):
    each row goes to all of them, under the same names, at the same step."""

    def __init__(
        self,
        run_dir: Path,
        metric_names: list[str],
        resume_step: int | None,
        tracker: Tracker | None = None,
    ) -> None:
        self.tracker = tracker
        self.path = Path(run_dir) / METRICS
        self.columns = BASE_COLUMNS + metric_names
        if resume_step is None:
            with self.path.open("w", newline="") as f:
                csv.writer(f).writerow(self.columns)
        else:
            self._truncate_after(resume_step)
        from torch.utils.tensorboard import SummaryWriter  # slow import; only when training

        self.tb = SummaryWriter(str(Path(run_dir) / TB))

    def _truncate_after(self, step: int) -> None:
        """Drop rows logged after the checkpoint, so the resumed rows continue without gaps
        or repeats."""
        _, rows = read_rows(self.path.parent, "--resume")
        kept = [r for r in rows if int(r["grad_step"]) <= step]
        tmp = self.path.with_suffix(".csv.tmp")
        with tmp.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=self.columns, extrasaction="ignore")
            w.writeheader()
            w.writerows(kept)
        tmp.replace(self.path)

    def write(self, row: dict[str, object], extra: dict[str, float] | None = None) -> None:
        """One row of metrics.csv; its numbers, and the `extra` scalars (by tag), to
        TensorBoard and W&B at the row's grad_step."""
        with self.path.open("a", newline="") as f:
            csv.writer(f).writerow([_fmt(row.get(c)) for c in self.columns])
        step = int(row["grad_step"])  # type: ignore[arg-type]
        scalars = {
            tb_tag(k): v
            for k, v in row.items()
            if k != "grad_step" and isinstance(v, (int, float)) and not math.isnan(v)
        }
        scalars.update(extra or {})
        for tag, v in scalars.items():
            self.tb.add_scalar(tag, v, step)
        self.tb.flush()
        if self.tracker is not None:
            self.tracker.log(scalars, step)

    def close(self) -> None:
        self.tb.close()
        if self.tracker is not None:
            self.tracker.finish()


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


class RunBar:
    """The progress bar of a run: its stage (warm-up, pre-training, ...), then updates,
    updates/s since the last refresh, env steps and the last evaluation's returns."""

    EVERY = 100  # updates between refreshes

    def __init__(self, enabled: bool, title: str, total: int, done: int, env_steps: int) -> None:
        self.title = title
        self.bar = make_progress(enabled)
        self.task = self.bar.add_task(title, total=total, completed=done, ups=0.0,
                                      env_step=env_steps, last_eval="-")  # fmt: skip
        self.since = (time.perf_counter(), done)

    def __enter__(self) -> RunBar:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.__exit__(*exc)  # type: ignore[arg-type]

    def stage(self, description: str | None = None) -> None:
        """Show `description` (a stage before learning) or, without one, the run's title."""
        self.bar.update(self.task, description=description or self.title)

    def start(self, at: tuple[float, int]) -> None:
        """Count updates/s from `at` (a time and an update count)."""
        self.since = at

    def tick(self, grad_step: int, env_steps: int, last_evals: list[float | None]) -> None:
        """Refresh every `EVERY` updates."""
        if grad_step % self.EVERY:
            return
        now = time.perf_counter()
        t, g = self.since
        last = "/".join("-" if v is None else f"{v:.1f}" for v in last_evals)
        self.bar.update(self.task, completed=grad_step, ups=(grad_step - g) / max(now - t, 1e-9),
                        env_step=env_steps, last_eval=last)  # fmt: skip
        self.since = (now, grad_step)
