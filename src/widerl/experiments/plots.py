"""Figures of `widerl report`, drawn as the paper draws them: curves are the mean (line) and
+-1 std (shade) over seeds against gradient steps (Sec. 4, "Experimental settings"); grids are
annotated heatmaps (Fig. 4, 7, 8); IQMs are points with their confidence intervals."""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def short(value: float) -> str:
    """A number for a cell: whole numbers for returns, three digits for small values."""
    if not np.isfinite(value):
        return ""
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


def plot_curves(
    curves: list[tuple[str, np.ndarray, np.ndarray]], ylabel: str, title: str, out: Path
) -> Path:
    """One line per (label, steps, values[seed, step]): mean +- 1 std over seeds."""
    names = [textwrap.fill(f"{label} ({v.shape[0]} seeds)", 90) for label, _, v in curves]
    legend_lines = sum(n.count("\n") + 1 for n in names)
    # The legend goes under the axes: long configuration names would cover the curves.
    fig, ax = plt.subplots(figsize=(7.5, 4.5 + 0.22 * legend_lines), layout="constrained")
    for name, (_, steps, values) in zip(names, curves, strict=True):
        mean, std = values.mean(axis=0), values.std(axis=0)
        (line,) = ax.plot(steps, mean, label=name)
        ax.fill_between(steps, mean - std, mean + std, color=line.get_color(), alpha=0.2)
    ax.set_xlabel("gradient steps")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.legend(loc="outside lower center", fontsize="small", frameon=False)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def plot_heatmap(
    cells: np.ndarray,
    rows: tuple[str, list],
    cols: tuple[str, list],
    title: str,
    out: Path,
) -> Path:
    """cells[i, j] for rows[1][i] x cols[1][j]; NaN cells (not run) stay blank."""
    fig, ax = plt.subplots(figsize=(1.2 * len(cols[1]) + 2.5, 0.8 * len(rows[1]) + 2))
    masked = np.ma.masked_invalid(cells)
    image = ax.imshow(masked, cmap="viridis", aspect="auto", origin="lower")
    fig.colorbar(image, ax=ax, label="average maximum return")
    finite = cells[np.isfinite(cells)]
    middle = (finite.min() + finite.max()) / 2 if finite.size else 0.0
    for i in range(cells.shape[0]):
        for j in range(cells.shape[1]):
            if np.isfinite(cells[i, j]):
                color = "black" if cells[i, j] > middle else "white"
                ax.text(j, i, short(cells[i, j]), ha="center", va="center", color=color)
    ax.set_xticks(range(len(cols[1])), [str(v) for v in cols[1]])
    ax.set_yticks(range(len(rows[1])), [str(v) for v in rows[1]])
    ax.set_xlabel(cols[0])
    ax.set_ylabel(rows[0])
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def plot_intervals(
    labels: list[str], points: list[float], cis: list[tuple[float, float]], xlabel: str, out: Path
) -> Path:
    """One row per label: the point estimate and its confidence interval."""
    names = [textwrap.fill(label, 50) for label in labels]
    height = 0.3 * sum(n.count("\n") + 1 for n in names) + 0.2 * len(names) + 1.5
    fig, ax = plt.subplots(figsize=(8, height), layout="constrained")
    y = np.arange(len(labels))
    lo = [p - c[0] for p, c in zip(points, cis, strict=True)]
    hi = [c[1] - p for p, c in zip(points, cis, strict=True)]
    ax.errorbar(points, y, xerr=[lo, hi], fmt="o", capsize=4)
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.grid(alpha=0.3, axis="x")
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
