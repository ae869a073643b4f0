"""Reliability of distributed runs, end to end at a tiny size:
Pendulum-v1, 2 collectors x 2 envs, a few hundred updates, each run in its own RAY_TMPDIR.

- SIGTERM saves and stops like SIGINT (exit 143, 128 + the signal),
  whether it reaches the learner alone (`kill PID`) or its whole process group (a terminal's
  job control), and also while Ray starts. Ray's daemons run in a session of their own, so
  a signal to the learner's group leaves them to the learner's shutdown.
- A run without --ray-address starts its own Ray beside a cluster recorded on the machine;
  it listens on loopback only, and none of its processes outlives a SIGKILLed learner by
  more than a few seconds.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import raytools
import torch
from raytools import (
    TINY_FLAGS,
    free_port,
    is_loopback,
    listening_sockets,
    ray_pids,
    rows,
    start_head,
    stop_pids,
    train_cmd,
    wait_gone,
    wait_rows,
)

import widerl.collect.ray_reaper as ray_reaper

pytestmark = pytest.mark.slow
ray_tmp = raytools.ray_tmp

DISTRIBUTED = [*TINY_FLAGS, "--actors=2", "--envs-per-actor=2"]
# A run stopped by SIGTERM prints this and exits 143 (128 + the signal, as a shell reports it).
STOPPED = (128 + signal.SIGTERM,)
# Generous on a loaded machine, far below the 30-60 s Ray's agents used to linger.
GONE_WITHIN_S = 15


def spawn(cmd: list[str]) -> subprocess.Popen:
    # Its own process group, like a job under a terminal.
    return subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )


def assert_stopped_cleanly(proc: subprocess.Popen, out: Path) -> int:
    """The run stopped like a Ctrl-C: its line, a clean exit, a checkpoint of where it was."""
    _, err = proc.communicate(timeout=120)
    assert proc.returncode in STOPPED, err
    assert "Traceback" not in err and "SIGTERM received" not in err, err  # Ray's stack dump
    line = [x for x in err.splitlines() if x.startswith("stopped at")]
    assert len(line) == 1 and f"widerl train --resume {out}" in line[0], err
    stopped = int(line[0].split()[2])
    assert torch.load(out / "checkpoint.pt", weights_only=True)["grad_step"] == stopped
    return stopped


def test_sigterm_to_the_process_group_mid_run_saves_and_stops(tmp_path: Path, ray_tmp: str) -> None:
    """The checkpoint is the one any stop writes (test_distributed resumes one after Ctrl-C)."""
    out = tmp_path / "run"
    proc = spawn(train_cmd(out, *DISTRIBUTED, "--steps=100000", "--eval-every=50"))
    wait_rows(out, 3, proc)
    # Ray's core worker ends the learner when it finds the raylet gone (a race it lost in CI):
    # none of the run's Ray processes is in the learner's group, only the learner's watchdog.
    others = {p for p in ray_pids(ray_tmp) - {proc.pid} if "ray_reaper" not in _proc(p, "cmdline")}
    in_group = {p for p in others if _pgid(p) == proc.pid}
    assert not in_group, [_proc(p, "comm") for p in in_group]
    os.killpg(proc.pid, signal.SIGTERM)  # the learner and its watchdog
    stopped = assert_stopped_cleanly(proc, out)
    # Saved at the stop, not only at the last evaluation.
    assert stopped >= int(rows(out)[-1]["grad_step"]) >= 100
    left, _ = wait_gone(ray_tmp, GONE_WITHIN_S)
    assert not left


def test_sigterm_while_ray_starts_stops_cleanly(tmp_path: Path, ray_tmp: str) -> None:
    """Ray installs its own SIGTERM handlers while it starts; widerl's must stay in charge."""
    out = tmp_path / "run"
    proc = spawn(train_cmd(out, *DISTRIBUTED, "--steps=100000", "--eval-every=50"))
    deadline = time.monotonic() + 120
    # Ray's GCS is up: ray.init is under way (it takes seconds more to return).
    while not any("gcs_server" in _proc(p, "comm") for p in ray_pids(ray_tmp)):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1]
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGTERM)  # the learner alone, like `kill PID`
    assert_stopped_cleanly(proc, out)
    left, _ = wait_gone(ray_tmp, GONE_WITHIN_S)
    assert not left


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def _proc(pid: int, name: str) -> str:
    """/proc/PID/NAME as text; empty once the process is gone."""
    try:
        return Path(f"/proc/{pid}/{name}").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def test_reaper_kills_marked_processes_only() -> None:
    """The watchdog's rule in isolation: processes carrying the marker, nothing else."""
    marker = secrets.token_hex(8)
    env = {**os.environ, ray_reaper.MARKER_ENV: marker}
    sleep = [sys.executable, "-c", "import time; time.sleep(60)"]
    marked = subprocess.Popen(sleep, env=env)
    other = subprocess.Popen(sleep, env={**os.environ, ray_reaper.MARKER_ENV: marker + "x"})
    watchdog = ray_reaper.start(marker)
    try:
        deadline = time.monotonic() + 30
        while marked.pid not in ray_reaper.marked_pids(marker, set()):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        ray_reaper.stop(watchdog)  # as the learner's end: its stdin closes
        assert marked.wait(timeout=30) == -signal.SIGKILL
        assert other.poll() is None and watchdog.returncode == 0
    finally:
        for p in (marked, other, watchdog):
            p.kill()
            p.wait()


def test_local_run_is_private_on_loopback_and_dies_with_a_sigkilled_learner(
    tmp_path: Path, ray_tmp: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Beside a `ray start --head` cluster recorded in the run's RAY_TMPDIR (its
    ray_current_cluster file) and named by RAY_ADDRESS, a run without --ray-address starts
    its own Ray, which listens on loopback only and ends within seconds of a SIGKILL of the
    learner, leaving the other cluster alone."""
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    monkeypatch.setenv("RAY_AUTH_TOKEN", secrets.token_hex(32))
    port = free_port()
    head = start_head(ray_tmp, port, "--num-cpus=1")
    root = Path(ray_tmp) / "ray"
    try:
        assert (root / "ray_current_cluster").is_file()  # the set-up is real
        theirs = [p for p in root.glob("session_2*") if p.is_dir()]
        monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")
        out = tmp_path / "run"
        proc = spawn(train_cmd(out, *DISTRIBUTED, "--steps=100000", "--eval-every=50"))
        wait_rows(out, 2, proc)
        # A second Ray session, the run's own (joining the cluster would add none).
        mine = [p for p in root.glob("session_2*") if p.is_dir() and p not in theirs]
        assert len(theirs) == 1 and len(mine) == 1, (theirs, mine)
        run_pids = ray_pids(str(mine[0])) | {proc.pid}

        sockets = listening_sockets(run_pids)
        names = {name for _, _, _, name in sockets}
        # Not vacuous: the GCS, the raylet and the learner's own core worker listen somewhere.
        assert {"gcs_server", "raylet"} <= names and proc.pid in {p for _, _, p, _ in sockets}
        exposed = [s for s in sockets if not is_loopback(s[0])]
        assert not exposed, f"listening beyond loopback: {exposed}"

        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=60)
        left, waited = wait_gone(str(mine[0]), GONE_WITHIN_S)
        print(f"the last Ray process of the run was gone {waited:.1f} s after its SIGKILL")
        assert not left, f"outlived the learner: {left}"
        # The other cluster is untouched (the run's watchdog kills only its own).
        assert all(Path(f"/proc/{p}").exists() for p in head)
    finally:
        stop_pids(ray_pids(ray_tmp), grace=5)
