"""One learning step: sample a batch, update the feature learner (OFENet), update the agent
(critics, actor, temperature, targets), write priorities back.

The step is one function. Every random number it needs (the batch's draws, the agents' noise)
is drawn before it from the owners' generators, and every value it reads that changes
between steps is a device tensor, so with --compile torch.compile traces the whole step into
one graph (captured as a CUDA graph on a GPU) that never waits for the host. The same
function runs eagerly otherwise.

With --utd K > 1 the K updates of one env step are one call (`LearnStep(..., n=K)`): the
randoms of all K drawn at once, then one function that runs the K steps one after another,
compiled into one graph of K updates. A compiled step then pays its per-call costs (the
guards, the call into the graph; on a GPU the graph replay) once per env step instead of K
times, and inductor plans the K updates' buffers together. Compiling it takes longer, about
K times a single step's compilation.
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Callable, Sequence
from typing import Any

import torch

from widerl.agents.base import Agent
from widerl.collect.sources import acting_inputs
from widerl.nets import onednn
from widerl.nets.features import FeatureLearner
from widerl.replay.buffer import TRANSITION_FIELDS, Batch, ReplayBuffer, Steps
from widerl.run.allocator import keep_freed_memory
from widerl.run.compiling import CompiledActing, SavedStep, use_cache_folder
from widerl.run.evaluate import side_by_side


class LearnStep:
    """`step(grad_step, total_steps) -> metrics` (detached device tensors, one per name).

    With a list of replays (one per seed, the run's seeds stacked along the members
    dimension) each seed's batch comes from its own replay and sampler, the batches are
    stacked `[K, B, ...]` and one update trains every seed; metrics are `[K]` and "idx" the
    rows learned from `[K, B]`. With a single replay they are a single seed's (scalars)."""

    def __init__(
        self,
        replay: ReplayBuffer | Sequence[ReplayBuffer],
        features: FeatureLearner,
        agent: Agent,
        batch_size: int,
        compiled: bool | str = False,
    ) -> None:
        self.single = isinstance(replay, ReplayBuffer)
        self.replays = [replay] if isinstance(replay, ReplayBuffer) else list(replay)
        if len(self.replays) != agent.k:
            raise ValueError(f"{len(self.replays)} replays for an agent of {agent.k} seeds")
        self.replay, self.features, self.agent = self.replays[0], features, agent
        self.batch_size = batch_size
        self.amp = agent.cfg.amp == "bf16"
        # Shape [1], not a 0-d tensor: TorchDynamo traces a step whose 0-d float argument an
        # op uses twice (it first makes the value a symbolic float, then starts again with it
        # a tensor: about 2 s more of a cold compile).
        self.beta = torch.zeros(1, dtype=torch.float64, device=self.replay.device)
        self._betas: dict[int, torch.Tensor] = {}  # n -> [n] betas of a call of n updates
        if self.replay.device.type == "cpu":
            keep_freed_memory()  # the step's temporaries reuse warm pages (allocator.py)
        self._fn: Callable[..., dict[str, torch.Tensor]] = self._step
        self._many_fn: Callable[..., dict[str, torch.Tensor]] = self._steps
        self.compiled: bool | str = False
        self.key: str | None = None  # the configuration key a compiled step is saved under
        self._ahead: int | None = None  # update whose graph the next call compiles first
        self._acting: CompiledActing | None = None  # acting compiled with the next call
        self._acted: CompiledActing | None = None  # and since then
        if compiled:
            self.compile(compiled)

    def compile(self, backend: bool | str = True) -> None:
        """From the next call on, the step torch.compile'd (True: inductor, what --compile
        runs; a string: that backend, e.g. the tests' aot_eager). Eager and compiled steps
        compute the same update (to float rounding), so a run may switch between calls
        (--compile auto, run/compiling.py). With a `key` (`save_compiled_as`) a CPU step is
        compiled ahead of time and kept in widerl's cache (compiling.SavedStep)."""
        self.compiled = backend
        name = backend if isinstance(backend, str) else "inductor"
        device = self.replay.device
        # Both forms; torch compiles each on its first call (a run of --utd K calls the
        # single step only where K updates would cross an evaluation or a reset).
        saved = (None, None) if self.key is None else (f"{self.key}-step", f"{self.key}-steps")
        self._fn = compile_step(_own_code(self._step), device, name, saved_as=saved[0])
        self._many_fn = compile_step(_own_code(self._steps), device, name, saved_as=saved[1])
        # Acting too, where the step is kept whole (a CPU step with a key; run/compiling.py,
        # "Acting"): from the end of the next call on, its graphs prepared then. A CUDA run
        # acts eagerly.
        self.agent.acting_graph, self._acting = None, None
        if self.key is not None and device.type == "cpu":
            policy = compile_step(_own_code(self.agent.policy), device, name,
                                  saved_as=f"{self.key}-act")  # fmt: skip
            if isinstance(policy, SavedStep):
                self._acting = CompiledActing(self.agent, policy)

    def save_compiled_as(self, key: str) -> None:
        """Keep the compiled step in widerl's cache under the configuration key `key`
        (compiling.step_key), from the next compilation on (at once if compiled already: no
        graph is built before the first call)."""
        self.key = key
        if self.compiled:
            self.compile(self.compiled)

    def compile_ahead(self, at_update: int) -> None:
        """The next call first compiles (or loads) the single step's graph of update
        `at_update` (`agent.n_updates`: the actor delay's phase), without running it, then its
        own: compiling.CompileChoice's order for a cold compile in two processes."""
        self._ahead = at_update

    def actor_steps(self, first: int, count: int) -> list[bool]:
        """Whether each of updates `first .. first + count - 1` (as `agent.n_updates` counts
        them) steps the actor: the actor delay's phase, a host-side count."""
        return [self.agent.actor_step_due(m) for m in range(first, first + count)]

    def saved_backend(self) -> str | None:
        """The backend a saved step (compiling.SavedStep) compiles the single step with; None
        when the step is eager or not saved (not on a CPU, no key)."""
        return getattr(self._fn, "backend", None)

    def compile_events(self) -> list[str]:
        """Of each graph of a saved step: loaded from the cache or compiled (run.log)."""
        return [e for f in (self._fn, self._many_fn) for e in getattr(f, "events", [])]

    def acting_events(self) -> list[str]:
        """The same of the compiled acting's graphs (none before the first compiled call, or
        where acting stays eager)."""
        return [] if self._acted is None else list(self._acted.saved.events)

    def __call__(self, grad_step: int, total_steps: int, n: int = 1) -> dict[str, torch.Tensor]:
        """Updates `grad_step + 1 .. grad_step + n` in one call. n = 1: metrics as the class
        says; n > 1: each with a leading `[n]` (update j's at j), what n calls would return."""
        if n > 1:
            return self._many(grad_step, total_steps, n)
        u = [r.draw(self.batch_size) for r in self.replays]  # each seed's own sampler stream
        # Every seed's replay has the same schedule of beta (one config).
        self.beta.fill_(self.replay.beta(grad_step / max(total_steps, 1)))
        noise = self.agent.draw_noise(self.batch_size)
        if self._ahead is not None:
            self._compile_ahead(u, noise)
        metrics = self._fn(u, self.beta, noise, self.agent.actor_step_due())
        self.agent.n_updates += 1
        self._prepare_acting()
        return {k: v[0] for k, v in metrics.items()} if self.single else metrics

    def _prepare_acting(self) -> None:
        """After the first compiled call (so that a cold compile's second process starts
        first): the run's acting graphs, loaded or compiled within that call's time (what
        compiling costs), then the agent acts through them."""
        acting, self._acting = self._acting, None
        if acting is not None:
            self.agent.acting_graph = self._acted = acting  # torch refusing one: None again
            for args in acting_calls(self.agent):
                if self.agent.acting_graph is acting:
                    acting.prepare(*args)

    def _compile_ahead(self, u: list[torch.Tensor], noise: dict[str, torch.Tensor]) -> None:
        # This call's arguments with the other update's actor flag: a graph depends on the
        # arguments' shapes and the flag, not on their values.
        at, self._ahead = self._ahead, None
        prepare = getattr(self._fn, "prepare", None)  # a saved step's (compiling.SavedStep)
        if prepare is not None and at is not None:
            prepare(u, self.beta, noise, self.actor_steps(at, 1)[0])

    def _many(self, grad_step: int, total_steps: int, n: int) -> dict[str, torch.Tensor]:
        # The same draws from the same streams as n single calls (each owner draws from its
        # own generators, so drawing all of one owner's first changes nothing).
        us = [[r.draw(self.batch_size) for r in self.replays] for _ in range(n)]
        if n not in self._betas:
            self._betas[n] = torch.zeros(n, dtype=torch.float64, device=self.replay.device)
        betas = self._betas[n]
        total = max(total_steps, 1)
        for j in range(n):  # fills, as for one update: no host tensor crosses to the device
            betas[j].fill_(self.replay.beta((grad_step + j) / total))
        noises = [self.agent.draw_noise(self.batch_size) for _ in range(n)]
        first = self.agent.n_updates
        metrics = self._many_fn(us, betas, noises, tuple(self.actor_steps(first, n)))
        self.agent.n_updates = first + n
        self._prepare_acting()
        return {k: v[:, 0] for k, v in metrics.items()} if self.single else metrics

    def precision(self) -> contextlib.AbstractContextManager[Any]:
        """--amp bf16: the updates' forward and backward passes under bfloat16 autocast
        (matmuls and the ops autocast lowers; norms, losses and softmaxes stay float32 by
        autocast's own lists). Parameters, gradients, optimizer state and target networks
        stay float32: autocast casts copies for the ops, never the tensors kept."""
        if not self.amp:
            return contextlib.nullcontext()
        return torch.autocast(self.replay.device.type, dtype=torch.bfloat16)

    def _step(
        self,
        u: list[torch.Tensor],
        beta: torch.Tensor,
        noise: dict[str, torch.Tensor],
        actor_step: bool,
    ) -> dict[str, torch.Tensor]:
        sampled = [r.gather(uk, beta) for r, uk in zip(self.replays, u, strict=True)]
        batch = self.agent.scaled(stack_batches(sampled))  # --reward-scaling's divisor
        with self.precision():
            aux = self.features.learn(batch)
            with torch.no_grad():
                metrics: dict[str, Any] = self.agent._update(batch, noise, actor_step)
        if self.amp:  # what leaves the step is float32, as without --amp (sums, priorities)
            metrics = {k: v.float() for k, v in metrics.items()}
            aux = None if aux is None else aux.float()
        if aux is not None:
            metrics[self.features.metric_name] = aux
        for k, (replay, b) in enumerate(zip(self.replays, sampled, strict=True)):
            replay.update_priorities(b.idx, metrics["td_abs"][k])
        metrics["idx"] = batch.idx  # which rows were learned from (weight_age)
        return metrics

    def _steps(
        self,
        us: list[list[torch.Tensor]],
        betas: torch.Tensor,
        noises: list[dict[str, torch.Tensor]],
        actor_steps: tuple[bool, ...],
    ) -> dict[str, torch.Tensor]:
        """`len(actor_steps)` learning steps one after another, their metrics stacked: one
        graph when compiled (the loop unrolls)."""
        out = [self._step(us[j], betas[j], noises[j], actor_steps[j])
               for j in range(len(actor_steps))]  # fmt: skip
        return {k: torch.stack([m[k] for m in out]) for k in out[0]}


