"""SAC paper-S with and without OFENet (issue: OFENet figure), same seeds and budget.

    python benchmarks/ofenet_vs_raw.py --env Hopper-v5 --steps 20000 --out DIR

Runs `widerl train --preset paper-S` (OFENet 8 x 32 = 256 features) and the same with
`--ofenet-units 0`, two runs at a time with one torch thread each, then plots the evaluation
returns and OFENet's auxiliary loss (training and held-out) side by side.
"""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from curves import plot_groups, run_widerl_train  # noqa: E402

VARIANTS = {"paper-S with OFENet": [], "paper-S without OFENet": ["--ofenet-units", "0"]}


def run(env: str, seed: int, steps: int, eval_every: int, extra: list[str], out: Path) -> None:
    run_widerl_train(
        out,
        "--preset",
        "paper-S",
        "--env",
        env,
        "--seed",
        str(seed),
        "--steps",
        str(steps),
        "--eval-every",
        str(eval_every),
        *extra,
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--env", default="Hopper-v5")
    p.add_argument("--steps", type=int, default=20_000)
    p.add_argument("--eval-every", type=int, default=2_000)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args()
    dirs = {
        label: [a.out / ("ofenet" if not extra else "raw") / f"s{s}" for s in a.seeds]
        for label, extra in VARIANTS.items()
    }
    with ThreadPoolExecutor(max_workers=2) as pool:
        jobs = [
            pool.submit(run, a.env, s, a.steps, a.eval_every, extra, d)
            for s_i, s in enumerate(a.seeds)
            for (label, extra) in VARIANTS.items()
            for d in [dirs[label][s_i]]
        ]
        for j in jobs:
            j.result()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    returns = plot_groups(ax1, dirs, "eval_return_mean")
    ax1.set(ylabel="average return", title=f"SAC paper-S, {a.env}, {len(a.seeds)} seeds")
    of = {"training batch": dirs["paper-S with OFENet"]}
    plot_groups(ax2, of, "aux_loss")
    plot_groups(ax2, {"held-out transitions": dirs["paper-S with OFENet"]}, "aux_loss_heldout")
    ax2.set(ylabel="OFENet auxiliary loss (Eq. 1)", yscale="log", title="OFENet L_aux")
    fig.tight_layout()
    fig.savefig(a.out / "ofenet_vs_raw.png", dpi=100)
    summary = {
        k: {
            "final_mean": float(v[:, -1].mean()),
            "final_std": float(v[:, -1].std()),
            "per_seed_final": v[:, -1].round(1).tolist(),
        }
        for k, v in returns.items()
    }
    (a.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2), f"\nplot: {a.out / 'ofenet_vs_raw.png'}")


if __name__ == "__main__":
    main()
