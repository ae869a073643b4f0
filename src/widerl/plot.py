"""Learning-curve plots of a run folder (return against gradient steps, as the paper)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from widerl.logger import read_metrics  # noqa: E402

CURVE = "learning_curve.png"


def plot_learning_curve(run_dir: Path, title: str) -> Path:
    rows = [r for r in read_metrics(Path(run_dir) / "metrics.csv") if r["eval_return_mean"]]
    steps = [int(r["grad_step"]) for r in rows]
    mean = [float(r["eval_return_mean"]) for r in rows]
    std = [float(r["eval_return_std"]) for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(steps, mean, label="eval return (mean)")
    ax.fill_between(
        steps,
        [m - s for m, s in zip(mean, std, strict=True)],
        [m + s for m, s in zip(mean, std, strict=True)],
        alpha=0.25,
        label="+-1 std over episodes",
    )
    ax.set_xlabel("gradient steps")
    ax.set_ylabel("average return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    out = Path(run_dir) / CURVE
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
