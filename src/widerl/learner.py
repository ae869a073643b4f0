"""One learning step: sample a batch, update the feature learner (OFENet), update the agent
(critics, actor, temperature, targets), write priorities back.

The step is one function. Every random number it needs (the batch's draws, the agents' noise)
is drawn before it from the owners' generators, and every value it reads that changes
between steps is a device tensor, so with --compile torch.compile traces the whole step into
one graph (captured as a CUDA graph on a GPU) that never waits for the host. The same
function runs eagerly otherwise.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

import torch

from widerl.agents.base import Agent, by_seed
from widerl.nets.features import FeatureLearner
from widerl.replay import ReplayBuffer


class LearnStep:
    """`step(grad_step, total_steps) -> metrics` (detached device tensors, one per name)."""

    def __init__(
        self,
        replay: ReplayBuffer,
        features: FeatureLearner,
        agent: Agent,
        batch_size: int,
        compiled: bool | str = False,
    ) -> None:
        self.replay, self.features, self.agent = replay, features, agent
        self.batch_size = batch_size
        self.beta = torch.zeros((), dtype=torch.float64, device=replay.device)
        self.compiled = compiled
        self._fn: Callable[..., dict[str, torch.Tensor]] = self._step
        if compiled:  # True: inductor, what --compile runs; a string: that backend (tests)
            backend = compiled if isinstance(compiled, str) else "inductor"
            self._fn = compile_step(_own_code(self._step), replay.device, backend)

    def __call__(self, grad_step: int, total_steps: int) -> dict[str, torch.Tensor]:
        u = self.replay.draw(self.batch_size)
        self.beta.fill_(self.replay.beta(grad_step / max(total_steps, 1)))
        noise = self.agent.draw_noise(self.batch_size)
        metrics = self._fn(u, self.beta, noise, self.agent.actor_step_due())
        self.agent.n_updates += 1
        return metrics

    def _step(
        self, u: torch.Tensor, beta: torch.Tensor, noise: dict[str, torch.Tensor], actor_step: bool
    ) -> dict[str, torch.Tensor]:
        sampled = self.replay.gather(u, beta)
        batch, _ = by_seed(sampled)
        aux = self.features.update(batch.obs, batch.act, batch.next_obs)
        with torch.no_grad():
            metrics: dict[str, Any] = self.agent._update(batch, noise, actor_step)
        if aux is not None:
            metrics[self.features.metric_name] = aux
        metrics = {k: v[0] for k, v in metrics.items()}  # one seed
        self.replay.update_priorities(sampled.idx, metrics["td_abs"])
        metrics["idx"] = sampled.idx  # which rows were learned from (weight_age)
        return metrics


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
    fn: Callable[..., Any], device: torch.device, backend: str = "inductor"
) -> Callable[..., Any]:
    """torch.compile of a whole learning step as one graph. On CPU, inductor's C++ wrapper
    calls the kernels without a Python call each (measured faster, benchmarks/README.md); on
    CUDA the graph is captured as a CUDA graph ("reduce-overhead"). Another `backend` (e.g.
    "aot_eager": the same capture of the graph, forward and backward, run by eager kernels)
    compiles in seconds instead of a minute: the tests use it for most cases."""
    if backend != "inductor":
        return torch.compile(fn, fullgraph=True, dynamic=False, backend=backend)
    if device.type == "cuda":
        return torch.compile(fn, fullgraph=True, dynamic=False, mode="reduce-overhead")
    return torch.compile(fn, fullgraph=True, dynamic=False, options={"cpp_wrapper": True})
