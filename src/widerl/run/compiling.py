"""When the learning step is compiled (--compile), where compilation is cached, and what it has
cost before on this machine.

`--compile on` compiles the step before the first update, `off` never. `auto` decides by
payoff: the run starts eager, times `EAGER_TIMED` eager updates (after `EAGER_SKIPPED` of
warm-up) and compiles from then on when the updates left would save more time than compiling
costs:

    updates_left * (eager_ms - expected_compiled_ms) > expected_compile_s * 1000

Both expectations come from the cost index (below) when this configuration was compiled on
this machine before: the compiled step's time then scales with today's eager time
(compiled_ms * eager_ms_now / eager_ms_then), and compiling costs what it cost with torch's
caches warm (`warm_s`). A configuration never compiled here expects `PRIOR_COMPILED` of the
eager time and the slowest cold compilation seen on this device type (else `PRIOR_COLD_S`).
With --utd K the step runs K updates per call (run/step.py): the windows count updates in
whole calls, and a never-measured compilation is expected to cost K times a single step's
(one graph holds the K updates). The decision and its figures go to the run's `run.log`.

**Warming the cache.** When auto stays eager only because this configuration was never
compiled here, and a warm cache would have paid for this run (the updates left times
(1 - PRIOR_COMPILED) of the eager time exceed twice PRIOR_WARM_S), the run starts one child
process at the lowest CPU priority (`python -m widerl.run.warm_up`) that builds the same
learning step on random transitions, compiles it into torch's caches and records its cost.
At that priority it runs mostly on CPU time the run leaves idle (the second core of a run
with --threads 1, the moments the run steps its envs), though it shares the memory
bandwidth and caches. When it is done the run decides again, now with the warm
cost, and usually compiles for the rest of its updates; later runs of the configuration
find the cache warm. The child ends with the run at the latest.

**A cold compile in two processes.** TD3's and CrossQ's steps have two graphs, with and without
the delayed actor update, each compiled when an update first takes it. When neither is saved
for the configuration, the step compiles with inductor on a CPU and the process may run on a
second CPU, the run starts a second process (`start_second_graph`: `python -m
widerl.run.warm_up`, at the run's priority) before its first compiled update (with `on`, before
the run collects its warm-up transitions). It builds the same step on random transitions and
compiles one graph while the run compiles the other: the run the larger, with the actor's
update (`LearnStep.compile_ahead` when the first compiled update is not an actor step), the
second process, which starts about 3 s later, the smaller. Every graph is compiled under a
claim (`SavedStep`: `<file>.building` with the process id), so the run, on reaching the other
graph, waits for the second process's file and loads it; if that process died or could not
start, the run compiles the graph itself. TD3 paper-original on this 2-core CPU: a cold compile
of 29-31 s became 18-22 s, CrossQ 256 x 2 55 s became 33-38 s (benchmarks/README.md, issue 24,
session 31). The process ends with the run. Like the warm-up child it uses a CPU that --threads
does not count (--threads sets the updates' threads), and only until the second graph is
compiled.

**The caches.** torch keeps what compiling produced (TorchDynamo's graph, AOTAutograd's
forward and backward, inductor's generated and built C++ or Triton code) in its FX graph and
AOTAutograd caches under `TORCHINDUCTOR_CACHE_DIR`; widerl points that at
`<cache>/torch` unless it is set already. Its entries are keyed by the traced graph, torch's
version and the compiler's settings, so another configuration, network or torch release
compiles anew, and a stale entry is never used; deleting the folder is always safe. On top
of them a run's compiled CPU step is kept whole (`SavedStep`): TorchDynamo's capture,
AOTAutograd's graph and inductor's generated code, one file per graph in `<cache>/steps/`,
written by `torch.compile(...).aot_compile` and read by `torch.compiler.
load_compiled_function`. A second run of the configuration loads it (1.6-2 s) instead of
tracing the step again with TorchDynamo (6-9 s with torch's caches warm, 256 x 2 on this
CPU; benchmarks/README.md, issue 24). A file is named by the configuration key (`step_key`)
and a hash of the call's static arguments (the tensors' shapes and dtypes, TD3's
actor-step flags), so another configuration, widerl source, torch version or kind of CPU
never reads it; torch refuses a file from another Python or torch version, and a file that
does not load (damaged, half written, refused) is compiled again and replaced. The
`KEEP_SAVED` most recently used files stay, older ones are deleted. A step torch cannot
compile ahead of time is compiled as before, with its guards, and not saved (run.log says
which graphs were loaded, saved or neither). The built C++ stays in
`<cache>/torch`: a saved step loaded without it builds it again once (tens of seconds). A
CUDA step (captured as a CUDA graph) is not saved; it compiles through torch's caches,
traced again by each run.

**Acting.** Where the step is saved whole (a CPU), the run acts through `Agent.policy`
compiled the same way (`CompiledActing`, files `<key>-act-<spec hash>.compiled`): one graph
for the collection's calls (a step's observations and exploration noise) and one per width of
the evaluation's groups of episodes, each traced with every network in eval mode, so that a
call switches no module's mode and checks no guard. The exploration noise is still drawn
eagerly from each seed's acting stream, as before. The graphs are prepared at the end of the
step's first compiled call (`LearnStep._prepare_acting`, within the time that compiling is
charged), after a cold compile's second process started, which prepares them too once its
graph is compiled, so the run usually loads them from it; until then the agent acts eagerly.
Acting one observation of TD3 256 x 2 took 77-94 us against 153-159 us eagerly on this CPU
(benchmarks/README.md, issue 24, session 34). Where torch cannot compile the policy ahead of
time, acting stays eager (a guarded torch.compile would trace it again in train mode). Ray
collectors act eagerly in their own processes, and a CUDA run acts eagerly.

`<cache>/compile-costs.json` is widerl's own index: per configuration key (`step_key`), the
measured cold and warm compilation seconds and the eager and compiled milliseconds per update.
The key holds torch's version and a hash of widerl's source, so after an upgrade or an edit
a configuration counts as never compiled here until it is measured again.
`<cache>` is $WIDERL_CACHE, else $XDG_CACHE_HOME/widerl, else ~/.cache/widerl.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from widerl.config import Config
from widerl.nets import onednn
from widerl.record.folder import RESUMABLE_OVERRIDES

CACHE_ENV = "WIDERL_CACHE"
COSTS = "compile-costs.json"
EAGER_SKIPPED = 10  # eager updates before timing (allocator and cache warm-up)
EAGER_TIMED = 100  # eager updates timed for the decision
# A compiled run times its first FIRST_CALLS calls as compilation (TD3's and CrossQ's actor
# delay makes two graphs, one per actor_step value, the second compiled on a later call), then
# COMPILED_TIMED calls as the compiled step's time.
FIRST_CALLS = 8
COMPILED_TIMED = 100
WARM_POLL = 200  # calls between looks at the index while the child compiles
# Priors for a configuration never compiled here (benchmarks/README.md, issue 24: a compiled
# step took 0.54-0.8x of the eager one on this 2-core CPU; a cold compilation 15-70 s for
# 256 x 2 networks; a warm one, a saved step loaded, 1.6-2.0 s; larger networks and slower
# machines take longer).
PRIOR_COMPILED = 0.7
PRIOR_COLD_S = 40.0
PRIOR_WARM_S = 3.0
KEEP_SAVED = 64  # saved steps (files of <cache>/steps) kept, the most recently used
# A graph another live process is compiling (its claim, `<file>.building`) is waited for, at
# most CLAIM_WAIT_S (a compile of large networks takes minutes), looking every CLAIM_POLL_S; a
# claim older than CLAIM_STALE_S is a dead process's whatever its id says (ids are reused).
CLAIM_WAIT_S = 1200.0
CLAIM_POLL_S = 0.1
CLAIM_STALE_S = 3600.0
# Backends whose compilation takes long enough that a second process for the second graph of a
# cold compile pays for its start-up (about 3 s of imports and building here).
SECOND_PROCESS_BACKENDS = {"inductor"}
# What does not change the traced step: where a run writes, how long it runs, how it
# collects and evaluates, its seed (the key is the same for every seed).
NOT_IN_KEY = {
    "seed", "steps", "warmup", "eval_every", "eval_episodes", "out", "progress", "compile",
    "checkpoint_replay", "actors", "envs_per_actor", "sync_every", "initial_priority",
    "max_env_per_update", "num_envs", "env", *RESUMABLE_OVERRIDES,
}  # fmt: skip


def cache_root() -> Path:
    """$WIDERL_CACHE, else $XDG_CACHE_HOME/widerl, else ~/.cache/widerl."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "widerl"


