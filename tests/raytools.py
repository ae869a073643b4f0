"""Helpers for tests that start Ray: a private RAY_TMPDIR, the processes living under it, their
listening sockets, and `ray start` clusters stopped by their PIDs (never `ray stop`, which
ends every Ray process on the machine)."""

from __future__ import annotations

import contextlib
import csv
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

RAY = str(Path(sys.executable).parent / "ray")
TINY_FLAGS = [
    "--env=Pendulum-v1",
    "--units=16",
    "--batch-size=32",
    "--buffer-size=20000",
    "--warmup=300",
    "--eval-episodes=1",
    "--threads=1",
    "--no-progress",
    # The tests step 100,000-update runs (stopped early), which --compile auto would compile.
    "--compile=off",
]


def ray_pids(tmp: str) -> set[int]:
    """Processes started by a Ray session living under `tmp`: they inherit RAY_TMPDIR, and
    name the session folder on their command line or hold their log files there open (the
    last is what finds Ray's agents, whose retitling can hide their environment)."""
    pids = set()
    needle = tmp.encode()
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if needle in (d / "cmdline").read_bytes() or needle in (d / "environ").read_bytes():
                pids.add(int(d.name))
                continue
            for fd in (d / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd).startswith(tmp):
                        pids.add(int(d.name))
                        break
        except OSError:
            continue
    pids.discard(os.getpid())
    return pids


def wait_gone(tmp: str, timeout: float) -> tuple[set[int], float]:
    """Wait until no process of `tmp` is left; what is left and the seconds waited."""
    t0 = time.monotonic()
    while ray_pids(tmp) and time.monotonic() - t0 < timeout:
        time.sleep(0.1)
    return ray_pids(tmp), time.monotonic() - t0


def stop_pids(pids: Iterable[int], grace: float = 15.0) -> None:
    """SIGTERM these processes, then SIGKILL the ones still there after `grace` s."""
    pids = set(pids)
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.2)
    for pid in pids:
        _signal(pid, signal.SIGKILL)


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][0] != "Z"
    except OSError:
        return False


@pytest.fixture
def ray_tmp(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A private RAY_TMPDIR; afterwards no process of it may be left (they are killed and
    the test fails if one is)."""
    # Short path: Ray's unix sockets live under it (108-byte limit).
    tmp = tempfile.mkdtemp(prefix="wrray", dir="/tmp")
    monkeypatch.setenv("RAY_TMPDIR", tmp)
    yield tmp
    left, _ = wait_gone(tmp, 20)
    stop_pids(left, grace=0)
    shutil.rmtree(tmp, ignore_errors=True)
    assert not left, f"Ray processes left behind: {left}"


def free_port(host: str = "127.0.0.1", taken: set[int] | None = None) -> int:
    """A port free on `host` now, and not among `taken` (ports asked for already but not yet
    bound: the kernel may hand the same one out twice, as it did to a head's GCS and its
    dashboard agent in one run)."""
    while True:
        with socket.socket() as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if taken is None or port not in taken:
            if taken is not None:
                taken.add(port)
            return port


def start_head(tmp: str, port: int, *args: str, timeout: float = 120) -> set[int]:
    """`ray start --head` under `tmp` (RAY_TMPDIR must name it); the PIDs it started."""
    before = ray_pids(tmp)
    head = [RAY, "start", "--head", f"--port={port}", *args]
    head += ["--include-dashboard=false", "--disable-usage-stats"]
    subprocess.run(head, check=True, capture_output=True, timeout=timeout)
    return ray_pids(tmp) - before


def rows(run: Path) -> list[dict[str, str]]:
    if not (run / "metrics.csv").exists():
        return []
    with (run / "metrics.csv").open() as f:
        return list(csv.DictReader(f))


def wait_rows(run: Path, n: int, proc: subprocess.Popen, timeout: float = 180) -> None:
    """Wait until metrics.csv has `n` rows (fail if the run ends first)."""
    deadline = time.monotonic() + timeout
    while len(rows(run)) < n:
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, f"no {n} rows in {timeout} s"
        time.sleep(0.2)


def train_cmd(out: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "widerl.cli", "train", "--out", str(out), *args]


def _addr(hex_addr: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An address as /proc/net/tcp{,6} writes it (32-bit words in host byte order)."""
    raw = bytes.fromhex(hex_addr)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    ip = ipaddress.ip_address(words)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def listening_sockets(pids: Iterable[int]) -> list[tuple[str, int, int, str]]:
    """(address, port, pid, process name) of every TCP socket these processes listen on."""
    owner: dict[str, int] = {}
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                link = os.readlink(fd)
                if link.startswith("socket:["):
                    owner[link[8:-1]] = pid
        except OSError:
            continue
    found = []
    for table in ("tcp", "tcp6"):
        path = Path(f"/proc/net/{table}")
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            f = line.split()
            if f[3] != "0A" or f[9] not in owner:  # 0A: LISTEN
                continue
            host, port = f[1].split(":")
            pid = owner[f[9]]
            try:
                name = Path(f"/proc/{pid}/comm").read_text().strip()
            except OSError:
                name = "?"
            found.append((str(_addr(host)), int(port, 16), pid, name))
    return found


def is_loopback(address: str) -> bool:
    return ipaddress.ip_address(address).is_loopback
