"""Where one learning step's time goes: torch.profiler's table of ATen ops for the eager
`LearnStep` of a preset (sampling, OFENet, agent, priorities), one thread.

    python benchmarks/profile_step.py --preset paper-S --env Hopper-v5 --algo sac

Prints steps/s over `--steps` plain steps, then the profiled table (self CPU time, top rows).
Matmul kernels (bmm, baddbmm) running near the one-thread peak while the other ops take the
rest says the overhead, not the products, is what to cut.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.profiler import ProfilerActivity, profile

from widerl.agents import make_agent
from widerl.bench.update import random_replay
from widerl.collect.envs import env_dims
from widerl.config import resolve
from widerl.run.step import LearnStep


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="paper-S")
    p.add_argument("--env", default="Hopper-v5")
    p.add_argument("--algo", default="sac")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--rows", type=int, default=25)
    args = p.parse_args()
    torch.set_num_threads(1)
    cfg = resolve({"env": args.env, "algo": args.algo}, args.preset)
    obs_dim, act_dim = env_dims(args.env)
    agent = make_agent(cfg, obs_dim, act_dim, torch.device("cpu"))
    replay = random_replay(obs_dim, act_dim, 10_000, seed=0)
    step = LearnStep(replay, agent.features, agent, cfg.batch_size)
    for i in range(5):  # allocator and caches warm
        step(i, args.steps)
    t0 = time.perf_counter()
    for i in range(args.steps):
        step(i, args.steps)
    print(f"eager steps/s: {args.steps / (time.perf_counter() - t0):.2f}")
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for i in range(10):
            step(i, 10)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))


if __name__ == "__main__":
    main()