def use_cache_folder() -> Path:
    """torch's compilation caches under `<cache>/torch`, unless TORCHINDUCTOR_CACHE_DIR is
    set (torch reads it whenever it looks up its caches)."""
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache_root() / "torch"))
    return Path(os.environ["TORCHINDUCTOR_CACHE_DIR"])


def no_guards(entries: list[Any]) -> list[bool]:
    """TorchDynamo's guards for a saved step, none kept: what they would check (the networks,
    the settings, the code) is in the saved step's key, and the arguments in its spec."""
    return [False] * len(entries)


def call_spec(x: Any) -> str:
    """What a compiled graph is specialised on in a step call's arguments: the nesting, the
    tensors' shapes, dtypes and device types, and every other value itself (TD3's actor-step
    flags)."""
    if isinstance(x, torch.Tensor):
        return f"T{tuple(x.shape)}{x.dtype}{x.device.type}"
    if isinstance(x, (list, tuple)):
        return "[" + ",".join(call_spec(y) for y in x) + "]"
    if isinstance(x, dict):
        return "{" + ",".join(f"{k}:{call_spec(v)}" for k, v in sorted(x.items())) + "}"
    return repr(x)


class SavedStep:
    """A learning step (a bound method) compiled ahead of time and kept in `<cache>/steps`
    (the module's "The caches"): one graph per distinct `call_spec` of its arguments, each
    loaded from `<name>-<spec hash>.compiled` when there, else compiled ahead of time with
    `compile_fn(no_guards)` (a torch.compile of the method with that guard filter) and saved
    there. Where torch cannot compile it ahead of time, the step falls back to
    `compile_fn(None)`, torch.compile with its guards, not saved. `events` says of each graph
    whether it was loaded, compiled and saved, or neither (for the run's log); `traces` counts
    TorchDynamo's traces (one per compiled graph, more where it had to start again).

    A graph is compiled under a claim, `<file>.building` holding the process id: a process
    that misses a graph another live process is compiling (the second graph's process of a
    cold compile, another run of the configuration, a warm-up child) waits for that file and
    loads it instead of compiling the same graph at the same time."""

    def __init__(self, method: Callable[..., Any], name: str,
                 compile_fn: Callable[[Callable[..., Any] | None], Any],
                 backend: str = "inductor") -> None:  # fmt: skip
        self.owner = method.__self__  # type: ignore[attr-defined]
        self.name, self.compile_fn, self.backend = name, compile_fn, backend
        self.compiled: Any = None  # the torch.compile object, made on the first miss
        self.fallback: Any = None  # torch.compile with guards, if ever needed
        self.graphs: dict[str, Callable[..., Any]] = {}
        self.events: list[str] = []
        self.traces = 0

    def __call__(self, *args: Any) -> Any:
        spec = call_spec(args)
        graph = self.graphs.get(spec)
        if graph is None:
            graph = self.graphs[spec] = self._graph(spec, args)
        return graph(self.owner, *args)

    def _graph(self, spec: str, args: tuple[Any, ...]) -> Callable[..., Any]:
        folder = cache_root() / "steps"
        path = folder / f"{self.name}-{hashlib.sha256(spec.encode()).hexdigest()[:12]}.compiled"
        seen = _stamp(path)
        graph = self._load(path, "loaded") if seen else None
        if graph is not None:
            return graph
        claim = path.with_name(path.name + ".building")
        waited = take_claim(claim)
        try:
            if waited is not None and _stamp(path) not in (None, seen):
                # another process compiled it meanwhile (a new file, not the one that failed)
                graph = self._load(path, f"loaded, compiled by another process ({waited:.1f} s "
                                         "waited)")  # fmt: skip
                if graph is not None:
                    return graph
            return self._compile(path, args)
        finally:
            if waited is not None:
                claim.unlink(missing_ok=True)

    def prepare(self, *args: Any) -> None:
        """The graph of a call with these arguments, loaded or compiled now, not run."""
        spec = call_spec(args)
        if spec not in self.graphs:
            self.graphs[spec] = self._graph(spec, args)

    def _load(self, path: Path, event: str) -> Callable[..., Any] | None:
        try:
            with path.open("rb") as f:
                graph = torch.compiler.load_compiled_function(f)
            graph.disable_guard_check()  # none were kept (no_guards)
            self.events.append(event)
            with contextlib.suppress(OSError):
                os.utime(path)  # recently used: pruning keeps it
            return graph
        except Exception as e:  # damaged, half written, another Python or torch
            self.events.append(f"{path.name} did not load ({type(e).__name__}), compiled")
            return None

    def _compile(self, path: Path, args: tuple[Any, ...]) -> Callable[..., Any]:
        folder = path.parent
        if self.compiled is None:
            self.compiled = self.compile_fn(no_guards)
        try:
            graph = self._aot_compile(args)
        except Exception as e:  # what torch cannot capture or serialize ahead of time
            if self.fallback is None:
                self.fallback = self.compile_fn(None)
            self.events.append(f"not saved: torch.compile with guards ({type(e).__name__})")
            return lambda owner, *a: self.fallback(*a)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            graph.save_compiled_function(str(path))  # written whole, then renamed
            _prune(folder)
            self.events.append("compiled and saved")
        except Exception as e:  # a full or read-only disk costs the next run, never this one
            self.events.append(f"compiled, not saved ({type(e).__name__}: {e})")
        graph.disable_guard_check()
        return graph

    def _aot_compile(self, args: tuple[Any, ...]) -> Any:
        for _ in range(2):
            self.traces += 1
            try:
                return self.compiled.aot_compile((args, {}))
            except torch._dynamo.exc.TensorifyScalarRestartAnalysis:
                # TorchDynamo asks to trace again with a float it had kept symbolic now
                # fixed (it remembers which); torch.compile restarts by itself. A 0-d float
                # tensor argument used in an op does this (step.LearnStep.beta has shape [1]).
                continue
        self.traces += 1
        return self.compiled.aot_compile((args, {}))  # a third time, errors raised


