"""Ape-X-like collection on Ray (paper Sec. 3.2, A.1, Fig. 11; Horgan et al. 2018).

`--actors N` starts N collector processes. Each steps `--envs-per-actor` envs, choosing all
their actions in one batched forward pass of its copy of the policy (through OFENet's target
copy when OFENet is on), and returns chunks of transitions, with Ape-X's actor-side initial
priorities when asked. The learner keeps `PIPELINE` requests queued at every collector, so a
collector starts its next chunk as soon as it finishes one and never waits for the learner;
between chunks it picks up the newest weights the learner published (every `--sync-every`
updates) without stopping. A collector that dies is replaced and collection goes on.

Pull, not push: the learner owns the replay and asks for chunks. That keeps one process in
charge of the replay (no locks, exact priorities) and makes `--max-env-per-update` a simple
rule about how many requests may be outstanding.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import secrets
import signal
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from widerl import ray_reaper
from widerl.agents import make_agent
from widerl.agents.base import Agent
from widerl.collect import Chunk, Collector
from widerl.config import Config, ConfigError, from_dict
from widerl.envs import env_dims, make_vec_env
from widerl.errors import CollectorsFailed
from widerl.replay import Batch

log = logging.getLogger("widerl")

CHUNK_TRANSITIONS = 256  # transitions per request: big enough to amortise a round trip
MAX_RESTARTS_PER_COLLECTOR = 10  # a collector that keeps dying points at a bug, not bad luck
PIPELINE = 2  # requests queued per collector, so it never idles waiting for the learner
OBJECT_STORE_BYTES = 512 * 2**20  # bounded local object store (REFERENCE.md: ~7 s start)
RAY_CLUSTER_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # 0: Ray's single-machine mode
# Test hook: SIGKILL collector 0's process once the learner reaches this many updates.
FAULT_ENV = "WIDERL_FAULT_KILL_COLLECTOR_AT"


def weight_keys(agent: Agent, with_critics: bool) -> list[str]:
    """What a collector needs: the policy and OFENet to act; the critics too (and SAC's
    temperature) to compute initial priorities itself."""
    keys = []
    for k in agent.state_dict():
        if k.startswith(("actor.", "features.")) or (
            with_critics and (k.startswith(("critics", "actor_target.")) or k == "log_alpha")
        ):
            keys.append(k)
    return keys


def export_weights(agent: Agent, keys: list[str]) -> dict[str, np.ndarray]:
    """CPU numpy copies: Ray ships numpy arrays through shared memory without pickling."""
    state = agent.state_dict()
    return {k: state[k].detach().cpu().numpy().copy() for k in keys}


@torch.no_grad()
def td_priorities(agent: Agent, chunk: Chunk) -> np.ndarray:
    """Ape-X's actor-side initial priority: |TD error| of the new transitions under the
    collector's copy of the critics, the same quantity the learner writes back (max over
    the twin critics' errors)."""
    f = torch.as_tensor
    batch = Batch(
        f(chunk.obs),
        f(chunk.act),
        f(chunk.rew),
        f(chunk.next_obs),
        f(chunk.term).float(),
        None,
        torch.empty(0),
    )
    return agent.td_abs(batch).numpy()


class CollectorWorker:
    """One collector: its envs, its policy copy, its RNG. Runs inside a Ray actor process
    (and in-process in tests)."""

    def __init__(self, cfg_values: dict, index: int, seed: int, store: Any = None) -> None:
        torch.set_num_threads(1)  # many small forward passes; leave the cores to the envs
        torch.manual_seed(seed)
        cfg: Config = from_dict(cfg_values)
        self.cfg, self.index = cfg, index
        obs_dim, act_dim = env_dims(cfg.env)
        cpu = torch.device("cpu")
        self.agent = make_agent(dataclasses.replace(cfg, device="cpu"), obs_dim, act_dim, cpu)
        self.agent.requires_grad_(False)
        self.envs = make_vec_env(cfg.env, cfg.envs_per_actor)
        self.collector = Collector(self.envs, seed, cpu)
        self.steps = max(1, math.ceil(CHUNK_TRANSITIONS / cfg.envs_per_actor))
        self.td = cfg.prioritized and cfg.initial_priority == "td"
        self.version = -1
        self.store = store  # the learner's WeightStore (Ray); None when driven in-process

    def pid(self) -> int:
        return os.getpid()

    def collect(self, random: bool, box: list | None = None, version: int = -1) -> Chunk:
        """A chunk of `steps x envs` transitions, acted with the newest published weights:
        asked from the WeightStore as the chunk starts (not when it was requested), or given
        as `box`/`version` in-process. `box` holds an ObjectRef inside a list, so Ray does not
        fetch the weights unless they are new to this collector."""
        if self.store is not None and not random:
            import ray

            version, box = ray.get(self.store.get.remote())
        if not random and version > self.version and box:
            weights = box[0]
            if not isinstance(weights, dict):
                import ray

                weights = ray.get(weights)
            self.agent.load_state_dict(
                {k: torch.from_numpy(np.array(v)) for k, v in weights.items()}, strict=False
            )
            self.version = version
        chunk = self.collector.collect(None if random else self.agent, self.steps)
        chunk.version = max(self.version, 0)
        chunk.source = self.index
        if self.td and not random:
            chunk.priority = td_priorities(self.agent, chunk)
        return chunk

    def close(self) -> None:
        self.envs.close()


