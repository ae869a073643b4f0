"""`--num-envs N` on a CPU: env steps/s of the learner's collection (the policy's batched
forward pass, the vector env's step, the intake into the replay) against the raw vector
env stepped with random actions, for N envs, rounds alternated in one process.

    python benchmarks/vector_envs.py --env HalfCheetah-v5 --num-envs 1 8 64 --rounds 3 \
        --json benchmarks/results/vector-envs.json

No updates run: this is the collection side of a run, what caps its env steps/s. The policy
is the preset's (paper-original: SAC 256 x 2), acting stochastically as in training.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import widerl
from widerl.collect.envs import make_vec_env
from widerl.run.trainer import Trainer


def raw_rate(env: str, n: int, seconds: float) -> float:
    envs = make_vec_env(env, n)
    rng = np.random.default_rng(0)
    envs.reset(seed=0)
    shape = (n, *envs.single_action_space.shape)
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        envs.step(rng.uniform(-1, 1, shape).astype(np.float32))
        steps += n
    rate = steps / (time.perf_counter() - t0)
    envs.close()
    return rate


def learner_rate(env: str, n: int, preset: str, seconds: float, root: Path) -> float:
    cfg = widerl.resolve({"env": env, "num_envs": n, "threads": 1, "progress": False,
                          "buffer_size": 200_000}, preset)  # fmt: skip
    (root / f"n{n}").mkdir(parents=True, exist_ok=True)
    trainer = Trainer(cfg, root / f"n{n}")
    source = trainer.parts.source
    source.start(trainer.parts.agent, 0, stop=lambda: False)
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        lanes = source.step(0, steps)
        trainer.take(lanes)
        steps += n
    rate = steps / (time.perf_counter() - t0)
    trainer.parts.close()
    return rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--env", default="HalfCheetah-v5")
    ap.add_argument("--preset", default="paper-original")
    ap.add_argument("--num-envs", type=int, nargs="+", default=[1, 8, 64])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    out: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for n in args.num_envs:
                row = out.setdefault(str(n), {"raw": [], "learner": []})
                order = ("raw", "learner") if r % 2 == 0 else ("learner", "raw")
                for which in order:
                    if which == "raw":
                        row["raw"].append(raw_rate(args.env, n, args.seconds))
                    else:
                        row["learner"].append(
                            learner_rate(args.env, n, args.preset, args.seconds, Path(tmp) / str(r))
                        )
    summary = {}
    for n, row in out.items():
        raw, learner = statistics.median(row["raw"]), statistics.median(row["learner"])
        summary[n] = {"raw_env_steps_per_s": round(raw), "learner_env_steps_per_s": round(learner),
                      "ratio": round(learner / raw, 3), "rounds": row}  # fmt: skip
        print(f"N={n:>3}: raw {raw:8.0f} env steps/s, learner {learner:8.0f} "
              f"({learner / raw:.2f} of raw)")  # fmt: skip
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        meta = {"env": args.env, "preset": args.preset, "seconds": args.seconds,
                "torch": torch.__version__}  # fmt: skip
        args.json.write_text(json.dumps({**meta, "by_num_envs": summary}, indent=1) + "\n")


if __name__ == "__main__":
    main()
