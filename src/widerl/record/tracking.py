"""Weights & Biases (`--wandb PROJECT`): what the run writes to TensorBoard, also in W&B.

One W&B run per run folder (per seed with `--seeds`, the seeds in one group), named after the
folder, holding the resolved config and, at each row, every scalar TensorBoard gets, under
the same grouped names (record/logger.tb_tag), with `grad_step` as their x-axis (W&B's own
step counter cannot go back, and a resumed run repeats the rows after its checkpoint, as
TensorBoard's events do). The run's id is kept in the folder (`wandb.json`), so that
`--resume` continues the same W&B run. W&B's local files go to the folder's `wandb/` (or to
WANDB_DIR when that is set). wandb is imported here only, and only in the learner: Ray
collectors never log.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import string
from pathlib import Path
from typing import Any

from widerl.config import Config
from widerl.errors import OutputFailed, first_line, require
from widerl.record.names import WANDB

STEP = "grad_step"  # the x-axis of every logged scalar, as TensorBoard's step


def check_installed() -> None:
    """--wandb without the package: one line naming the extra (before anything is written)."""
    require("wandb", "--wandb", "wandb")


class Tracker:
    """One run folder's W&B run."""

    def __init__(self, run: Any, resume_dir: Path) -> None:
        self.run, self.resume_dir = run, resume_dir

    def log(self, scalars: dict[str, float], step: int) -> None:
        try:
            self.run.log({**scalars, STEP: step})
        except Exception as e:  # wandb's own errors (a dead service, a refused value)
            raise _failed(self.resume_dir, e) from None

    def finish(self) -> None:
        self.run.finish()


def open_tracker(cfg: Config, run_dir: Path, seeds_run: bool) -> Tracker | None:
    """The W&B run of `run_dir` (None without --wandb): the one its wandb.json names, or a
    new one whose id is written there first. A seed of a --seeds run (`seeds_run`) is named
    <folder>/s<seed> and grouped under <folder> (--wandb-group wins)."""
    if not cfg.wandb:
        return None
    import wandb

    resume_dir = run_dir.parent if seeds_run else run_dir  # what `--resume` takes

    run_id = read_run_id(run_dir)
    if run_id is None:
        # W&B's own ids are 8 lowercase letters and digits; a run folder's is made the same way.
        run_id = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))
        tmp = run_dir / f"{WANDB}.tmp"
        tmp.write_text(json.dumps({"id": run_id, "project": cfg.wandb}) + "\n")
        tmp.replace(run_dir / WANDB)
    # W&B writes under <dir>/wandb/ (names.WANDB_DIR in the run folder) unless WANDB_DIR is set.
    local = None if os.environ.get("WANDB_DIR") else run_dir
    name = f"{run_dir.parent.name}/{run_dir.name}" if seeds_run else run_dir.name
    group = run_dir.parent.name if seeds_run else None
    try:
        run = wandb.init(
            project=cfg.wandb,
            entity=cfg.wandb_entity or None,
            group=cfg.wandb_group or group,
            name=name,
            id=run_id,
            resume="allow",
            dir=None if local is None else str(local),
            reinit="create_new",  # a --seeds run holds one W&B run per seed in one process
            # Leave stdout (the progress bar) alone, and say only what matters.
            settings=wandb.Settings(console="off", quiet=True),
        )
        run.config.update(dataclasses.asdict(cfg), allow_val_change=True)  # a resume's steps
        run.define_metric(STEP)
        run.define_metric("*", step_metric=STEP)
    except Exception as e:  # no login, no network, a refused project: wandb's many errors
        raise _failed(resume_dir, e) from None
    return Tracker(run, resume_dir)


def read_run_id(run_dir: Path) -> str | None:
    """The W&B run id kept in `run_dir`, or None (none yet, or an unreadable file: a new W&B
    run then starts)."""
    try:
        value = json.loads((run_dir / WANDB).read_text(encoding="utf-8")).get("id")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        return None
    return value if isinstance(value, str) and value.isalnum() else None


def _failed(resume_dir: Path, e: Exception) -> OutputFailed:
    return OutputFailed(
        f"--wandb: Weights & Biases failed ({first_line(e)}); the run is saved, continue with "
        f"`widerl train --resume {resume_dir}` (WANDB_MODE=offline logs without network)"
    )