_AUTH_HINT = (
    "; a cluster with token authentication (Ray's default since 2.59) also needs "
    "RAY_AUTH_MODE=token and its token (~/.ray/auth_token or RAY_AUTH_TOKEN) here"
)


def check_ray_address(address: str, timeout: float = 5.0) -> None:
    """Fail in seconds, not minutes, when nothing listens at HOST:PORT (Ray itself keeps
    retrying a dead address for a long time). `auto` is left to Ray to resolve."""
    if address == "auto" or address.startswith("ray://"):
        return
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
_reaper: subprocess.Popen | None = None  # ray_reaper of the local instance we started


def _start_local(num_cpus: int) -> None:
    """A Ray instance of this run only: always a new one (`address="local"`: never a cluster
    recorded in RAY_TMPDIR's ray_current_cluster or named by RAY_ADDRESS), listening on
    loopback only, with light settings (no dashboard web UI, a bounded object store), and a
    watchdog (ray_reaper) that ends its processes within a second if this process dies."""
    import ray

    global _reaper
    marker = f"{os.getpid()}-{secrets.token_hex(8)}"
    _reaper = ray_reaper.start(marker)
    try:
        with _keeping_signal_handlers(), _loopback_only(), _marked(marker):
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


class WeightStore:
    """Holds the newest published weights (a reference to them in the object store) and
    their version. Collectors ask it at the start of every chunk, so a chunk is acted with
    the weights current when it starts, however long its request was queued."""

    def __init__(self) -> None:
        self.version, self.box = -1, []

    def set(self, version: int, box: list) -> None:
        self.version, self.box = version, box

    def get(self) -> tuple[int, list]:
        return self.version, self.box


