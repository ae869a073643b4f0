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
import signal
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from widerl.agents import make_agent
from widerl.agents.base import Agent
from widerl.collect.collector import Chunk, Collector, noise_range, return_gamma
from widerl.collect.envs import env_dims, make_vec_env
from widerl.collect.rayinit import init_ray, owns_local_ray, shutdown_ray
from widerl.config import Config, from_dict, sampler_of
from widerl.errors import CollectorsFailed
from widerl.replay.buffer import TRANSITION_FIELDS, Batch

log = logging.getLogger("widerl")

CHUNK_TRANSITIONS = 256  # transitions per request: big enough to amortise a round trip
MAX_RESTARTS_PER_COLLECTOR = 10  # a collector that keeps dying points at a bug, not bad luck
PIPELINE = 2  # requests queued per collector, so it never idles waiting for the learner
ONE_CPU = {"CPU": 1.0}  # what a collector asks of the cluster
# Test hook: SIGKILL collector 0's process once the learner reaches this many updates.
FAULT_ENV = "WIDERL_FAULT_KILL_COLLECTOR_AT"


def weight_keys(agent: Agent, with_critics: bool) -> list[str]:
    """What a collector needs (Agent.acting_state): the policy and the feature learner's
    acting copy; the critics too to compute initial priorities itself."""
    return list(agent.acting_state(with_critics))


def export_weights(agent: Agent, keys: list[str]) -> dict[str, np.ndarray]:
    """CPU numpy copies: Ray ships numpy arrays through shared memory without pickling."""
    state = agent.acting_state(with_critics=True)
    return {k: state[k].detach().cpu().numpy().copy() for k in keys}


