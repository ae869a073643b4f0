"""What skipping the gradient of constant input columns buys (nets/ensemble.py): two learning
steps of one preset in one process, one with the skip and one with every layer's plain
product, timed in alternated rounds so that both see the same load.

    python benchmarks/grad_skip_ab.py --preset paper-S --env Hopper-v5 --compile

Prints each side's matmul GFLOP per step (FlopCounterMode, eager), its steps/s per round,
and the median of the per-round ratios; `--rounds 0` only counts the FLOPs. One thread.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from widerl.agents import make_agent
from widerl.bench.update import random_replay
from widerl.collect.envs import env_dims
from widerl.config import resolve
from widerl.nets.ensemble import EnsembleLinear
from widerl.run.step import LearnStep

SKIP = EnsembleLinear.forward


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="paper-S")
    p.add_argument("--env", default="Hopper-v5")
    p.add_argument("--algo", default="sac")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--steps", type=int, default=10, help="steps per round")
    p.add_argument("--rounds", type=int, default=30, help="0: count the FLOPs only")
    args = p.parse_args()
    torch.set_num_threads(1)
    cfg = resolve({"env": args.env, "algo": args.algo}, args.preset)
    obs_dim, act_dim = env_dims(args.env)
    sides = {"skip": SKIP, "plain": EnsembleLinear.product}
    steps = {}
    for name, forward in sides.items():
        EnsembleLinear.forward = forward  # type: ignore[method-assign]
        agent = make_agent(cfg, obs_dim, act_dim, torch.device("cpu"))
        replay = random_replay(obs_dim, act_dim, 10_000, seed=0)
        eager = LearnStep(replay, agent.features, agent, cfg.batch_size)
        with FlopCounterMode(display=False) as flops:
            eager(0, 100)
        print(f"{name}: {flops.get_total_flops() / 1e9:.3f} GFLOP per step")
        if not args.rounds:
            continue
        step = LearnStep(replay, agent.features, agent, cfg.batch_size, compiled=args.compile)
        for i in range(3):  # compilation, allocator and caches warm
            step(i, 100)
        steps[name] = step
    rates: dict[str, list[float]] = {name: [] for name in sides}
    for r in range(args.rounds):
        for name in list(sides) if r % 2 == 0 else list(sides)[::-1]:
            EnsembleLinear.forward = sides[name]  # type: ignore[method-assign]
            t0 = time.perf_counter()
            for i in range(args.steps):
                steps[name](i, 100)
            rates[name].append(args.steps / (time.perf_counter() - t0))
    EnsembleLinear.forward = SKIP  # type: ignore[method-assign]
    if not args.rounds:
        return
    ratios = [a / b for a, b in zip(rates["skip"], rates["plain"], strict=True)]
    for name, v in rates.items():
        print(f"{name}: steps/s {' '.join(f'{x:.1f}' for x in v)}")
    kind = "compiled" if args.compile else "eager"
    print(f"{args.preset} {kind}: skip/plain median {statistics.median(ratios):.3f} "
          f"(rounds {min(ratios):.2f}-{max(ratios):.2f})")  # fmt: skip


if __name__ == "__main__":
    main()