class CompiledActing:
    """`Agent.policy` compiled like the learning step (the module's "Acting"): one graph per
    call spec (the collectors' observations and noise, the evaluation's observations), each
    traced with every network in eval mode, so that a call needs neither that switch nor
    TorchDynamo's guards. Where torch cannot compile it ahead of time the agent acts eagerly
    again (a guarded fallback would be traced anew in train mode)."""

    def __init__(self, agent: Any, saved: SavedStep) -> None:
        self.agent, self.saved = agent, saved
        # (obs, noise, noise scale) -> graph, by a key cheaper than call_spec (a few us a call)
        self.graphs: dict[tuple[Any, ...], Callable[..., Any]] = {}

    @staticmethod
    def _key(obs: torch.Tensor, noise: torch.Tensor | None,
             scale: torch.Tensor | None) -> tuple[Any, ...]:  # fmt: skip
        return (obs.shape, obs.dtype, obs.device,
                None if noise is None else (noise.shape, noise.dtype),
                None if scale is None else (scale.shape, scale.dtype))  # fmt: skip

    def prepare(self, *args: Any) -> None:
        """The graph of a call with these arguments (`Agent.policy`'s), loaded or compiled now,
        not run."""
        key = self._key(*args)
        if key in self.graphs:
            return
        with self.agent.evaluating():  # the flags the graph is traced (and kept) with
            self.saved.prepare(*args)
        if self.saved.fallback is not None:
            self.agent.acting_graph = None
        else:
            self.graphs[key] = self.saved.graphs[call_spec(args)]

    def __call__(self, *args: Any) -> torch.Tensor | None:
        """The policy's actions; None where torch refused the graph (the agent acts eagerly)."""
        graph = self.graphs.get(self._key(*args))
        if graph is None:
            self.prepare(*args)
            graph = self.graphs.get(self._key(*args))
            if graph is None:
                return None
        return graph(self.agent, *args)


