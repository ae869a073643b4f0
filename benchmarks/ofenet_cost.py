"""Cost of OFENet per learning step: paper-S with and without OFENet, interleaved in one run.

    python benchmarks/ofenet_cost.py --preset paper-S --obs-dim 11 --act-dim 3 --threads 1

One learning step is what the trainer does per gradient update: sample a batch, OFENet's
auxiliary update (when enabled), the agent's update. Both variants share everything else
(replay contents, batch, architecture); rounds alternate which goes first.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch

from widerl.agents import make_agent
from widerl.config import resolve
from widerl.replay.buffer import ReplayBuffer


def make_step(cfg_overrides: dict, preset: str, obs_dim: int, act_dim: int, replay: ReplayBuffer):  # noqa: ANN201
    cfg = resolve(cfg_overrides, preset)
    agent = make_agent(cfg, obs_dim, act_dim, torch.device("cpu"))
    ofenet = agent.features if cfg.ofenet_units else None

    def step() -> None:
        b = replay.sample(cfg.batch_size)
        if ofenet is not None:
            ofenet.update(b.obs, b.act, b.next_obs)
        agent.update(b)

    return step


def timed(step, n: int) -> float:  # noqa: ANN001
    t = time.perf_counter()
    for _ in range(n):
        step()
    return n / (time.perf_counter() - t)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--preset", default="paper-S")
    p.add_argument("--algo", default="sac")
    p.add_argument("--obs-dim", type=int, default=11)
    p.add_argument("--act-dim", type=int, default=3)
    p.add_argument("--updates", type=int, default=100)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    replay = ReplayBuffer(a.obs_dim, a.act_dim, 10_000)
    n = 10_000
    replay.add(
        rng.standard_normal((n, a.obs_dim)),
        rng.uniform(-1, 1, (n, a.act_dim)),
        rng.standard_normal(n),
        rng.standard_normal((n, a.obs_dim)),
        np.zeros(n),
    )
    with_of = make_step({"algo": a.algo}, a.preset, a.obs_dim, a.act_dim, replay)
    without = make_step({"algo": a.algo, "ofenet_units": 0}, a.preset, a.obs_dim, a.act_dim, replay)
    for step in (with_of, without):
        timed(step, 10)
    rates: dict[str, list[float]] = {"with_ofenet": [], "without_ofenet": []}
    for r in range(a.rounds):
        order = [("with_ofenet", with_of), ("without_ofenet", without)]
        for name, step in order if r % 2 == 0 else order[::-1]:
            rates[name].append(timed(step, a.updates))
    ratios = [w / o for w, o in zip(rates["with_ofenet"], rates["without_ofenet"], strict=True)]
    result = {
        "preset": a.preset,
        "algo": a.algo,
        "obs_dim": a.obs_dim,
        "act_dim": a.act_dim,
        "threads": a.threads,
        "updates": a.updates,
        "rounds": a.rounds,
        "with_ofenet_updates_per_s": statistics.median(rates["with_ofenet"]),
        "without_ofenet_updates_per_s": statistics.median(rates["without_ofenet"]),
        "ratio_with_over_without": statistics.median(ratios),
        "per_round": rates,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
