"""`widerl bench --distributed`: how many env steps the Ray collectors deliver while the
learner trains, against the raw step rate of the same vectorised envs in the same run.

Each setting runs the real learner (`Trainer`, the same code as `widerl train --actors N`)
for a fixed number of updates in a temporary run folder, and reads its own metrics.csv: env
steps/s and updates/s over the timed stretch after warm-up and OFENet pre-training.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from widerl.collect.envs import make_vec_env
from widerl.config import resolve
from widerl.record.folder import read_rows


def raw_step_rate(env_id: str, num_envs: int, seconds: float, seed: int = 0) -> float:
    """Env steps/s of `num_envs` envs stepped together with random actions, no learning."""
    envs = make_vec_env(env_id, num_envs)
    rng = np.random.default_rng(seed)
    try:
        envs.reset(seed=seed)
        shape = (num_envs, *envs.single_action_space.shape)
        steps, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            envs.step(rng.uniform(-1, 1, shape).astype(np.float32))
            steps += num_envs
        return steps / (time.perf_counter() - t0)
    finally:
        envs.close()


def run_distributed_bench(
    env: str = "Hopper-v5",
    preset: str = "paper-S",
    actors: tuple[int, ...] = (1, 2),
    envs_per_actor: int = 8,
    updates: int = 300,
    raw_seconds: float = 5.0,
    threads: int = 1,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    from widerl.collect.rayinit import init_ray, shutdown_ray
    from widerl.run.trainer import Trainer

    result: dict[str, Any] = {
        "env": env,
        "preset": preset,
        "envs_per_actor": envs_per_actor,
        "updates": updates,
        "raw_env_steps_per_s": raw_step_rate(env, envs_per_actor, raw_seconds),
        "settings": [],
    }
    started = init_ray("", max(actors))
    try:
        for n in actors:
            values = {
                "env": env,
                "actors": n,
                "envs_per_actor": envs_per_actor,
                "steps": updates,
                "eval_every": updates,
                "eval_episodes": 1,
                "warmup": 1_000,
                "ofenet_pretrain": 100,
                "prioritized": True,
                "threads": threads,
                "progress": False,
                **(overrides or {}),
            }
            cfg = resolve(values, preset)
            with tempfile.TemporaryDirectory(prefix="widerl-bench-") as tmp:
                Trainer(cfg, Path(tmp)).run()
                last = read_rows(Path(tmp), "bench")[1][-1]
            eps = float(last["env_steps_per_s"] or 0.0)
            result["settings"].append(
                {
                    "actors": n,
                    "env_steps_per_s": eps,
                    "updates_per_s": float(last["updates_per_s"] or 0.0),
                    "fraction_of_raw": eps / result["raw_env_steps_per_s"],
                    "weight_age": float(last["weight_age"] or 0.0),
                }
            )
    finally:
        if started:
            shutdown_ray()
    return result


def format_distributed(r: dict[str, Any]) -> str:
    lines = [
        f"{r['preset']} learner on {r['env']}, collectors x {r['envs_per_actor']} envs, "
        f"{r['updates']} timed updates",
        f"raw vectorised step rate ({r['envs_per_actor']} envs, random actions): "
        f"{r['raw_env_steps_per_s']:.0f} env steps/s",
    ]
    for s in r["settings"]:
        lines.append(
            f"{s['actors']} collector(s): {s['env_steps_per_s']:.0f} env steps/s "
            f"({s['fraction_of_raw']:.2f} of raw) while learning at "
            f"{s['updates_per_s']:.1f} updates/s; weight age {s['weight_age']:.0f} updates"
        )
    return "\n".join(lines) + "\n"