def _stamp(path: Path) -> tuple[int, int] | None:
    """A file's modification time and size, None when it is not there."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def take_claim(claim: Path) -> float | None:
    """Claim a graph for this process (`claim` created exclusively, the process id in it),
    first waiting while a live process holds it (at most `CLAIM_WAIT_S`, then it is taken
    over). The seconds waited, or None where no claim can be made (a read-only cache: the
    graph is compiled unclaimed)."""
    t0 = time.monotonic()
    while True:
        try:
            claim.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            if time.monotonic() - t0 < CLAIM_WAIT_S and _held(claim):
                time.sleep(CLAIM_POLL_S)
                continue
            try:
                claim.unlink(missing_ok=True)  # its process ended without releasing it
            except OSError:
                return None
            continue
        except OSError:
            return None
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        return time.monotonic() - t0


def _held(claim: Path) -> bool:
    """Whether a live process (not this one) holds `claim`."""
    try:
        text, age = claim.read_text().strip(), time.time() - claim.stat().st_mtime
    except OSError:
        return False  # released meanwhile
    if age > CLAIM_STALE_S:
        return False
    if not text.isdigit():
        return age < 10  # just created, its process id not yet written
    pid = int(text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    try:  # an ended child not yet waited for is a zombie: kill(pid, 0) still succeeds
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def _prune(folder: Path) -> None:
    """Keep the `KEEP_SAVED` most recently used saved steps."""
    dated = []
    for f in folder.glob("*.compiled"):
        try:
            dated.append((f.stat().st_mtime, f))
        except OSError:
            continue  # another run's pruning removed it
    for _, f in sorted(dated, reverse=True)[KEEP_SAVED:]:
        f.unlink(missing_ok=True)


@functools.cache
def source_fingerprint() -> str:
    """A hash of widerl's own source (every .py file of the package, by content): an edited
    loss or network traces another graph, so its costs must not be read from the entry of the
    code before (torch's caches miss then; the index must not say warm)."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for f in sorted(root.rglob("*.py")):
        h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:12]


