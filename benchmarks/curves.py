"""Helpers shared by the benchmark scripts: running `widerl train` as a side-by-side job, a peer
library's deterministic evaluation, and mean +- std over seeds of one metrics.csv column for
groups of run folders."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np


def run_widerl_train(out: Path, *flags: str) -> None:
    """`widerl train --out OUT FLAGS` in a subprocess, one torch thread (runs go two at a
    time on a 2-core machine), replacing an earlier run in OUT, without a progress bar."""
    cmd = [
        sys.executable,
        "-m",
        "widerl.cli",
        "train",
        "--out",
        str(out),
        "--force",
        "--no-progress",
        "--threads",
        "1",
        *flags,
    ]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def peer_returns(model: object, env: object, episodes: int, first_seed: int) -> list[float]:
    """Returns of `episodes` deterministic episodes of an SB3 or sbx `model` on `env`, reset
    with seeds first_seed, first_seed + 1, ... (widerl's evaluations use the same seeds)."""
    returns = []
    for i in range(episodes):
        obs, _ = env.reset(seed=first_seed + i)  # type: ignore[attr-defined]
        done, total = False, 0.0
        while not done:
            action, _ = model.predict(obs, deterministic=True)  # type: ignore[attr-defined]
            obs, r, term, trunc, _ = env.step(action)  # type: ignore[attr-defined]
            total += float(r)
            done = term or trunc
        returns.append(total)
    return returns


def load_column(run: Path, column: str) -> tuple[np.ndarray, np.ndarray]:
    with (run / "metrics.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r.get(column)]
    return (
        np.array([int(r["grad_step"]) for r in rows]),
        np.array([float(r[column]) for r in rows]),
    )


def seed_curves(runs: list[Path], column: str) -> tuple[np.ndarray, np.ndarray]:
    """Steps and a (seeds x points) array, cut to the points every run has."""
    curves = [load_column(r, column) for r in runs]
    n = min(len(c[0]) for c in curves)
    return curves[0][0][:n], np.stack([c[1][:n] for c in curves])


def plot_groups(ax, groups: dict[str, list[Path]], column: str) -> dict[str, np.ndarray]:  # noqa: ANN001
    """One mean line and +-1 std band per group; returns each group's (seeds x points)."""
    out = {}
    for label, runs in groups.items():
        steps, values = seed_curves(runs, column)
        mean, std = values.mean(0), values.std(0)
        ax.plot(steps, mean, label=label)
        ax.fill_between(steps, mean - std, mean + std, alpha=0.2)
        out[label] = values
    ax.set_xlabel("gradient steps")
    ax.grid(alpha=0.3)
    ax.legend()
    return out
