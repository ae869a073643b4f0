"""What storing each observation once costs in sampling and adding (replay_storage.py).

Both layouts in one process, on the same transitions (a consistent stream of 4 envs with
episode ends, as a run stores them): the ReplayBuffer of this checkout with a run's compact
pool, and the one of git revision --old (next_obs in every slot, loaded from git). Timed:
`gather` of a batch (the sampler's choice included, as LearnStep runs it inside its graph),
uniform and prioritized, and `add` of one env step (the inline source) and of a 400-row chunk
(100 steps of 4 envs, a Ray collector's). Rounds alternate the layouts; medians reported.

    .venv/bin/python benchmarks/replay_gather.py --old 858f504 --capacity 100000
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time
import types

import numpy as np
import torch

from widerl.replay.buffer import ReplayBuffer, compact_reserve, replay_nbytes
from widerl.replay.sumtree import tree_nbytes


def old_replay(rev: str) -> types.ModuleType:
    """widerl's replay.py as of git revision `rev` (the layout with s' in every slot), as a
    module next to the current one (it imports the same sumtree)."""
    src = subprocess.run(["git", "show", f"{rev}:src/widerl/replay.py"], capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    mod = types.ModuleType("widerl._replay_old")
    mod.__package__ = "widerl"
    exec(compile(src, f"{rev}:replay.py", "exec"), mod.__dict__)  # noqa: S102
    return mod


def episodes(obs_dim: int, act_dim: int, n: int, envs: int, seed: int = 0) -> dict:
    """`n` transitions of `envs` envs, step-major, episodes of 20-1000 steps."""
    rng = np.random.default_rng(seed)
    steps = n // envs
    obs = rng.standard_normal((steps + 1, envs, obs_dim), dtype=np.float32)
    nxt = obs[1:].copy()
    ends = rng.random((steps, envs)) < 1 / 200
    final = rng.standard_normal((int(ends.sum()), obs_dim), dtype=np.float32)
    nxt[ends] = final  # the true last observation, not the next reset's
    return {
        "obs": obs[:-1].reshape(-1, obs_dim),
        "act": rng.uniform(-1, 1, (steps * envs, act_dim)).astype(np.float32),
        "rew": rng.standard_normal(steps * envs).astype(np.float32),
        "next_obs": nxt.reshape(-1, obs_dim),
        "term": ends.reshape(-1).astype(np.float32),
    }


def timed(fn, reps: int) -> float:  # noqa: ANN001
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t) / reps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--old", default="858f504", help="git revision of the replaced layout")
    p.add_argument("--obs", type=int, default=348)
    p.add_argument("--act", type=int, default=17)
    p.add_argument("--capacity", type=int, default=100_000)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--reps", type=int, default=300)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    old_mod = old_replay(a.old)
    cap, reserve = a.capacity, compact_reserve(a.capacity)
    data = episodes(a.obs, a.act, cap, envs=4)
    fields = ("obs", "act", "rew", "next_obs", "term")
    bufs = {}
    for prio in (False, True):
        for kind in ("old", "new"):
            if kind == "old":
                rb = old_mod.ReplayBuffer(a.obs, a.act, cap, prioritized=prio, seed=0)
            else:
                rb = ReplayBuffer(a.obs, a.act, cap, prioritized=prio, reserve=reserve, seed=0)
            for i in range(0, cap, 400):
                rb.add(*(data[k][i : i + 400] for k in fields))
            bufs[kind, prio] = rb
    g = torch.Generator().manual_seed(0)
    u = torch.rand(a.batch, dtype=torch.float64, generator=g)
    for prio in (False, True):  # the same batch from both
        x, y = bufs["old", prio].gather(u, 0.4), bufs["new", prio].gather(u, 0.4)
        assert all(torch.equal(v, w) for v, w in zip(x[:5], y[:5], strict=True))

    def adder(rb, rows: int):  # noqa: ANN001, ANN202
        at = [0]

        def run() -> None:
            i = at[0] = (at[0] + rows) % (cap - rows)
            rb.add(*(data[k][i : i + rows] for k in fields))

        return run

    cases = {}
    for prio in (False, True):
        for kind in ("old", "new"):
            name = f"gather {a.batch}, {'prioritized' if prio else 'uniform'}, {kind}"
            cases[name] = (lambda rb=bufs[kind, prio]: rb.gather(u, 0.4), a.reps)
    for rows in (1, 400):
        for kind in ("old", "new"):
            rb = bufs[kind, False]
            cases[f"add {rows} rows, {kind}"] = (
                adder(rb, rows),
                max(a.reps // (rows // 40 + 1), 5),
            )
    times: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(a.rounds):
        for name, (fn, reps) in cases.items():
            times[name].append(timed(fn, reps))
    print(f"obs {a.obs}, act {a.act}, capacity {cap:,}, threads {a.threads}, old = {a.old}")
    for prio in (False, True):
        tree = tree_nbytes(1_000_000) + 4 if prio else 0
        old_b = 1_000_000 * (4 * (2 * a.obs + a.act + 1) + 1) + tree  # the replaced formula
        new_b = replay_nbytes(a.obs, a.act, 1_000_000, prio, compact_reserve(1_000_000))
        kind = "prioritized" if prio else "uniform"
        print(f"replay_nbytes at 1M, {kind}: old {old_b / 1e9:.3f} GB, new {new_b / 1e9:.3f} GB")
    for name, ts in times.items():
        print(f"{name:34s} {statistics.median(ts) * 1e6:9.1f} us")


if __name__ == "__main__":
    main()
