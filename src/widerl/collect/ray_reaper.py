"""A watchdog that ends a local Ray instance's processes when the learner that started it dies.

Ray ties its head daemons (GCS, raylet, dashboard head) to the driver's life, but the raylet's
agents (`ray::DashboardAgent`, `ray::RuntimeEnvAgent`) only notice a lost raylet after about
a minute, so a SIGKILLed learner used to leave them running that long. The learner starts
this process next to Ray and holds the write end of its stdin; the read returns end-of-file
the moment the learner exits, however it exits. It then kills every process of this Ray
instance: those whose environment carries the run's marker (set while Ray starts, so every
process Ray starts inherits it, and nothing else does) and those that hold the instance's
session folder open or on their command line (Ray's agents and workers retitle themselves,
which can overwrite their environment as /proc shows it, but they keep their log files in
that folder open). The learner sends the session folder once Ray is up; a learner killed
before that leaves it to be found by name (Ray names it `session_<time>_<driver pid>`).

Standard library only, and no widerl import beyond this file: it starts in tens of ms.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

MARKER_ENV = "WIDERL_RAY_RUN"
REAP_FOR_S = 5.0  # a raylet may still be starting a worker while we kill; look again


def ray_temp_root() -> Path:
    """Where Ray puts its session folders (its own rule: RAY_TMPDIR, TMPDIR, /tmp)."""
    base = os.environ.get("RAY_TMPDIR") or os.environ.get("TMPDIR") or "/tmp"
    return Path(base) / "ray"


def marked_pids(marker: str, exclude: set[int], session: str | None = None) -> set[int]:
    """Processes whose initial environment holds MARKER_ENV=marker, or whose command line or
    open files name the `session` folder."""
    needle = f"{MARKER_ENV}={marker}".encode() + b"\0"
    folder = session.rstrip("/") + "/" if session else None
    found = set()
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) in exclude:
            continue
        try:
            env = (d / "environ").read_bytes()
            marked = env.startswith(needle) or b"\0" + needle in env
            if marked or (folder and _names(d, folder)):
                found.add(int(d.name))
        except OSError:  # gone, or not ours to read
            continue
    return found


def _names(proc: Path, folder: str) -> bool:
    if folder.encode() in (proc / "cmdline").read_bytes():
        return True
    for fd in (proc / "fd").iterdir():
        try:
            if os.readlink(fd).startswith(folder):
                return True
        except OSError:
            continue
    return False


def reap(marker: str, exclude: set[int], session: str | None = None) -> int:
    """SIGKILL every process of the instance until none is left (or REAP_FOR_S passes)."""
    killed: set[int] = set()
    deadline = time.monotonic() + REAP_FOR_S
    while time.monotonic() < deadline:
        left = marked_pids(marker, exclude, session)
        if not left:
            break
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            except OSError:
                pass
        time.sleep(0.05)
    return len(killed)


def session_of(learner: int, root: Path) -> str | None:
    """The newest session folder Ray created for a driver with this pid, if any."""
    found = sorted(root.glob(f"session_*_{learner}"), key=lambda p: p.stat().st_mtime)
    return str(found[-1]) if found else None


def start(marker: str) -> subprocess.Popen:
    """Start the watchdog for `marker`; closing its stdin (or dying) makes it reap."""
    env = {k: v for k, v in os.environ.items() if k != MARKER_ENV}
    cmd = [sys.executable, "-m", "widerl.collect.ray_reaper", marker, str(os.getpid())]
    return subprocess.Popen(
        [*cmd, str(ray_temp_root())],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        env=env,
        text=True,
    )


def tell_session(proc: subprocess.Popen, session: str) -> None:
    """Name the instance's session folder, once Ray is up."""
    try:
        proc.stdin.write(session + "\n")
        proc.stdin.flush()
    except OSError:
        pass


def stop(proc: subprocess.Popen, timeout: float = 2 * REAP_FOR_S) -> None:
    """A clean end: let the watchdog reap what Ray's shutdown left, and wait for it."""
    try:
        proc.stdin.close()
        proc.wait(timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        proc.kill()
        proc.wait()


def main(argv: list[str]) -> int:
    marker, learner, root = argv[0], int(argv[1]), Path(argv[2])
    # The terminal's Ctrl-C or a SIGTERM to the whole group must not end the watchdog before
    # the learner: it exits when the learner has.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    session = None
    try:
        for line in sys.stdin:
            session = line.strip() or session
    except OSError:
        pass
    if session is None:
        session = session_of(learner, root)
    reap(marker, exclude={os.getpid(), learner}, session=session)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
