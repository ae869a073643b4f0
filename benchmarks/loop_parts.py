"""Where a real run's time goes, per learning step: `widerl.train` of a preset with the
trainer's parts timed (the learning step, the env step with the policy's action, adding to
the replay, each evaluation with its row), past the first evaluation (which holds a compiled
step's compilation). `loop_share` is the part of that timed stretch's wall time spent
outside the learning step: acting, env steps, replay writes, evaluations, rows, the
trainer's own Python.

    python benchmarks/loop_parts.py --preset paper-S --env Hopper-v5 --compile on

Runs one thread, in this process. On this machine the same command's learning step has read
31-43 ms from one run to the next: compare runs side by side, several times.
"""

from __future__ import annotations

import argparse
import collections
import csv
import json
import tempfile
import time
from collections.abc import Callable
from typing import Any

import widerl
from widerl.collect import sources
from widerl.run import trainer
from widerl.run.step import LearnStep

TOTALS: collections.Counter[str] = collections.Counter()
COUNTS: collections.Counter[str] = collections.Counter()
TIMING = [False]  # only past the first evaluation after update 0
SINCE = [0.0]  # when timing began


def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        if TIMING[0]:
            TOTALS[name] += time.perf_counter() - t0
            COUNTS[name] += 1
        return out

    return wrapper


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="paper-S")
    p.add_argument("--env", default="Hopper-v5")
    p.add_argument("--algo", default="sac")
    p.add_argument("--steps", type=int, default=1200)
    p.add_argument("--eval-every", type=int, default=400)
    p.add_argument("--eval-episodes", type=int, default=1)
    p.add_argument("--warmup", type=int, default=1000)
    p.add_argument("--compile", default="on", choices=["on", "off"])
    args = p.parse_args()
    LearnStep.__call__ = timed("learning step", LearnStep.__call__)  # type: ignore[method-assign]
    sources.InlineSource.step = timed("env step + action", sources.InlineSource.step)  # type: ignore[method-assign]
    trainer.Trainer.take = timed("replay add", trainer.Trainer.take)  # type: ignore[method-assign]
    evaluate = trainer.Trainer.evaluate_and_log

    def evaluate_and_log(self: trainer.Trainer, *a: Any, **k: Any) -> None:
        t0 = time.perf_counter()
        evaluate(self, *a, **k)
        if TIMING[0]:
            TOTALS["evaluation + row"] += time.perf_counter() - t0
            COUNTS["evaluation + row"] += 1
        elif self.progress.grad_step > 0:
            TIMING[0], SINCE[0] = True, time.perf_counter()

    trainer.Trainer.evaluate_and_log = evaluate_and_log  # type: ignore[method-assign]
    cfg = widerl.resolve(
        {"env": args.env, "algo": args.algo, "steps": args.steps, "eval_every": args.eval_every,
         "eval_episodes": args.eval_episodes, "warmup": args.warmup, "ofenet_pretrain": 100,
         "threads": 1, "progress": False, "seed": 0, "compile": args.compile},
        args.preset,
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as out:
        widerl.train(cfg, out)
        timed_wall = time.perf_counter() - SINCE[0]
        with open(f"{out}/metrics.csv") as f:
            rows = [float(r["updates_per_s"]) for r in csv.DictReader(f) if r["updates_per_s"]]
    result = {
        "preset": args.preset,
        "env": args.env,
        "compile": args.compile,
        "ms_per_call": {k: 1e3 * TOTALS[k] / COUNTS[k] for k in TOTALS},
        "calls": dict(COUNTS),
        "timed_wall_s": timed_wall,
        "loop_share": 1 - TOTALS["learning step"] / timed_wall,
        "updates_per_s_rows_past_the_first": rows[1:],
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
