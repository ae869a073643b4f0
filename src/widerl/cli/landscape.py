"""`widerl landscape DIR`: the critics' TD-loss landscape of a finished run (A.3)."""

from __future__ import annotations

import math
from pathlib import Path

import click

from widerl.cli.options import count
from widerl.config import DEVICES, INT_LIMIT, ConfigError

# A 1001 x 1001 grid is a million loss evaluations, hours on a CPU: finer than any figure needs.
MAX_GRID = 1001


@click.command("landscape")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option(
    "--grid",
    type=click.IntRange(max=INT_LIMIT),
    default=21,
    show_default=True,
    help="Points per axis (at least 3).",
)
@click.option(
    "--span",
    type=float,
    default=1.0,
    show_default=True,
    help="Each axis covers [-span, span] times the filter-normalized direction.",
)
@click.option(
    "--seed",
    type=count(0),
    default=0,
    show_default=True,
    help="Seed of the two random directions (and of SAC's sampled next actions).",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Folder for the outputs [default: the run folder].",
)
@click.option("--force", is_flag=True, help="Replace landscape outputs that already exist.")
@click.option(
    "--device", type=click.Choice(DEVICES), default="cpu", show_default=True, help="Torch device."
)
def landscape_cmd(
    run_dir: Path, grid: int, span: float, seed: int, out: Path | None, force: bool, device: str
) -> None:
    """Plot the TD-loss landscape of a run's critics around the trained weights: both
    critics' loss on the run's stored transitions, targets fixed after training, along two
    filter-normalized random directions (Li et al. 2018; the paper's A.3). Writes
    landscape_contour.png, landscape_surface.png and landscape.csv (alpha,beta,loss)."""
    if grid < 3:
        raise ConfigError(f"--grid {grid} must be at least 3")
    if grid > MAX_GRID:
        raise ConfigError(
            f"--grid {grid} would evaluate the loss at {grid * grid:,} points (each a pass over "
            f"the stored batch); use at most {MAX_GRID}"
        )
    if not (math.isfinite(span) and span > 0):
        raise ConfigError(f"--span {span} must be a positive number")
    if not run_dir.is_dir():
        raise ConfigError(f"widerl landscape RUN_DIR {str(run_dir)!r} is not a folder")
    out = run_dir if out is None else out
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {str(out)!r} exists and is not a folder")

    from widerl.analysis.landscape_plot import OUTPUTS, write_landscape

    existing = [name for name in OUTPUTS if (out / name).exists()]
    if existing and not force:
        raise ConfigError(
            f"{str(out)!r} already holds {', '.join(existing)}; use --force to replace them"
        )

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from widerl.analysis.critic_landscape import critic_landscape
    from widerl.analysis.run import load_run, stored_transitions
    from widerl.record.paths import check_writable
    from widerl.run.device import resolve_device

    dev = resolve_device(device)
    cfg, agent, state = load_run(run_dir, dev, "widerl landscape RUN_DIR")
    batch = stored_transitions(state, run_dir, seed, dev)
    check_writable(out, "--out")  # now, not after the grid has been computed
    progress = Progress(
        "[bold]loss landscape",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    with progress:
        task = progress.add_task("grid", total=grid * grid)
        alphas, betas, losses = critic_landscape(
            agent, batch, span, grid, seed, on_point=lambda: progress.advance(task)
        )
    out.mkdir(parents=True, exist_ok=True)
    title = f"{cfg.algo} {cfg.env} {cfg.arch} {cfg.units}x{cfg.layers}"
    paths = write_landscape(out, alphas, betas, losses, title)
    summary = f"min {float(losses.min()):.4g}, max {float(losses.max()):.4g}"
    if grid % 2:  # an odd grid has the trained weights at its centre
        summary += f", at the trained weights {float(losses[grid // 2, grid // 2]):.4g}"
    click.echo(
        f"TD loss over {batch.obs.shape[0]} transitions, {grid}x{grid} grid, span {span}: {summary}"
    )
    click.echo("landscape: " + "  ".join(str(p) for p in paths))
