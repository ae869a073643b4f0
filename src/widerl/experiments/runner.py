"""Run an experiment's jobs as `widerl train` subprocesses, at most J at a time.

Each child writes its stdout and stderr to train.log in its run folder. A failed child is
reported at the end and the others go on. Ctrl-C (or SIGTERM) is passed on as SIGINT to
every running child, which saves a checkpoint and exits (trainer.py); a second one kills them.
Children run in their own sessions so that the terminal's Ctrl-C reaches them only through
this forwarding, once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from widerl.experiments.plan import DONE, Job
from widerl.run.signals import StopSignals

POLL_S = 0.2
# Exit statuses of a child we stopped: `widerl train` exits 130 after a clean stop; a
# child killed before it installed its handler, or by a second Ctrl-C, dies of the signal.
STOPPED = (130, 143, -signal.SIGINT, -signal.SIGKILL)  # 143: a SIGTERM to the child


@dataclass
class Task:
    """One child to run: `argv` with its output in `log`; `cpus` and `gpus` are what it
    asks of a Ray cluster (ray_runner; local runs ignore them)."""

    label: str
    argv: list[str]
    log: Path
    cpus: float = 1.0
    gpus: float = 0.0


@dataclass
class Outcome:
    finished: list[str] = field(default_factory=list)
    failed: list[tuple[str, int, Path]] = field(default_factory=list)  # label, status, log
    stopped: list[str] = field(default_factory=list)
    not_started: int = 0
    skipped: int = 0  # already finished before this invocation
    interrupted: bool = False


def _start(task: Task) -> tuple[subprocess.Popen, IO[str]]:
    task.log.parent.mkdir(parents=True, exist_ok=True)
    log = task.log.open("a")
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    log.write(f"=== {stamp}: {' '.join(task.argv)}\n")
    log.flush()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    try:
        proc = subprocess.Popen(
            task.argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
        )
    except BaseException:
        log.close()
        raise
    return proc, log


def run_tasks(
    tasks: Sequence[Task],
    jobs: int,
    on_done: Callable[[Task, str, int, float], None] | None = None,
) -> Outcome:
    """Run `tasks`, at most `jobs` at once; call `on_done(task, kind, status, seconds)` as
    each child exits, kind being done, failed or stopped. Returns what finished, failed,
    was stopped or never started."""
    pending = list(tasks)
    running: dict[int, tuple[Task, subprocess.Popen, IO[str], float]] = {}
    outcome = Outcome()
    forwarded = 0
    with StopSignals() as signals:
        while running or (pending and not outcome.interrupted):
            if signals.count > forwarded:
                forwarded = signals.count
                outcome.interrupted = True
                # First signal: ask for a clean stop; a second one: stop now.
                sig = signal.SIGINT if forwarded == 1 else signal.SIGKILL
                for _, proc, _, _ in running.values():
                    if proc.poll() is None:
                        proc.send_signal(sig)
            while pending and len(running) < jobs and not outcome.interrupted:
                task = pending.pop(0)
                proc, log = _start(task)
                running[proc.pid] = (task, proc, log, time.monotonic())
            for pid, (task, proc, log, t0) in list(running.items()):
                status = proc.poll()
                if status is None:
                    continue
                log.close()
                del running[pid]
                if status == 0:
                    kind = "done"
                    outcome.finished.append(task.label)
                elif outcome.interrupted and status in STOPPED:
                    kind = "stopped"
                    outcome.stopped.append(task.label)
                else:
                    kind = "failed"
                    outcome.failed.append((task.label, status, task.log))
                if on_done is not None:
                    on_done(task, kind, status, time.monotonic() - t0)
            if running:
                time.sleep(POLL_S)
    outcome.not_started = len(pending)
    return outcome


def _duration(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


# (tasks, at most this many at once, on_done) -> Outcome, like run_tasks
Dispatch = Callable[..., Outcome]


def run_jobs(
    jobs: Sequence[Job],
    parallel: int | None,
    console: Console | None = None,
    dispatch: Dispatch | None = None,
    resources: Callable[[Job], tuple[float, float]] | None = None,
) -> Outcome:
    """Skip finished jobs, run the others with an overall progress bar of finished jobs:
    as local children (run_tasks) or through `dispatch` (ray_runner.run_tasks_on_ray), each
    with the (CPUs, GPUs) `resources` gives it."""
    console = console or Console()
    states = [(job, job.state()) for job in jobs]
    todo = [(job, state) for job, state in states if state != DONE]
    skipped = len(jobs) - len(todo)
    if skipped:
        console.print(f"{skipped} of {len(jobs)} runs already finished: skipped")
    need = resources or (lambda job: (1.0, 0.0))
    tasks = [Task(job.label, job.argv(state), job.log, *need(job)) for job, state in todo]
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("runs finished"),
        TimeElapsedColumn(),
        console=console,
        disable=not console.is_terminal,
    )
    name = jobs[0].experiment if jobs else ""
    with progress:
        bar = progress.add_task(name, total=len(jobs), completed=skipped)

        def done(task: Task, kind: str, status: int, seconds: float) -> None:
            if kind == "done":
                line = f"done    {task.label} ({_duration(seconds)})"
                progress.advance(bar)
            elif kind == "stopped":
                line = f"stopped {task.label} (exit {status})"
            else:
                line = f"FAILED  {task.label} (exit {status}); log: {task.log}"
            console.print(line, markup=False, highlight=False)

        outcome = (dispatch or run_tasks)(tasks, parallel, done)
    outcome.skipped = skipped
    return outcome
