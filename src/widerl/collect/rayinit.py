"""Connecting to Ray: joining a cluster (`--ray-address`), or starting a private instance of
this run's own on this machine, and stopping it again.

A private instance never joins another cluster, listens on loopback only, keeps widerl's
signal handlers in charge, runs in a session of its own, and is watched by `ray_reaper`,
which ends its processes when the learner dies. Only the standard library is imported at
module level (Ray when called).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import widerl.collect.ray_reaper as ray_reaper
from widerl.config import ConfigError

OBJECT_STORE_BYTES = 512 * 2**20  # a bounded local object store starts in seconds
RAY_CLUSTER_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # 0: Ray's single-machine mode


_AUTH_HINT = (
    "; a cluster with token authentication (Ray's default since 2.59) also needs "
    "RAY_AUTH_MODE=token and its token (~/.ray/auth_token or RAY_AUTH_TOKEN) here"
)


def check_ray_address(address: str, timeout: float = 5.0) -> None:
    """Fail in seconds, not minutes, when nothing listens at HOST:PORT (Ray itself keeps
    retrying a dead address for a long time). `auto` is resolved as Ray resolves it
    (RAY_ADDRESS, else the cluster `ray start` last started on this machine), then checked."""
    if address.startswith("ray://"):
        return
    if address == "auto":
        resolved = _resolve_auto()
        if resolved is None:
            return
        address = resolved
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"--ray-address {address!r} is not auto or HOST:PORT")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        raise ConfigError(
            f"--ray-address {address!r}: nothing answers there ({e.strerror or e}); start a "
            "cluster with `ray start --head --port=PORT`, or leave --ray-address empty to "
            "run locally"
        ) from None


def _resolve_auto() -> str | None:
    """The address `--ray-address auto` means: RAY_ADDRESS, else the cluster `ray start` last
    started on this machine (Ray's own lookup, a private function: if a Ray release moves it,
    the check is skipped and Ray resolves `auto` itself). Ray would fall back to any Ray
    process it finds, another widerl run's private instance included, which this run could
    not join: ConfigError instead."""
    if os.environ.get("RAY_ADDRESS"):
        return os.environ["RAY_ADDRESS"]
    try:
        from ray._private.services import find_bootstrap_address
    except ImportError:
        return None
    resolved = find_bootstrap_address(None)
    if not resolved:
        raise ConfigError(
            "--ray-address 'auto': no Ray cluster was started on this machine (none with "
            "`ray start`, and RAY_ADDRESS is not set); start one with `ray start --head`, or "
            "leave --ray-address empty to run locally"
        )
    return resolved


def init_ray(address: str, num_actors: int) -> bool:
    """Join the cluster at `address`, or start a private Ray instance on this machine (see
    `_start_local`). Returns True when this process connected (and must call `shutdown_ray`)."""
    import ray

    if ray.is_initialized():
        return False
    if address:
        check_ray_address(address)
        try:
            with _keeping_signal_handlers():
                ray.init(address=address, **_QUIET)
        except (ConnectionError, ValueError, RuntimeError) as e:
            raise ConfigError(
                f"--ray-address {address!r}: cannot join a Ray cluster there ({e}); start one "
                "with `ray start --head`, or leave --ray-address empty to run locally"
                f"{_AUTH_HINT}"
            ) from None
        return True
    _start_local(max(os.cpu_count() or 1, num_actors))
    return True


_QUIET = {"log_to_driver": False, "configure_logging": False}
_AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"
_reaper: subprocess.Popen | None = None  # ray_reaper of the local instance we started


def _start_local(num_cpus: int) -> None:
    """A Ray instance of this run only: always a new one (`address="local"`: never a cluster
    recorded in RAY_TMPDIR's ray_current_cluster or named by RAY_ADDRESS), listening on
    loopback only, in a session of its own, with light settings (no dashboard web UI, a
    bounded object store), and a watchdog (ray_reaper) that ends its processes within a
    second if this process dies."""
    import ray

    global _reaper
    # Ray >= 2.59 turns token authentication on for a new local instance and says so in a
    # warning on every run; for an instance private to this run (loopback only) that notice
    # tells the user nothing to act on. Authentication stays as Ray sets it.
    logging.getLogger(_AUTH_LOGGER).setLevel(logging.ERROR)
    marker = f"{os.getpid()}-{secrets.token_hex(8)}"
    _reaper = ray_reaper.start(marker)
    try:
        with _keeping_signal_handlers(), _loopback_only(), _marked(marker), _own_session():
            ray.init(
                address="local",
                include_dashboard=False,
                num_cpus=num_cpus,
                object_store_memory=OBJECT_STORE_BYTES,
                **_QUIET,
            )
        node = getattr(ray._private.worker, "_global_node", None)
        if node is not None:
            ray_reaper.tell_session(_reaper, node.get_session_dir_path())
    except BaseException:
        shutdown_ray()
        raise


def owns_local_ray() -> bool:
    """Whether Ray is a local instance this process started (and will stop whole)."""
    return _reaper is not None


def shutdown_ray() -> None:
    """Disconnect (and, for a local instance, stop it and let its watchdog reap leftovers)."""
    import ray

    global _reaper
    ray.shutdown()
    if _reaper is not None:
        ray_reaper.stop(_reaper)
        _reaper = None


@contextlib.contextmanager
def _keeping_signal_handlers() -> Iterator[None]:
    """Keep widerl's SIGINT/SIGTERM handlers (signals.StopSignals) through ray.init. Ray installs
    SIGTERM handlers that exit at once (the driver's `sys.exit(15)`; a local head's kill-all
    and exit 1), and its C++ core worker one that prints a stack dump: a SIGTERM then lost
    everything learned since the last checkpoint. Ray installs its Python ones through
    `set_sigterm_handler`, so that is made a no-op for the call, and whatever was installed
    before is installed again afterwards (over the C++ one)."""
    import ray._private.utils as ray_utils

    main = threading.current_thread() is threading.main_thread()
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)} if main else {}
    setter = getattr(ray_utils, "set_sigterm_handler", None)
    if setter is not None:
        ray_utils.set_sigterm_handler = lambda handler: None
    try:
        yield
    finally:
        if setter is not None:
            ray_utils.set_sigterm_handler = setter
        for sig, handler in saved.items():
            if handler is not None:
                signal.signal(sig, handler)


@contextlib.contextmanager
def _loopback_only() -> Iterator[None]:
    """Ray's single-machine mode (what it uses on macOS and Windows): node address 127.0.0.1,
    so the GCS, raylet, workers and driver listen on loopback only. Ray reads the switch
    from the environment in the processes it starts, and from a constant in this one."""
    from ray._private import ray_constants

    saved = getattr(ray_constants, "ENABLE_RAY_CLUSTER", None)
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        with _env(RAY_CLUSTER_ENV, "0"):
            yield
    finally:
        if saved is not None:
            ray_constants.ENABLE_RAY_CLUSTER = saved


@contextlib.contextmanager
def _own_session() -> Iterator[None]:
    """Ray's daemons (GCS, raylet and, through the raylet, its agents and workers) in a
    session of their own, outside the learner's process group. A signal to the learner's
    group (a terminal's job control, `kill -TERM -PGID`) then stops the learner alone, which
    saves and shuts its Ray down. Before, the raylet died with it, and Ray's core worker in
    the learner ends the process (exit 1, from a thread of its own, at any moment) as soon
    as it finds the object store gone, so whether the checkpoint was saved first was a race
    (the CI run of 18e7ac7 lost it). Ray starts its daemons with `services.ConsolePopen`;
    on Windows it makes that a new process group for the same reason."""
    from ray._private import services

    base = getattr(services, "ConsolePopen", None)
    if base is None or sys.platform == "win32":
        yield
        return

    class _OwnSession(base):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("start_new_session", True)
            super().__init__(*args, **kwargs)

    services.ConsolePopen = _OwnSession
    try:
        yield
    finally:
        services.ConsolePopen = base


def _marked(marker: str) -> contextlib.AbstractContextManager:
    """Every process Ray starts inherits the marker the watchdog looks for."""
    return _env(ray_reaper.MARKER_ENV, marker)


@contextlib.contextmanager
def _env(name: str, value: str) -> Iterator[None]:
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old