def actor_priorities(cfg: Config) -> bool:
    """Whether collectors compute new transitions' priorities (Ape-X's --initial-priority td,
    with a sampler that keeps priorities)."""
    return sampler_of(cfg) != "uniform" and cfg.initial_priority == "td"


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
        self.collector = Collector(self.envs, seed, cpu, noise_range(cfg), return_gamma(cfg))
        self.steps = max(1, math.ceil(CHUNK_TRANSITIONS / cfg.envs_per_actor))
        self.td = actor_priorities(cfg)
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
            tensors = {k: torch.from_numpy(np.array(v)) for k, v in weights.items()}
            if "reward_scale" in tensors:  # not a module's state (Agent.acting_state)
                self.agent.reward_scale.copy_(tensors.pop("reward_scale"))
            self.agent.load_state_dict(tensors, strict=False)
            self.version = version
        chunk = self.collector.collect(None if random else self.agent, self.steps)
        chunk.version = max(self.version, 0)
        chunk.source = self.index
        if self.td and not random:
            chunk.priority = td_priorities(self.agent, chunk)
        return chunk

    def close(self) -> None:
        self.envs.close()


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
    """The learner's handle on N collector processes: requests, chunks, weights, restarts.

    Nothing here waits on a collector being placed: on a cluster that has lost a node, a
    replacement may wait for a free CPU for as long as the node is gone. A collector is
    `running` once its process answered; only running collectors get requests. One that has
    not been placed while the cluster has no CPU free for it is reported once ("waits for
    resources") and counted in `waiting`; Ray starts it when resources return. While no
    collector runs, `poll` waits for one (learning pauses, signals still stop the run), and
    after `--collector-wait` seconds it gives up with CollectorsFailed (checkpoint, exit 1)."""

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
        no Ray call is made until `close`: a SIGTERM sent to every process of the job (systemd's
        default, Slurm) also ends the raylet, and a Ray call that then finds it gone ends the
        learner before it has saved its checkpoint. (A local Ray of this run's own runs in a
        session of its own, so a signal to the learner's process group does not reach it.)"""
        import ray

        self.ray = ray
        self.cfg, self.seed, self.session = cfg, seed, version
        if stop is not None:
            self.stop = stop
        self.started = False
        self._fault_at = 0
        self.handles: list = []
        self.pids: list[int | None] = []
        self.store = None
        self.restarts = 0
        self.inflight: dict[Any, int] = {}
        self.per_request = (
            max(1, math.ceil(CHUNK_TRANSITIONS / cfg.envs_per_actor)) * cfg.envs_per_actor
        )
        self._starting: dict[Any, int] = {}  # pid() request -> collector, until it answers
        self._spawned: list[float] = []  # when each collector's current process was asked for
        self._waiting: set[int] = set()  # reported as waiting for resources
        self._idle_since = time.monotonic()  # when the last running collector was lost
        self._resources_checked = 0.0
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
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        # Collectors use CPU torch whatever the learner's device (one batched forward each).
        self._remote = ray.remote(num_cpus=ONE_CPU["CPU"], max_restarts=0)(CollectorWorker)
        # The weight store lives on the learner's node: every collector depends on it, so it
        # must not be lost with another node.
        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        self.store = ray.remote(num_cpus=0)(WeightStore).options(scheduling_strategy=here).remote()
        self._values = dataclasses.asdict(cfg)
        self.keys = weight_keys(agent, actor_priorities(cfg))
        self.box: list = []
        self._requests = 0
        self._last_request = [0] * cfg.actors
        self._spawned = [0.0] * cfg.actors
        self._idle_since = time.monotonic()
        for i in range(cfg.actors):
            self.handles.append(None)
            self.pids.append(None)
            self._spawn(i)  # kept one by one, for close() on failure
        self.publish(agent, version)
        self._fault_at = int(os.environ.get(FAULT_ENV, "0") or 0)
        self._await_start()

    def _await_start(self) -> None:
        """Wait until every collector runs or is reported waiting for resources, so that the
        warm-up is shared by all that can be placed (a stop or --collector-wait ends it)."""
        while self._starting and not self.stop():
            if all(i in self._waiting for i in self._starting.values()):
                return
            if time.monotonic() - self._idle_since > self.cfg.collector_wait:
                if self.running:
                    return
                raise CollectorsFailed(
                    f"no collector ran for {self.cfg.collector_wait:g} s (--collector-wait): "
                    f"{self._why_none()}"
                )
            self._check_starting(timeout=0.2)

    def _spawn(self, i: int) -> None:
        # A fresh seed for each incarnation of collector i, derived from the run's seed.
        key = [self.seed, i, self.restarts, self.session]  # session: a resume gets new seeds
        seed = int(np.random.SeedSequence(key).generate_state(1)[0])
        self.handles[i] = self._remote.remote(self._values, i, seed, self.store)
        self.pids[i] = None
        self._starting[self.handles[i].pid.remote()] = i
        self._spawned[i] = time.monotonic()

    @property
    def running(self) -> int:
        return sum(p is not None for p in self.pids)

    @property
    def waiting(self) -> int:
        """Collectors reported as waiting for resources and not started since."""
        return len(self._waiting)

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
        """Queue requests until each running collector has PIPELINE of them, or `max_new`
        more, always topping up the collector with the fewest outstanding requests first so
        that under a --max-env-per-update budget every collector gets its share."""
        if self.stop():
            return
        live = [i for i, p in enumerate(self.pids) if p is not None]
        if not live:
            return
        pending = dict.fromkeys(live, 0)
        for j in self.inflight.values():
            if j in pending:
                pending[j] += 1
        while max_new is None or max_new > 0:
            i = min(live, key=lambda k: (pending[k], self._last_request[k]))
            if pending[i] >= PIPELINE:
                return
            self.request(i, random)
            pending[i] += 1
            if max_new is not None:
                max_new -= 1

    def poll(self, timeout: float = 0.0) -> list[Chunk]:
        """Chunks that are ready (waiting up to `timeout` s for the first). A collector that
        died is replaced; its lost requests are simply not counted. While no collector runs,
        this waits for one, up to --collector-wait seconds in all (see the class)."""
        if self.stop():
            return []
        self._check_starting(timeout=0.0)
        while self.running == 0 and self.handles:
            idle = time.monotonic() - self._idle_since
            if idle > self.cfg.collector_wait:
                raise CollectorsFailed(
                    f"no collector ran for {self.cfg.collector_wait:g} s (--collector-wait): "
                    f"{self._why_none()}"
                )
            self._check_starting(timeout=0.2)
            if self.stop():
                return []
        if not self.inflight:
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
            except self.ray.exceptions.RayTaskError as e:
                # The collector's code raised (a signal, an env that crashed): replace it;
                # a collector that keeps failing ends the run with this error (_replace).
                self._replace(i, cause=str(e).strip().splitlines()[-1][:300])
                continue
            except self.ray.exceptions.RayError as e:
                # Its process or its node is gone (ActorDiedError, lost objects...).
                self._replace(i, cause=_first_line(e) or "its process died")
                continue
            # Ray hands back read-only views of its shared memory; the replay copies anyway,
            # but torch warns about wrapping read-only arrays.
            for k in (*TRANSITION_FIELDS, "priority"):
                v = getattr(chunk, k)
                if v is not None and not v.flags.writeable:
                    setattr(chunk, k, v.copy())
            chunks.append(chunk)
        return chunks

    def _check_starting(self, timeout: float) -> None:
        """Collectors whose process answered are running; one that cannot be placed for
        want of resources is reported once."""
        if not self._starting:
            return
        refs = list(self._starting)
        ready, _ = self.ray.wait(refs, num_returns=len(refs), timeout=0)
        if not ready and timeout > 0:
            ready, _ = self.ray.wait(refs, num_returns=1, timeout=timeout)
        for ref in ready:
            i = self._starting.pop(ref)
            try:
                self.pids[i] = self.ray.get(ref)
            except self.ray.exceptions.RayError as e:
                self._replace(i, cause=_first_line(e) or "it failed to start")
                continue
            if i in self._waiting:
                self._waiting.discard(i)
                log.warning(
                    "collector %d started after waiting %.0f s for resources",
                    i,
                    time.monotonic() - self._spawned[i],
                )
        unreported = [i for i in self._starting.values() if i not in self._waiting]
        now = time.monotonic()
        if unreported and now - self._resources_checked >= 1.0:
            self._resources_checked = now
            # The cluster's own count of collector-sized requests it cannot place now (what
            # `ray status` lists as pending demands); a collector that is merely starting is
            # placed already and not among them.
            unplaced = self._unplaced() - len(self._waiting)
            for i in sorted(unreported, key=lambda k: self._spawned[k])[: max(unplaced, 0)]:
                self._waiting.add(i)
                free, total, nodes = self._cpus()
                log.warning(
                    "collector %d waits for resources: it needs 1 CPU, and %g of %g CPUs are "
                    "free on %d live node(s); it starts once a CPU is free again",
                    i,
                    free,
                    total,
                    nodes,
                )

    def _unplaced(self) -> int:
        """Requests of one CPU (a collector's shape) that the cluster cannot place now."""
        try:
            from ray.autoscaler.v2.sdk import get_cluster_status

            status = get_cluster_status(self.ray.get_runtime_context().gcs_address)
            demands = status.resource_demands.ray_task_actor_demand
            return sum(b.count for d in demands for b in d.bundles_by_count if b.bundle == ONE_CPU)
        except Exception:  # an older or newer Ray without this view: report nothing
            return 0

    def _cpus(self) -> tuple[float, float, int]:
        """Free CPUs, all CPUs and live nodes of the cluster, as its GCS sees them now."""
        free = self.ray.available_resources().get("CPU", 0.0)
        total = self.ray.cluster_resources().get("CPU", 0.0)
        nodes = sum(1 for n in self.ray.nodes() if n.get("Alive"))
        return free, total, nodes

    def _why_none(self) -> str:
        if self._waiting:
            free, total, nodes = self._cpus()
            return (
                f"{len(self._waiting)} collector(s) wait for resources ({free:g} of {total:g} "
                f"CPUs free on {nodes} live node(s), each collector needs 1)"
            )
        return f"{len(self._starting)} collector(s) still starting"

    def _replace(self, i: int, cause: str = "its process died") -> None:
        """Collector i is gone: drop its requests, ask for a new one in its place (without
        waiting for it to be placed)."""
        with contextlib.suppress(Exception):
            self.ray.kill(self.handles[i])
        for ref in [r for r, j in self.inflight.items() if j == i]:
            del self.inflight[ref]
        for ref in [r for r, j in self._starting.items() if j == i]:
            del self._starting[ref]
        if self.pids[i] is not None and self.running == 1:
            self._idle_since = time.monotonic()  # the last running collector is lost
        self.pids[i] = None
        self._waiting.discard(i)
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
        self._spawn(i)

    def maybe_inject_fault(self, grad_step: int) -> None:
        if self._fault_at and grad_step >= self._fault_at and not self.stop() and self.pids[0]:
            self._fault_at = 0
            os.kill(self.pids[0], signal.SIGKILL)

    def close(self) -> None:
        """Stop every collector and disconnect. A local instance of this run's own is stopped
        whole, which ends the collectors with it: they are not killed one by one, as a raylet
        already gone after a SIGTERM to the whole group would make those calls end the
        process."""
        if not owns_local_ray():  # not our own local instance
            for h in [*self.handles, *([self.store] if self.store is not None else [])]:
                with contextlib.suppress(Exception):  # already dead
                    self.ray.kill(h)
        self.handles, self.inflight, self.store = [], {}, None
        self._starting, self._waiting = {}, set()
        if self.started:
            shutdown_ray()
            self.started = False


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0][:300] if lines else ""
