"""`widerl report DIR... --out OUT`: figures and tables of the paper from run folders."""

from __future__ import annotations

from pathlib import Path

import click

from widerl.cli.options import count


@click.command("report")
@click.argument("dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Folder for report.md.")
@click.option("--force", is_flag=True, help="Write into --out even if it is not empty.")
@click.option(
    "--score",
    type=click.Choice(["final", "max"]),
    default="final",
    show_default=True,
    help="Score of a run in the IQM: its last or its maximum evaluation return.",
)
@click.option(
    "--bootstrap-reps",
    type=count(100),
    default=2000,
    show_default=True,
    help="Bootstrap replicates of the IQM confidence intervals.",
)
@click.option(
    "--bootstrap-seed", type=count(0), default=0, show_default=True, help="Seed of the bootstrap."
)
def report_cmd(
    dirs: tuple[Path, ...],
    out: Path,
    force: bool,
    score: str,
    bootstrap_reps: int,
    bootstrap_seed: int,
) -> None:
    """Group the run folders under DIR... by configuration (seeds pooled) and write
    OUT/report.md: learning curves (mean +- std over seeds), srank curves, heatmaps of grids,
    a Table 1 of highest average returns and IQMs across envs with bootstrap CIs."""
    from widerl.experiments.report import write_report

    page, runs, groups, pending = write_report(
        list(dirs), out, force, score=score, reps=bootstrap_reps, seed=bootstrap_seed
    )
    if pending:
        names = ", ".join(str(p) for p in pending)
        click.echo(f"left out {len(pending)} run(s) without an evaluation yet: {names}")
    click.echo(f"report: {page} ({runs} runs, {groups} configurations)")
