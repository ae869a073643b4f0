"""Run an experiment's jobs as Ray tasks on a cluster (`widerl experiment --ray-address`).

Each job is one task with its own CPU/GPU request, placed by Ray on whichever node has room
(spread over the nodes). The task runs the same `widerl train` command as a local job, on its
node, as a child process whose output goes to train.log in the run folder: run folders live
under a storage path that every node sees at the same place, so a rerun finds every run's
state wherever it ran. The outcome (finished, failed, stopped, not started) is reported as
for local jobs (runner.Outcome).

Stopping: a small actor on the driver's node holds the stop level. Every task asks it before
starting its child (a task that starts after a stop runs nothing) and once a second while
the child runs: the first Ctrl-C (or SIGTERM) sends the child SIGINT, so it saves a checkpoint
and exits; a second one kills it. A task that loses the driver stops its child the same way.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from widerl.experiments.runner import STOPPED, Outcome, Task
from widerl.run.signals import StopSignals

POLL_S = 0.2
CHECK_S = 1.0  # how often a running task asks whether to stop
LOST = -1  # status of a run whose task died with its node or worker


class StopBoard:
    """The driver's stop level, and which tasks began their child (a Ray actor)."""

    def __init__(self) -> None:
        self.level, self.started = 0, set()

    def stop(self, level: int) -> None:
        self.level = max(self.level, level)

    def begin(self, label: str) -> bool:
        if self.level:
            return False
        self.started.add(label)
        return True

    def get_level(self) -> int:
        return self.level

    def get_started(self) -> set[str]:
        return set(self.started)


def _child_setup() -> None:
    """In the child, before it runs. Ray's processes block SIGINT, and a blocked signal stays
    blocked across exec: unblock it, or `widerl train` would never see the stop. On Linux,
    also SIGTERM the child (a clean stop with a checkpoint) if its task's worker dies."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PDEATHSIG


def run_on_node(task: Task, python: str, board: Any) -> tuple[int | None, str]:
    """The body of one Ray task: run `task` on this node. Returns (exit status or None when
    a stop came first, this node's address)."""
    import ray

    node = ray.util.get_node_ip_address()
    if not ray.get(board.begin.remote(task.label)):
        return None, node
    argv = list(task.argv)
    if argv and argv[0] == python:  # the driver's interpreter; this node's may live elsewhere
        argv[0] = sys.executable
    task.log.parent.mkdir(parents=True, exist_ok=True)
    with task.log.open("a") as log:
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        log.write(f"=== {stamp} on node {node} ({socket.gethostname()}): {' '.join(argv)}\n")
        log.flush()
        proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            preexec_fn=_child_setup if os.name == "posix" else None,
        )
        sent = 0
        while proc.poll() is None:
            try:
                level = ray.get(board.get_level.remote(), timeout=10 * CHECK_S)
            except Exception:  # the driver is gone: stop cleanly, as on its Ctrl-C
                level = 1
            if level > sent:
                sent = level
                proc.send_signal(signal.SIGINT if level == 1 else signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=CHECK_S)
    return proc.returncode, node


def run_tasks_on_ray(
    tasks: Sequence[Task],
    jobs: int | None,
    on_done: Callable[[Task, str, int, float], None] | None = None,
) -> Outcome:
    """Like runner.run_tasks, on the Ray cluster this process is connected to: each task
    asks for `task.cpus` CPUs and `task.gpus` GPUs; at most `jobs` at once (None: as many
    as the cluster fits)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    board = ray.remote(num_cpus=0)(StopBoard).options(scheduling_strategy=here).remote()
    body = ray.remote(max_retries=0)(run_on_node)
    pending = list(tasks)
    running: dict[Any, tuple[Task, float]] = {}
    outcome = Outcome()
    forwarded = 0
    try:
        with StopSignals() as signals:
            while running or (pending and not outcome.interrupted):
                if signals.count > forwarded:
                    forwarded = signals.count
                    outcome.interrupted = True
                    board.stop.remote(min(forwarded, 2))
                    _drop_unstarted(ray, board, running, outcome)
                while pending and (jobs is None or len(running) < jobs):
                    if outcome.interrupted:
                        break
                    task = pending.pop(0)
                    ref = body.options(
                        num_cpus=task.cpus, num_gpus=task.gpus, scheduling_strategy="SPREAD"
                    ).remote(task, sys.executable, board)
                    running[ref] = (task, time.monotonic())
                if not running:
                    break
                ready, _ = ray.wait(list(running), num_returns=1, timeout=POLL_S)
                for ref in ready:
                    task, t0 = running.pop(ref)
                    kind, status = _result(ray, ref, task, outcome)
                    if kind and on_done is not None:
                        on_done(task, kind, status, time.monotonic() - t0)
    finally:
        with contextlib.suppress(Exception):
            ray.kill(board)
    outcome.not_started += len(pending)
    return outcome


def _drop_unstarted(ray: Any, board: Any, running: dict, outcome: Outcome) -> None:
    """After a stop: tasks that have not begun their child never will (StopBoard.begin, in
    order after the stop); cancel them now rather than wait for a free node."""
    started = ray.get(board.get_started.remote())
    for ref, (task, _) in list(running.items()):
        if task.label not in started:
            ray.cancel(ref)
            del running[ref]
            outcome.not_started += 1


def _result(ray: Any, ref: Any, task: Task, outcome: Outcome) -> tuple[str | None, int]:
    """Sort a finished task into the outcome; (kind, status), kind None when it ran nothing."""
    try:
        status, _node = ray.get(ref)
    except ray.exceptions.RayError as e:
        # Its worker or its node died: the run stopped wherever its last checkpoint was.
        reason = (str(e).strip().splitlines() or ["lost"])[0][:300]
        with contextlib.suppress(OSError), task.log.open("a") as log:
            log.write(f"=== lost: the Ray task running this run died: {reason}\n")
        outcome.failed.append((task.label, LOST, task.log))
        return "failed", LOST
    if status is None:
        outcome.not_started += 1
        return None, 0
    if status == 0:
        outcome.finished.append(task.label)
        return "done", status
    if outcome.interrupted and status in STOPPED:
        outcome.stopped.append(task.label)
        return "stopped", status
    outcome.failed.append((task.label, status, task.log))
    return "failed", status


def check_cluster(storage: Path, cpus: float, gpus: float) -> None:
    """Refuse, in one line, a request no node can hold or a storage path a node cannot write."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from widerl.config import ConfigError

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    fits = [
        n
        for n in nodes
        if n["Resources"].get("CPU", 0) >= cpus and n["Resources"].get("GPU", 0) >= gpus
    ]
    if not fits:
        have = ", ".join(
            f"{n['NodeManagerAddress']}: {n['Resources'].get('CPU', 0):g} CPU "
            f"{n['Resources'].get('GPU', 0):g} GPU"
            for n in nodes
        )
        raise ConfigError(
            f"--cpus-per-run {cpus:g} --gpus-per-run {gpus:g}: no node of the cluster has that "
            f"much ({have or 'no live node'})"
        )

    def writable(path: str) -> bool:
        return os.path.isdir(path) and os.access(path, os.W_OK | os.X_OK)

    probe = ray.remote(num_cpus=0, max_retries=0)(writable)
    refs = {
        n["NodeManagerAddress"]: probe.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
        ).remote(str(storage))
        for n in nodes
    }
    for address, ref in refs.items():
        if not ray.get(ref, timeout=120):
            raise ConfigError(
                f"--storage {str(storage)!r} is not a writable folder on node {address}; every "
                "node must see the same path (a shared filesystem such as NFS)"
            )
