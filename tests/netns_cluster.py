"""A two-node Ray cluster on one machine: the head in this network namespace, the second node
inside a network namespace of its own, joined by a veth pair on a /30 of 10.211.x.0 that
nothing else on the machine uses. Everything it starts (namespace, link, processes, temp
folders) it records, and `close` removes exactly that, by name and by PID.

Needs root and `ip` (iproute2); `unavailable()` says why not where they are missing."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from raytools import RAY, free_port, ray_pids, stop_pids

OBJECT_STORE = str(100 * 2**20)
# The head notices a lost node within seconds, not Ray's default ~15 s (period x threshold).
FAST_HEALTH_CHECKS = {
    "RAY_health_check_period_ms": "500",
    "RAY_health_check_timeout_ms": "500",
    "RAY_health_check_failure_threshold": "3",
}


def unavailable() -> str | None:
    """Why this machine cannot build the cluster, or None."""
    if os.geteuid() != 0:
        return "needs root to create a network namespace"
    if shutil.which("ip") is None:
        return "needs `ip` (iproute2) to create a network namespace"
    name = f"wrprobe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if made.returncode != 0:
        return f"cannot create a network namespace here: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return None


def _ip(*args: str, ns: str | None = None) -> None:
    cmd = ["ip", *(["-n", ns] if ns else []), *args]
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=30)


def free_subnet() -> int:
    """A third octet N such that no address or route of 10.211.N.0/24 exists here."""
    text = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True).stdout
    text += subprocess.run(["ip", "route"], capture_output=True, text=True).stdout
    for n in range(256):
        if f"10.211.{n}." not in text:
            return n
    raise RuntimeError("no free 10.211.N.0/24 for the test cluster")


class TwoNodes:
    def __init__(self, head_cpus: int = 1, node_cpus: int = 2) -> None:
        tag = f"{os.getpid() % 100000}"
        self.ns, self.veth, self.peer = f"wr14-{tag}", f"wr14h{tag}", f"wr14n{tag}"
        n = free_subnet()
        self.head_ip, self.node_ip = f"10.211.{n}.1", f"10.211.{n}.2"
        self.head_cpus, self.node_cpus = head_cpus, node_cpus
        self.token = secrets.token_hex(32)
        self.tmps: list[str] = []
        self.made_ns = self.made_link = False
        self.port = 0
        self.head_tmp = self._tmp()

    @property
    def address(self) -> str:
        return f"{self.head_ip}:{self.port}"

    def _tmp(self) -> str:
        # Short: Ray's unix sockets live under it (108-byte limit).
        tmp = tempfile.mkdtemp(prefix="wrc", dir="/tmp")
        self.tmps.append(tmp)
        return tmp

    def env(self, tmp: str | None = None, **extra: str) -> dict[str, str]:
        """The environment of a process of this cluster (token auth, its temp folder)."""
        env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token}
        env.pop("RAY_ADDRESS", None)
        env["RAY_TMPDIR"] = tmp or self.head_tmp
        return {**env, **extra}

    def start(self) -> TwoNodes:
        _ip("netns", "add", self.ns)
        self.made_ns = True
        _ip("link", "add", self.veth, "type", "veth", "peer", "name", self.peer, "netns", self.ns)
        self.made_link = True
        _ip("addr", "add", f"{self.head_ip}/30", "dev", self.veth)
        _ip("link", "set", self.veth, "up")
        _ip("addr", "add", f"{self.node_ip}/30", "dev", self.peer, ns=self.ns)
        _ip("link", "set", self.peer, "up", ns=self.ns)
        _ip("link", "set", "lo", "up", ns=self.ns)
        taken: set[int] = set()
        self.port = free_port(self.head_ip, taken)
        head = [RAY, "start", "--head", f"--node-ip-address={self.head_ip}"]
        head += [f"--port={self.port}", f"--num-cpus={self.head_cpus}"]
        # The head shares this namespace with other sessions: no fixed default ports.
        for flag in ("dashboard-agent-listen", "metrics-export", "runtime-env-agent"):
            head.append(f"--{flag}-port={free_port(taken=taken)}")
        self._ray_start(head, self.env(**FAST_HEALTH_CHECKS))
        self.start_node()
        return self

    def start_node(self) -> None:
        """(Re)start the second node, in a fresh temp folder (a lost node's is stale)."""
        cmd = ["ip", "netns", "exec", self.ns, RAY, "start", f"--address={self.address}"]
        cmd += [f"--node-ip-address={self.node_ip}", f"--num-cpus={self.node_cpus}"]
        self._ray_start(cmd, self.env(self._tmp()))

    def _ray_start(self, cmd: list[str], env: dict[str, str]) -> None:
        cmd += [f"--object-store-memory={OBJECT_STORE}", "--disable-usage-stats"]
        if "--head" in cmd:
            cmd.append("--include-dashboard=false")
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stdout + done.stderr

    def in_node(self, pid: int) -> bool:
        """Whether process `pid` lives in the second node's namespace."""
        try:
            mine = os.stat(f"/run/netns/{self.ns}").st_ino
            return os.stat(f"/proc/{pid}/ns/net").st_ino == mine
        except OSError:
            return False

    def node_pids(self) -> set[int]:
        return {p for p in _all_pids() if self.in_node(p)}

    def kill_node(self) -> None:
        """Lose the second node as a machine is lost: SIGKILL everything in it."""
        for _ in range(20):  # a raylet may still be starting a worker
            left = self.node_pids()
            if not left:
                return
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)

    def leftovers(self) -> list[str]:
        """What of this cluster still exists (empty after `close`)."""
        left = [f"process {p}" for p in self.node_pids()]
        for tmp in self.tmps:
            left += [f"process {p}" for p in ray_pids(tmp)]
        if Path(f"/run/netns/{self.ns}").exists():
            left.append(f"namespace {self.ns}")
        if Path(f"/sys/class/net/{self.veth}").exists():
            left.append(f"link {self.veth}")
        return left

    def close(self) -> None:
        """Stop every process this cluster started (by PID), delete link and namespace."""
        self.kill_node()
        for tmp in self.tmps:
            stop_pids(ray_pids(tmp), grace=5)
        if self.made_link:
            subprocess.run(["ip", "link", "del", self.veth], capture_output=True)
        if self.made_ns:
            subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)
        for tmp in self.tmps:
            shutil.rmtree(tmp, ignore_errors=True)


def _all_pids() -> list[int]:
    return [int(d.name) for d in Path("/proc").iterdir() if d.name.isdigit()]