def step_key(cfg: Config, dims: dict[str, int], device: torch.device, seeds: int) -> str:
    """What the traced learning step depends on: the configuration's learning fields, the
    networks' input sizes, the device type, the number of stacked seeds, torch's version and
    thread count, the CPU's architecture and vector instructions (a saved step's code is
    built for them: a cache folder shared by a cluster's unlike nodes keeps one per kind),
    and widerl's source (`source_fingerprint`), hashed (12 hex digits)."""
    fields = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in NOT_IN_KEY}
    what = {"cfg": fields, "dims": dims, "device": device.type, "seeds": seeds,
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpu": [platform.machine(), torch.backends.cpu.get_cpu_capability(),
                    onednn.decided()],
            "source": source_fingerprint()}  # fmt: skip
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:12]


class CostIndex:
    """`<cache>/compile-costs.json`: {key: {"device", "cold_s", "warm_s", "eager_ms",
    "compiled_ms"}}. Written whole through a temporary file and a rename, so a reader never
    sees half a file; two runs finishing at once may drop one's entry (a figure, not a
    cache)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or cache_root() / COSTS

    def read(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}  # none yet, or unreadable: start afresh
        return data if isinstance(data, dict) else {}

    def update(self, key: str, **figures: Any) -> None:
        data = self.read()
        data[key] = {**data.get(key, {}), **figures}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
            tmp.replace(self.path)
        except OSError:
            pass  # a read-only or full disk costs the index, never the run


@dataclasses.dataclass(frozen=True)
class Decision:
    compile: bool
    reason: str


def payoff(left: int, eager_ms: float, entry: dict[str, Any] | None, cold_s: float | None,
           per_call: int = 1) -> Decision:  # fmt: skip
    """Compile when `left` updates at the expected saving per update repay the expected
    compilation (the module's rule). `entry`: this key's index entry, if any; `cold_s`: the
    slowest cold compilation on this device type in the index, if any (already scaled to
    `per_call`); `per_call`: updates per call (--utd), which scales the priors' compile
    costs (one graph holds them all)."""
    if entry and entry.get("compiled_ms") and entry.get("eager_ms"):
        compiled_ms = entry["compiled_ms"] * eager_ms / entry["eager_ms"]
        basis = "as measured here before"
    elif entry and entry.get("compiled_ms"):
        compiled_ms, basis = entry["compiled_ms"], "as measured here before"
    else:
        compiled_ms, basis = PRIOR_COMPILED * eager_ms, f"prior {PRIOR_COMPILED:g}x eager"
    if entry and (entry.get("warm_s") is not None or entry.get("cold_s") is not None):
        cost = entry.get("warm_s") if entry.get("warm_s") is not None else PRIOR_WARM_S * per_call
        cache = "cache warm: this configuration compiled here before"
    else:
        cost = cold_s if cold_s is not None else PRIOR_COLD_S * per_call
        cache = "cache cold: never compiled here"
    saves = left * max(eager_ms - compiled_ms, 0.0) / 1e3
    yes = saves > cost
    reason = (
        f"{left:,} updates left x ({eager_ms:.2f} ms eager - {compiled_ms:.2f} ms compiled, "
        f"{basis}) saves ~{saves:.0f} s {'>' if yes else '<='} ~{cost:.0f} s to compile ({cache})"
    )
    return Decision(yes, reason)


class CompileChoice:
    """Carries out --compile for one run's learning step (`learner`, a step.LearnStep):
    times its calls, makes auto's decision once, switches the step to its compiled form, and
    records what compiling cost in the index. `log` takes one line for the run's log."""

    def __init__(self, mode: str, learner: Any, key: str, device: torch.device,
                 log: Callable[[str], None], index: CostIndex | None = None,
                 warm_up: Callable[[], subprocess.Popen | None] | None = None,
                 per_call: int = 1,
                 second_graph: Callable[[int, str], subprocess.Popen] | None = None,
                 ) -> None:  # fmt: skip
        """`warm_up` starts the cache warm-up child for this configuration (None: never);
        `per_call`: the updates most calls run (--utd). The timing windows count updates
        (rounded up to whole calls). `second_graph(at_update, backend)` starts the second
        graph's process of a cold compile (`start_second_graph`; None: never)."""
        self.mode, self.learner, self.key, self.device, self.log = mode, learner, key, device, log
        self.per_call = per_call
        self.warm_up, self.second_graph = warm_up, second_graph
        self.child: subprocess.Popen | None = None
        self.second: subprocess.Popen | None = None  # the second graph's process, if started
        self.second_looked = False  # whether _start_second_graph has run (it runs once)
        self.waiting = False  # for a warm-up child's figures (this run's or another's)
        self.index = index or CostIndex()
        self.entry = self.index.read().get(key) if mode != "off" else None
        self.warm = self.entry is not None and (
            self.entry.get("cold_s") is not None or self.entry.get("warm_s") is not None
        )
        self.calls = 0  # learner calls through this choice (this process)
        self.eager_ms: float | None = None
        self.compiled_at: int | None = 0 if learner.compiled else None  # call index
        if mode != "off":
            learner.save_compiled_as(key)  # a CPU step kept in <cache>/steps (SavedStep)
        self._times: list[tuple[float, int]] = []  # (seconds, updates) per timed call
        if mode == "on":
            self.log(f"compile on: compiled step ({self._cache_state()}, {self._key()})")

    def _key(self) -> str:
        """The configuration key for run.log, on a CPU with which kernels run the products
        (nets/onednn.py; the choice is part of the key)."""
        if self.device.type != "cpu":
            return f"key {self.key}"
        return f"key {self.key}; cpu products: {onednn.describe()}"

    def _cache_state(self) -> str:
        return "cache warm" if self.warm else "cache cold"

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _timing(self) -> bool:
        """Whether this call is timed: auto's eager window, or a compiled step's first calls
        and the compiled window after them."""
        if self.compiled_at is None:
            if self.mode != "auto" or self.eager_ms is not None:
                return False
            skipped = self._calls(EAGER_SKIPPED)
            return skipped <= self.calls < skipped + self._calls(EAGER_TIMED)
        since = self.calls - self.compiled_at
        return since < FIRST_CALLS + self._calls(COMPILED_TIMED) and self.mode != "off"

    def _calls(self, updates: int) -> int:
        """Calls of `per_call` updates that hold `updates` updates."""
        return -(-updates // self.per_call)

    def close(self) -> None:
        """The warm-up child and the second graph's process end with the run (what they
        cached so far stays; a graph claim left by either is a dead process's, not waited
        for)."""
        if self.second is not None:
            _end(self.second)
        self.second = None
        if self.child is not None and _end(self.child):
            (cache_root() / f"warming-{self.key}").unlink(missing_ok=True)  # its claim
        self.child = None

    def _look_again(self, grad_step: int, total_steps: int) -> None:
        """While a warm-up child (this run's or another's) compiles: once the index holds its
        cost, decide again."""
        if not self.waiting or self.calls % WARM_POLL or self.eager_ms is None:
            return
        entry = self.index.read().get(self.key)
        if entry is None or entry.get("cold_s") is None:
            if self.child is not None and self.child.poll() not in (None, 0):
                self.log(f"cache warm-up failed (exit {self.child.returncode}); staying eager")
                self.child, self.waiting = None, False
            elif self.child is None and not (cache_root() / f"warming-{self.key}").exists():
                self.waiting = False  # the other run's child ended without a figure
            return
        if self.child is not None:
            self.child.wait()
        self.child, self.waiting, self.entry, self.warm = None, False, entry, True
        d = payoff(total_steps - grad_step - 1, self.eager_ms, entry, None, self.per_call)
        self.log(f"compile auto: {'on' if d.compile else 'off'} at update {grad_step + 1:,} "
                 f"after the cache warm-up: {d.reason}")  # fmt: skip
        if d.compile:
            self.learner.compile()
            self.compiled_at = self.calls

    def __call__(self, grad_step: int, total_steps: int, n: int = 1) -> dict[str, torch.Tensor]:
        """The learner's updates `grad_step + 1 .. grad_step + n` (one call; step.LearnStep)."""
        self._look_again(grad_step, total_steps)
        if self.compiled_at == self.calls and not self.second_looked:
            self._start_second_graph()
        timing = self._timing()
        if timing:
            self._sync()
            t0 = time.perf_counter()
        metrics = self.learner(grad_step, total_steps, n)
        if timing:
            self._sync()
            self._times.append((time.perf_counter() - t0, n))
        self.calls += 1
        if timing:
            self._after_timed(grad_step + n - 1, total_steps)
        return metrics

    def start(self) -> None:
        """Before the run's first update (after a resume's restore): `--compile on` starts the
        second graph's process now, so it starts and compiles while the run collects its
        warm-up transitions."""
        if self.compiled_at == 0 and self.calls == 0 and not self.second_looked:
            self._start_second_graph()

    def _start_second_graph(self) -> None:
        """Before the first compiled call: where the step has two graphs (TD3's and CrossQ's
        delayed actor step: one of the next updates takes the other graph) and none is saved
        for this configuration, the other compiles in a second process meanwhile (the
        module's rule)."""
        self.second_looked = True
        backend = self.learner.saved_backend()
        if self.second_graph is None or backend not in SECOND_PROCESS_BACKENDS:
            return
        if self.per_call != 1 or usable_cpus() < 2:
            return
        n = self.learner.agent.n_updates
        due = self.learner.actor_steps(n, 64)  # the actor delay's phase of the next updates
        other = next((n + j for j, d in enumerate(due) if d != due[0]), None)
        if other is None or any((cache_root() / "steps").glob(f"{self.key}-step-*.compiled")):
            return
        # The graph with the actor's update holds the other's ops and more: it takes longer
        # to compile (here about 4 s more for TD3 paper-original, 12 s more for CrossQ), so
        # the run compiles it and the second process, which starts about 3 s later, the other.
        try:
            self.second = self.second_graph(other if due[0] else n, backend)
        except OSError as e:  # no process could start (memory, limits): the run compiles both
            self.log(f"cold compile: no second process ({e}); both graphs compile here")
            return
        if not due[0]:
            self.learner.compile_ahead(other)
        self.log("cold compile: one of the step's two graphs compiles in a second process")

    def _after_timed(self, grad_step: int, total_steps: int) -> None:
        """`grad_step`: the last update done is grad_step + 1."""
        if self.compiled_at is None and len(self._times) == self._calls(EAGER_TIMED):
            self.eager_ms = _ms_per_update(self._times)
            self._times = []
            left = total_steps - grad_step - 1
            here = [e for e in self.index.read().values() if e.get("device") == self.device.type]
            # Per update in the graph: one of K updates compiles in about K times a single
            # step's time (SAC 256 x 2 on this CPU: 26 s for one, 130 s for eight).
            cold = [e["cold_s"] / e.get("per_call", 1) for e in here if e.get("cold_s") is not None]
            k = self.per_call
            d = payoff(left, self.eager_ms, self.entry, max(cold) * k if cold else None, k)
            self.log(f"compile auto: {'on' if d.compile else 'off'} at update "
                     f"{grad_step + 1:,}: {d.reason} ({self._key()})")  # fmt: skip
            if d.compile:
                self.learner.compile()
                self.compiled_at = self.calls
            elif (
                self.entry is None
                and self.warm_up is not None
                and worth_warming(left, self.eager_ms)
            ):
                self.child, self.waiting = self.warm_up(), True
                if self.child is not None:
                    self.log("warming the cache in a background process (lowest priority)")
                else:
                    self.log("another run is warming the cache for this configuration")
        elif self.compiled_at is not None and len(self._times) == FIRST_CALLS + self._calls(
            COMPILED_TIMED
        ):
            compiled_ms = _ms_per_update(self._times[FIRST_CALLS:])
            first = self._times[:FIRST_CALLS]
            compile_s = sum(t for t, _ in first) - sum(k for _, k in first) * compiled_ms / 1e3
            self._times = []
            which = "warm_s" if self.warm else "cold_s"
            figures = {"device": self.device.type, "compiled_ms": compiled_ms,
                       which: max(compile_s, 0.0), "per_call": self.per_call}  # fmt: skip
            if self.eager_ms is not None:
                figures["eager_ms"] = self.eager_ms
            self.index.update(self.key, **figures)
            than = f" against {self.eager_ms:.2f} ms eager" if self.eager_ms else ""
            events, acting = self.learner.compile_events(), self.learner.acting_events()
            graphs = f"; graphs: {', '.join(events)}" if events else ""
            graphs += f"; acting: {', '.join(acting)}" if acting else ""
            self.log(f"compiled: {compile_s:.1f} s compiling ({self._cache_state()}), then "
                     f"{compiled_ms:.2f} ms per update{than}{graphs}")  # fmt: skip


def _end(proc: subprocess.Popen) -> bool:
    """Ends a child still running (terminate, then kill after 10 s) and reaps it; whether it
    was still running."""
    if proc.poll() is not None:
        return False
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return True


def _ms_per_update(times: list[tuple[float, int]]) -> float:
    """Milliseconds per update of timed calls `(seconds, updates)`."""
    return 1e3 * sum(t for t, _ in times) / sum(k for _, k in times)


def worth_warming(left: int, eager_ms: float) -> bool:
    """Whether a warm cache would have paid for this run (the module's rule)."""
    return left * eager_ms * (1 - PRIOR_COMPILED) / 1e3 > 2 * PRIOR_WARM_S


def start_warm_up(cfg: Config, seeds: list[int] | None, dims: dict[str, int],
                  device: torch.device, key: str) -> subprocess.Popen | None:  # fmt: skip
    """The cache warm-up child for this configuration (None when another process is warming
    the same key)."""
    claim = cache_root() / f"warming-{key}"
    try:
        claim.parent.mkdir(parents=True, exist_ok=True)
        if claim.exists() and time.time() - claim.stat().st_mtime < 3600:
            return None  # another run's child is at it (or died within the hour)
        claim.write_text(str(os.getpid()))
    except OSError:
        return None
    payload = {"cfg": dataclasses.asdict(cfg), "seeds": seeds, "dims": dims,
               "device": str(device), "key": key, "claim": str(claim)}  # fmt: skip
    return _child(cfg, payload)


def start_second_graph(cfg: Config, seeds: list[int] | None, dims: dict[str, int],
                       device: torch.device, key: str, at_update: int,
                       backend: str) -> subprocess.Popen:  # fmt: skip
    """The second graph's process of a cold compile (the module's rule): the run's learning
    step built on random transitions, compiled with `backend` for the call of update
    `at_update` (agent.n_updates) only, saved in `<cache>/steps`, at the run's priority."""
    payload = {"cfg": dataclasses.asdict(cfg), "seeds": seeds, "dims": dims,
               "device": str(device), "key": key, "at_update": at_update,
               "backend": backend}  # fmt: skip
    return _child(cfg, payload)


def _child(cfg: Config, payload: dict[str, Any]) -> subprocess.Popen:
    threads = cfg.threads or torch.get_num_threads()
    # The run's choice of kernels for the products (part of the key the child saves under),
    # not the child's own timing of them (nets/onednn.py).
    env = {**os.environ, onednn.ENV: onednn.decided()}
    return subprocess.Popen(
        [sys.executable, "-m", "widerl.run.warm_up", json.dumps(payload), str(threads)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
        start_new_session=True,  # a Ctrl-C meant for the run does not reach it mid-write
    )  # fmt: skip


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity where the OS says, else all)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
