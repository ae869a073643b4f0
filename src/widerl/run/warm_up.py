"""The child processes of compilation (run/compiling.py): `python -m widerl.run.warm_up PAYLOAD
THREADS` builds a run's learning step on random transitions and compiles it. The cache warm-up
child of --compile auto compiles it into torch's caches at the lowest CPU priority and records
what compiling cost in the cost index; the second process of a cold compile (a payload with
"at_update") compiles only the graph of that update, at the run's priority, while the run
compiles the step's other graph."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

from widerl.config import Config
from widerl.run.build import build_learning
from widerl.run.compiling import (
    COMPILED_TIMED,
    EAGER_SKIPPED,
    EAGER_TIMED,
    FIRST_CALLS,
    CostIndex,
)


def _learner(payload: dict[str, Any], threads: int) -> tuple[Any, Config, torch.device]:
    """The run's learning step (step.LearnStep) over replays of random transitions."""
    torch.set_num_threads(threads)
    cfg = Config(**payload["cfg"])
    dims, device = payload["dims"], torch.device(payload["device"])
    parts = build_learning(cfg, payload["seeds"], dims["obs_dim"], dims["act_dim"], device)
    g = torch.Generator().manual_seed(0)
    n = max(cfg.batch_size, 1_000)
    for lane in parts.lanes:
        obs, nxt = (
            torch.randn(n, dims["obs_dim"], generator=g),
            torch.randn(n, dims["obs_dim"], generator=g),
        )
        act = torch.rand(n, dims["act_dim"], generator=g) * 2 - 1
        lane.replay.add(obs, act, torch.randn(n, generator=g), nxt, torch.zeros(n))
    return parts.learner, cfg, device


def _second_graph(payload: dict[str, Any], threads: int) -> None:
    """The second graph's process: one call of the step at update `at_update`, compiled ahead
    of time and saved where the run will load it (compiling.SavedStep, under its claim)."""
    learner, _, _ = _learner(payload, threads)
    learner.save_compiled_as(payload["key"])
    learner.compile(payload["backend"])
    learner.agent.n_updates = payload["at_update"]  # the actor delay's phase of that update
    learner(0, 10**6, 1)


def _warm(payload: dict[str, Any], threads: int) -> None:
    """The warm-up child: the run's learning step on random transitions, compiled, its cost
    recorded as this configuration's cold compilation."""
    os.nice(19)
    learner, cfg, device = _learner(payload, threads)
    k = cfg.utd  # the run's calls: --utd updates each

    def timed(calls: int) -> list[float]:
        times = []
        for i in range(calls):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            learner(i * k, 10**6, k)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times.append(time.perf_counter() - t0)
        return times

    def calls(updates: int) -> int:
        return -(-updates // k)

    # Eager and compiled times under the same load: the run scales their ratio by its own
    # eager time (payoff), so a child slowed by the run it shares the CPU with misleads less.
    eager = timed(calls(EAGER_SKIPPED) + calls(EAGER_TIMED))[calls(EAGER_SKIPPED) :]
    learner.save_compiled_as(payload["key"])  # what the run will load (compiling.SavedStep)
    learner.compile()
    times = timed(FIRST_CALLS + calls(COMPILED_TIMED))
    compiled_ms = 1e3 * sum(times[FIRST_CALLS:]) / (len(times[FIRST_CALLS:]) * k)
    cold_s = sum(times[:FIRST_CALLS]) - FIRST_CALLS * k * compiled_ms / 1e3
    CostIndex().update(payload["key"], device=device.type, cold_s=max(cold_s, 0.0),
                       compiled_ms=compiled_ms, eager_ms=1e3 * sum(eager) / (len(eager) * k),
                       per_call=k, warmed_by_child=True)  # fmt: skip


if __name__ == "__main__":
    arguments = json.loads(sys.argv[1])
    if "at_update" in arguments:
        _second_graph(arguments, int(sys.argv[2]))
    else:
        try:
            _warm(arguments, int(sys.argv[2]))
        finally:
            Path(arguments["claim"]).unlink(missing_ok=True)
