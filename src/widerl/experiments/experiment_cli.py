"""`widerl experiment NAME`: run every seed of every run of one of the paper's figures."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import click

from widerl.config import ConfigError, resolve
from widerl.experiments.plan import Job, get_experiment, parse_envs, plan
from widerl.experiments.registry import EXPERIMENTS

_LIST = "\n".join(
    f"  {e.name:<17} {e.figure:<16} {len(e.runs) * len(e.envs)} runs: {e.title}"
    for e in EXPERIMENTS.values()
)
_HELP = f"""Run one of the paper's figures or tables: every run x seed as a `widerl train`
subprocess in OUT/NAME/<env>-<run>/s<seed>, at most --jobs at a time. A rerun skips
finished runs and continues interrupted ones from their checkpoints. Ctrl-C stops every
run cleanly (each saves a checkpoint).

\b
Experiments (paper defaults: 5 seeds, 1M gradient steps):
{_LIST}
"""


def parse_train_args(text: str | None) -> dict[str, Any]:
    """--train-args: `widerl train` flags applied to every run, as Config values."""
    if not text:
        return {}
    from widerl.cli import train_cmd

    try:
        tokens = shlex.split(text)
    except ValueError as e:
        raise ConfigError(f"--train-args {text!r}: {e}") from None
    if {"-h", "--help"} & set(tokens):
        raise ConfigError("--train-args takes `widerl train` flags, not --help")
    try:
        ctx = train_cmd.make_context("train", tokens)
    except click.ClickException as e:
        raise ConfigError(f"--train-args {text!r}: {e.format_message()}") from None
    params = dict(ctx.params)
    for name in ("preset", "resume", "force"):
        if params.pop(name, None):
            raise ConfigError(f"--train-args may not use --{name}; each run sets its own")
    return {k: v for k, v in params.items() if v is not None}


def check_jobs(jobs: list[Job]) -> None:
    """Check each distinct run as `widerl train` would (settings, env sizes, threads, device,
    memory) before any starts, so a bad value stops everything with one line instead of
    failing every child."""
    from widerl.preflight import preflight

    seen: set[str] = set()
    for job in jobs:
        if job.run in seen:
            continue
        seen.add(job.run)
        try:
            preflight(resolve({**job.settings, "steps": job.steps}, job.preset))
        except ConfigError as e:
            raise ConfigError(f"run {job.run}: {e}") from None


def _fail(message: str) -> None:
    raise ConfigError(message)


@click.command("experiment", help=_HELP)
@click.argument("name")
@click.option("--seeds", type=int, default=None, help="Seeds 0..K-1 [default: 5, the paper's].")
@click.option(
    "--steps", type=int, default=None, help="Gradient steps per run [default: the paper's, 1M]."
)
@click.option("--jobs", type=int, default=1, show_default=True, help="Runs at a time.")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("runs"),
    show_default=True,
    help="Results under OUT/NAME (the folder `widerl train` writes its runs to by default).",
)
@click.option(
    "--envs",
    default=None,
    help="Comma-separated env ids that replace the experiment's tasks (e.g. Hopper-v5).",
)
@click.option(
    "--threads",
    type=int,
    default=1,
    show_default=True,
    help="Torch threads per run (keep jobs x threads <= cores).",
)
@click.option(
    "--train-args",
    default=None,
    help="Extra `widerl train` flags for every run, e.g. '--warmup 1000 --eval-episodes 3'.",
)
@click.option(
    "--unit-scale",
    type=float,
    default=1.0,
    show_default=True,
    help="Multiply every network's width (agent and OFENet) by this, e.g. 0.25 turns the "
    "paper's 2048/128 units into 512/32 for a CPU.",
)
@click.option("--dry-run", is_flag=True, help="Print the runs' commands; run nothing.")
@click.pass_context
def experiment_cmd(
    ctx: click.Context,
    name: str,
    seeds: int | None,
    steps: int | None,
    jobs: int,
    out: Path,
    envs: str | None,
    threads: int,
    train_args: str | None,
    unit_scale: float,
    dry_run: bool,
) -> None:
    exp = get_experiment(name)
    if jobs < 1:
        _fail(f"--jobs must be a positive integer, got {jobs}")
    if out.exists() and not out.is_dir():
        _fail(f"--out {str(out)!r} exists and is not a folder")
    job_list = plan(
        exp,
        out,
        seeds=seeds,
        steps=steps,
        envs=parse_envs(envs),
        threads=threads,
        train_overrides=parse_train_args(train_args),
        unit_scale=unit_scale,
    )
    check_jobs(job_list)
    n_runs = len(job_list) // (seeds or exp.seeds)
    click.echo(
        f"experiment {exp.name} ({exp.figure}: {exp.title}): {n_runs} runs x "
        f"{seeds or exp.seeds} seed(s) = {len(job_list)} jobs, {job_list[0].steps} gradient steps "
        f"each, in {out / exp.name}"
    )
    if dry_run:
        for job in job_list:
            state = job.state()
            click.echo(f"[{state}] {job.display(state)}")
        return
    from widerl.experiments.runner import run_jobs
    from widerl.paths import check_writable

    check_writable(out / exp.name, "--out")
    outcome = run_jobs(job_list, jobs)
    click.echo(
        f"{exp.name}: {len(outcome.finished)} finished, {outcome.skipped} skipped (done "
        f"before), {len(outcome.failed)} failed, {len(outcome.stopped)} stopped, "
        f"{outcome.not_started} not started"
    )
    for label, status, log in outcome.failed:
        click.echo(f"failed: {label} (exit {status}); log: {log}")
    click.echo(f"plots: widerl report {out / exp.name} --out {out / (exp.name + '-report')}")
    if outcome.interrupted:
        click.echo("stopped; run the same command again to continue", err=True)
        ctx.exit(130)
    if outcome.failed:
        ctx.exit(1)
