"""Learning-curve plots of a run folder (return against gradient steps, as the paper)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from widerl.record.folder import read_rows  # noqa: E402
from widerl.record.names import CURVE  # noqa: E402


def plot_learning_curve(run_dir: Path, title: str) -> Path:
    rows = [r for r in read_rows(Path(run_dir), "plot")[1] if r["eval_return_mean"]]
    fig = learning_curve_figure(rows, title)
    out = Path(run_dir) / CURVE
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def learning_curve_figure(rows: list[dict[str, str]], title: str) -> Figure:
    """Evaluation return (mean, +-1 std band and caps) against gradient steps."""
    steps = [int(r["grad_step"]) for r in rows]
    mean = [float(r["eval_return_mean"]) for r in rows]
    std = [float(r["eval_return_std"] or 0.0) for r in rows]
    lower = [m - s for m, s in zip(mean, std, strict=True)]
    upper = [m + s for m, s in zip(mean, std, strict=True)]
    fig, ax = plt.subplots(figsize=(6, 4.4))
    (line,) = ax.plot(steps, mean, marker="o", markersize=3, label="eval return (mean)")
    color = line.get_color()
    # The band in the line's colour with its edges drawn, and a cap at each evaluation: a std
    # that is small against the return scale (e.g. all episodes alike) stays visible.
    ax.fill_between(steps, lower, upper, color=color, alpha=0.3, linewidth=0)
    ax.plot(steps, lower, color=color, alpha=0.6, linewidth=0.8)
    ax.plot(steps, upper, color=color, alpha=0.6, linewidth=0.8)
    ax.errorbar(
        steps,
        mean,
        yerr=std,
        fmt="none",
        ecolor=color,
        elinewidth=1,
        capsize=3,
        label="+-1 std over episodes",
    )
    ax.set_xlabel("gradient steps")
    ax.set_ylabel("average return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    # Below the axes, never over the curve (a rising curve's bottom is where lower-right
    # legends sit).
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, frameon=False)
    fig.tight_layout()
    return fig
