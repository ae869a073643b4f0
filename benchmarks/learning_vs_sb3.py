"""SAC `paper-original` learning curves, widerl vs Stable-Baselines3, same protocol and seeds.

Both sides: 2 x 256 ReLU MLPs, batch 256, Adam 3e-4, auto entropy, `--warmup` random env steps,
then one env step and one gradient update at a time; every `--eval-every` gradient updates,
`--eval-episodes` deterministic episodes on a separate env (same eval seeds on both sides).
Ours runs through the `widerl train` command; SB3 through its `SAC.learn` with a callback.
Runs go two at a time (ours and SB3 of one seed side by side, one torch thread each), so
machine load hits both alike.

    python benchmarks/learning_vs_sb3.py --env InvertedPendulum-v5 --steps 10000 --out DIR
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from curves import peer_returns, run_widerl_train  # noqa: E402

EVAL_SEED = 10_000


def run_ours(
    env: str, seed: int, steps: int, warmup: int, eval_every: int, episodes: int, out: Path
) -> Path:
    run = out / "widerl" / f"s{seed}"
    run_widerl_train(
        run,
        "--preset",
        "paper-original",
        "--algo",
        "sac",
        "--env",
        env,
        "--seed",
        str(seed),
        "--steps",
        str(steps),
        "--warmup",
        str(warmup),
        "--eval-every",
        str(eval_every),
        "--eval-episodes",
        str(episodes),
    )
    return run / "metrics.csv"


def run_sb3(
    env_id: str, seed: int, steps: int, warmup: int, eval_every: int, episodes: int, out: Path
) -> Path:
    import gymnasium as gym
    import torch
    from stable_baselines3 import SAC
    from stable_baselines3.common.callbacks import BaseCallback

    torch.set_num_threads(1)
    run = out / "sb3" / f"s{seed}"
    run.mkdir(parents=True, exist_ok=True)
    eval_env = gym.make(env_id)
    rows: list[dict] = []
    t0 = time.perf_counter()

    def evaluate(model: SAC, grad_step: int, env_step: int) -> None:
        returns = peer_returns(model, eval_env, episodes, EVAL_SEED)
        rows.append(
            {
                "grad_step": grad_step,
                "env_step": env_step,
                "wall_time": round(time.perf_counter() - t0, 3),
                "eval_return_mean": float(np.mean(returns)),
                "eval_return_std": float(np.std(returns)),
            }
        )

    class EvalEvery(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps < warmup:  # first evaluation once warm-up is done, as ours
                return True
            grad_steps = self.model._n_updates
            if grad_steps % eval_every == 0 and (not rows or rows[-1]["grad_step"] != grad_steps):
                evaluate(self.model, grad_steps, self.num_timesteps)
            return True

    model = SAC(
        "MlpPolicy",
        gym.make(env_id),
        learning_starts=warmup,
        batch_size=256,
        buffer_size=1_000_000,
        learning_rate=3e-4,
        train_freq=1,
        gradient_steps=1,
        policy_kwargs={"net_arch": [256, 256]},
        seed=seed,
        device="cpu",
        verbose=0,
    )
    # SB3 updates after the step that reaches learning_starts; run until `steps` updates.
    model.learn(total_timesteps=warmup + steps + 1, callback=EvalEvery())
    with (run / "metrics.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return run / "metrics.csv"


def summarise(out: Path, env: str, seeds: list[int]) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from curves import plot_groups

    fig, ax = plt.subplots(figsize=(6, 4))
    groups = {
        "widerl SAC": [out / "widerl" / f"s{s}" for s in seeds],
        "Stable-Baselines3 SAC": [out / "sb3" / f"s{s}" for s in seeds],
    }
    curves = plot_groups(ax, groups, "eval_return_mean")
    summary = {}
    for side, label in (("widerl", "widerl SAC"), ("sb3", "Stable-Baselines3 SAC")):
        ret = curves[label]
        summary[side] = {
            "final_mean": float(ret[:, -1].mean()),
            "final_std": float(ret[:, -1].std()),
            "best_mean": float(ret.max(1).mean()),
            "per_seed_final": ret[:, -1].round(1).tolist(),
        }
    ax.set(ylabel="average return", title=f"SAC paper-original, {env}")
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=100)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--env", default="InvertedPendulum-v5")
    p.add_argument("--steps", type=int, default=10_000, help="gradient updates per run")
    p.add_argument("--warmup", type=int, default=10_000)
    p.add_argument("--eval-every", type=int, default=1_000)
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    args = (a.env, a.steps, a.warmup, a.eval_every, a.eval_episodes, a.out)
    t0 = time.time()
    with ProcessPoolExecutor(max_workers=2) as pool:
        futures = []
        for s in a.seeds:  # ours and SB3 of the same seed side by side
            futures.append(pool.submit(run_ours, a.env, s, *args[1:]))
            futures.append(pool.submit(run_sb3, a.env, s, *args[1:]))
        for f in futures:
            f.result()
    print(json.dumps(summarise(a.out, a.env, a.seeds), indent=2))
    print(f"wall time {time.time() - t0:.0f} s; plot: {a.out / 'curves.png'}")


if __name__ == "__main__":
    main()