class RayCollectors:
    """The learner's handle on N collector processes: requests, chunks, weights, restarts."""

    @staticmethod
    def stop() -> bool:
        return False  # replaced by the learner's `stop` (see __init__)

    def __init__(
        self,
        cfg: Config,
        seed: int,
        agent: Agent,
        version: int = 0,
        stop: Callable[[], bool] | None = None,
    ) -> None:
        """`version`: the learner's update count now (not 0 when a run is resumed); it
        labels the first published weights and varies the collectors' seeds per session.
        `stop`: true once the learner was asked to stop (signals.StopSignals). From then on
        no Ray call is made until `close`: a SIGTERM sent to the whole process group (as
        systemd and Slurm do) also ends this run's raylet, and a Ray call that then finds
        it gone ends the learner before it has saved its checkpoint."""
        import ray

        self.ray = ray
        self.cfg, self.seed, self.session = cfg, seed, version
        if stop is not None:
            self.stop = stop
        self.started = False
        self._fault_at = 0
        self.handles: list = []
        self.pids: list[int] = []
        self.store = None
        self.restarts = 0
        self.inflight: dict[Any, int] = {}
        self.per_request = (
            max(1, math.ceil(CHUNK_TRANSITIONS / cfg.envs_per_actor)) * cfg.envs_per_actor
        )
        try:
            self.started = init_ray(cfg.ray_address, cfg.actors)
            if not self.stop():
                self._start(cfg, agent, version)
        except BaseException:
            self.close()  # no collector or Ray instance outlives a failed start
            if not self.stop():
                raise
            # Stopping anyway: a start cut short by the signal (Ray's daemons got it too)
            # is not an error; the learner saves and exits as for any stop.

    def _start(self, cfg: Config, agent: Agent, version: int) -> None:
        ray = self.ray
        # Collectors use CPU torch whatever the learner's device (one batched forward each).
        self._remote = ray.remote(num_cpus=1, max_restarts=0)(CollectorWorker)
        self.store = ray.remote(num_cpus=0)(WeightStore).remote()
        self._values = dataclasses.asdict(cfg)
        self.keys = weight_keys(agent, cfg.prioritized and cfg.initial_priority == "td")
        self.box: list = []
        self._requests = 0
        self._last_request = [0] * cfg.actors
        for i in range(cfg.actors):
            self.handles.append(self._spawn(i))  # kept one by one, for close() on failure
        self.pids = ray.get([h.pid.remote() for h in self.handles])
        self.publish(agent, version)
        self._fault_at = int(os.environ.get(FAULT_ENV, "0") or 0)

    def _spawn(self, i: int) -> Any:
        # A fresh seed for each incarnation of collector i, derived from the run's seed.
        key = [self.seed, i, self.restarts, self.session]  # session: a resume gets new seeds
        seed = int(np.random.SeedSequence(key).generate_state(1)[0])
        return self._remote.remote(self._values, i, seed, self.store)

    def publish(self, agent: Agent, version: int) -> None:
        """Put the learner's current weights in the object store for the collectors."""
        if self.stop():
            return
        self.box = [self.ray.put(export_weights(agent, self.keys))]
        self.store.set.remote(version, self.box)

    def request(self, i: int, random: bool) -> None:
        ref = self.handles[i].collect.remote(random)
        self.inflight[ref] = i
        self._requests += 1
        self._last_request[i] = self._requests

    def fill_pipeline(self, random: bool, max_new: int | None = None) -> None:
        """Queue requests until each collector has PIPELINE of them, or `max_new` more,
        always topping up the collector with the fewest outstanding requests first so that
        under a --max-env-per-update budget every collector gets its share."""
        if self.stop():
            return
        pending = [0] * len(self.handles)
        for j in self.inflight.values():
            pending[j] += 1
        while max_new is None or max_new > 0:
            i = min(range(len(pending)), key=lambda k: (pending[k], self._last_request[k]))
            if pending[i] >= PIPELINE:
                return
            self.request(i, random)
            pending[i] += 1
            if max_new is not None:
                max_new -= 1

    def poll(self, timeout: float = 0.0) -> list[Chunk]:
        """Chunks that are ready (waiting up to `timeout` s for the first). A collector that
        died is replaced; its lost requests are simply not counted."""
        if not self.inflight or self.stop():
            return []
        ready, _ = self.ray.wait(
            list(self.inflight), num_returns=len(self.inflight), timeout=timeout
        )
        if not ready and timeout > 0:
            ready, _ = self.ray.wait(list(self.inflight), num_returns=1, timeout=timeout)
        chunks = []
        for ref in ready:
            i = self.inflight.pop(ref, None)
            if i is None:
                continue
            try:
                chunk = self.ray.get(ref)
            except self.ray.exceptions.RayActorError:
                self._replace(i)
                continue
            except self.ray.exceptions.RayTaskError as e:
                # The collector's code raised (a signal, an env that crashed): replace it;
                # a collector that keeps failing ends the run with this error (_replace).
                self._replace(i, cause=str(e).strip().splitlines()[-1][:300])
                continue
            # Ray hands back read-only views of its shared memory; the replay copies anyway,
            # but torch warns about wrapping read-only arrays.
            for k in ("obs", "act", "rew", "next_obs", "term", "priority"):
                v = getattr(chunk, k)
                if v is not None and not v.flags.writeable:
                    setattr(chunk, k, v.copy())
            chunks.append(chunk)
        return chunks

    def _replace(self, i: int, cause: str = "its process died") -> None:
        """Collector i is gone: drop its requests, start a new one in its place."""
        with contextlib.suppress(Exception):
            self.ray.kill(self.handles[i])
        for ref in [r for r, j in self.inflight.items() if j == i]:
            del self.inflight[ref]
        self.restarts += 1
        if self.restarts > MAX_RESTARTS_PER_COLLECTOR * len(self.handles):
            raise CollectorsFailed(
                f"collectors failed {self.restarts} times (at most {MAX_RESTARTS_PER_COLLECTOR} "
                f"per collector), last: {cause}; see the Ray logs under RAY_TMPDIR or "
                "/tmp/ray/session_latest/logs"
            )
        log.warning(
            "collector %d failed (%s); starting a replacement (restart %d)", i, cause, self.restarts
        )
        self.handles[i] = self._spawn(i)
        self.pids[i] = self.ray.get(self.handles[i].pid.remote())

    def maybe_inject_fault(self, grad_step: int) -> None:
        if self._fault_at and grad_step >= self._fault_at and not self.stop():
            self._fault_at = 0
            os.kill(self.pids[0], signal.SIGKILL)

    def close(self) -> None:
        """Stop every collector and disconnect. A local instance of this run's own is stopped
        whole, which ends the collectors with it: they are not killed one by one, as a raylet
        already gone after a SIGTERM to the whole group would make those calls end the
        process."""
        if _reaper is None:  # not our own local instance
            for h in [*self.handles, *([self.store] if self.store is not None else [])]:
                with contextlib.suppress(Exception):  # already dead
                    self.ray.kill(h)
        self.handles, self.inflight, self.store = [], {}, None
        if self.started:
            shutdown_ray()
            self.started = False