def acting_calls(agent: Agent) -> list[tuple[torch.Tensor | None, ...]]:
    """`Agent.policy`'s arguments (zeros) in the shapes of the acting a run does in its own
    process: its collection's (`sources.acting_inputs`) and its evaluation's, one call per
    width of its groups of episodes side by side (`evaluate.side_by_side`), deterministic."""
    cfg, k, device = agent.cfg, agent.k, agent.device
    calls = acting_inputs(cfg, k, agent.obs_dim, agent.act_dim, device)
    for n in sorted(set(side_by_side(cfg.eval_episodes))):
        calls.append((torch.zeros(k, n, agent.obs_dim, device=device), None, None))
    return calls


def stack_batches(batches: Sequence[Batch]) -> Batch:
    """Per-seed batches `[B, ...]` as one `[K, B, ...]` batch (seed k's at k). One seed, the
    common case, gets views: no copy of the batch in every update."""

    def join(xs: list[torch.Tensor]) -> torch.Tensor:
        return xs[0].unsqueeze(0) if len(xs) == 1 else torch.stack(xs)

    weights = [b.weight for b in batches]
    discounts = [b.discount for b in batches]
    seqs = [b.seq for b in batches]
    return Batch(
        *(join([getattr(b, f) for b in batches]) for f in TRANSITION_FIELDS),
        weight=None if weights[0] is None else join(weights),  # type: ignore[arg-type]
        idx=join([b.idx for b in batches]),
        discount=None if discounts[0] is None else join(discounts),  # type: ignore[arg-type]
        seq=None if seqs[0] is None else Steps(*(join(list(f)) for f in zip(*seqs, strict=True))),
    )


def _own_code(method: Callable[..., Any]) -> Callable[..., Any]:
    """The bound method over a copy of its code object. torch.compile keeps its graphs and its
    recompile limit (8) per code object, so without a copy every LearnStep a process builds
    (runs trained one after another, tests, a notebook) would add graphs to the same code and
    the 9th would fail with "hit config.recompile_limit". With a copy each step holds only its
    own graphs, and they go when it does."""
    fn = method.__func__  # type: ignore[attr-defined]
    copy = types.FunctionType(fn.__code__.replace(), fn.__globals__, fn.__name__)
    return types.MethodType(copy, method.__self__)  # type: ignore[attr-defined]


def compile_step(
    fn: Callable[..., Any], device: torch.device, backend: str = "inductor",
    saved_as: str | None = None,
) -> Callable[..., Any]:  # fmt: skip
    """torch.compile of a whole learning step as one graph. On CPU, inductor's C++ wrapper
    calls the kernels without a Python call each (measured faster, benchmarks/README.md); on
    CUDA the graph is captured as a CUDA graph ("reduce-overhead"). Another `backend` (e.g.
    "aot_eager": the same capture of the graph, forward and backward, run by eager kernels)
    compiles in seconds instead of a minute: the tests use it for most cases. `saved_as`: a
    CPU step compiled ahead of time and kept in widerl's cache under that name
    (compiling.SavedStep; a later run loads it instead of tracing it again)."""
    use_cache_folder()  # torch's caches in widerl's cache folder (run/compiling.py)
    if device.type == "cuda" and backend == "inductor":
        return torch.compile(fn, fullgraph=True, dynamic=False, mode="reduce-overhead")
    options: dict[str, Any] = {}
    if backend == "inductor":  # the products through oneDNN where it won (nets/onednn.py)
        options = {"cpp_wrapper": True, **onednn.compile_options()}
    if saved_as is None or device.type != "cpu":
        return torch.compile(fn, fullgraph=True, dynamic=False, backend=backend,
                             options=options or None)  # fmt: skip
    return SavedStep(fn, saved_as, lambda guards: torch.compile(
        fn, fullgraph=True, dynamic=False, backend=backend,
        options={**options, "guard_filter_fn": guards} if guards else options or None,
    ), backend)  # fmt: skip
