"""`widerl experiment NAME`: run every seed of every run of one of the paper's figures."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import click

from widerl.cli.options import count
from widerl.config import INT_LIMIT, ConfigError, resolve
from widerl.experiments.plan import (
    STACK_SEEDS,
    Job,
    PackJob,
    get_experiment,
    pack_jobs,
    parse_envs,
    parse_runs,
    plan,
)
from widerl.experiments.registry import EXPERIMENTS

_LIST = "\n".join(
    f"  {e.name:<17} {e.figure:<16} {len(e.runs) * len(e.envs)} runs: {e.title}"
    for e in EXPERIMENTS.values()
)
_HELP = f"""Run one of the paper's figures or tables (or `scaling`, critic width across the
paper's and newer bodies, or `representation`, OFENet beside raw states, SALE and MR.Q's
encoder): every run x seed as a `widerl train`
subprocess in OUT/NAME/<env>-<run>/s<seed>, at most --jobs at a time. A rerun skips
finished runs and continues interrupted ones from their checkpoints. Ctrl-C stops every
run cleanly (each saves a checkpoint). With --ray-address each run is a task on a Ray
cluster, on whichever node has room, its folder under --storage (a path every node sees).

\b
Experiments (paper defaults: 5 seeds, 1M gradient steps):
{_LIST}
"""


_INT = click.IntRange(max=INT_LIMIT)  # checked to be positive in plan(), with its own words


def parse_train_args(text: str | None) -> dict[str, Any]:
    """--train-args: `widerl train` flags applied to every run, as Config values."""
    if not text:
        return {}
    from widerl.cli.options import train_parser

    try:
        tokens = shlex.split(text)
    except ValueError as e:
        raise ConfigError(f"--train-args {text!r}: {e}") from None
    if {"-h", "--help"} & set(tokens):
        raise ConfigError("--train-args takes `widerl train` flags, not --help")
    try:
        ctx = train_parser().make_context("train", tokens)
    except click.ClickException as e:
        raise ConfigError(f"--train-args {text!r}: {e.format_message()}") from None
    params = dict(ctx.params)
    for name in ("preset", "resume", "force", "seeds"):
        if params.pop(name, None):
            raise ConfigError(f"--train-args may not use --{name}; each run sets its own")
    return {k: v for k, v in params.items() if v is not None}


def check_jobs(jobs: list[Job | PackJob]) -> None:
    """Check each distinct run as `widerl train` would (settings, env sizes, threads, device,
    memory) before any starts, so a bad value stops everything with one line instead of
    failing every child."""
    from widerl.run.preflight import preflight

    seen: set[str] = set()
    for job in jobs:
        if job.run in seen:
            continue
        seen.add(job.run)
        try:
            settings = {**job.settings, "steps": job.steps, "threads": job.threads}
            preflight(resolve(settings, job.preset), job.seeds)
        except ConfigError as e:
            raise ConfigError(f"run {job.run}: {e}") from None


def _fail(message: str) -> None:
    raise ConfigError(message)


def check_placement(
    out: Path | None,
    ray_address: str | None,
    storage: Path | None,
    cpus_per_run: float | None,
    gpus_per_run: float,
) -> Path:
    """The results folder (--out, or --storage on a cluster), after the options that only
    make sense together were checked."""
    if not ray_address:
        for flag, value in (("--storage", storage), ("--cpus-per-run", cpus_per_run)):
            if value is not None:
                _fail(f"{flag} needs --ray-address (it places runs on a Ray cluster)")
        if gpus_per_run:
            _fail("--gpus-per-run needs --ray-address (it places runs on a Ray cluster)")
        return Path("runs") if out is None else out
    if storage is None:
        _fail(
            f"--ray-address {ray_address!r} needs --storage DIR: a folder every node sees at the "
            "same path, for the run folders"
        )
    if out is not None:
        _fail("--out and --storage name the same thing; on a cluster give --storage only")
    if cpus_per_run is not None and not cpus_per_run > 0:
        _fail(f"--cpus-per-run must be positive, got {cpus_per_run:g}")
    if not gpus_per_run >= 0:
        _fail(f"--gpus-per-run must be >= 0, got {gpus_per_run:g}")
    return storage.absolute()


def run_on_cluster(
    jobs: list[Job],
    parallel: int | None,
    address: str,
    storage: Path,
    cpus_per_run: float | None,
    gpus_per_run: float,
) -> Any:
    """Join the cluster, check that a run fits a node and --storage is there on every node,
    then run the jobs as Ray tasks."""
    from widerl.collect.rayinit import check_ray_address, init_ray, shutdown_ray
    from widerl.experiments.ray_runner import check_cluster, run_tasks_on_ray
    from widerl.experiments.runner import run_jobs

    def need(job: Job) -> tuple[float, float]:
        if cpus_per_run is not None:
            return cpus_per_run, gpus_per_run
        cfg = resolve({**job.settings, "steps": job.steps}, job.preset)
        return float(max(job.threads, 1) + cfg.actors), gpus_per_run

    check_ray_address(address)  # before --storage is created
    storage.mkdir(parents=True, exist_ok=True)
    started = init_ray(address, 0)
    try:
        check_cluster(storage, max(need(j)[0] for j in jobs), gpus_per_run)
        return run_jobs(jobs, parallel, dispatch=run_tasks_on_ray, resources=need)
    finally:
        if started:
            shutdown_ray()


@click.command("experiment", help=_HELP)
@click.argument("name")
@click.option("--seeds", type=_INT, default=None, help="Seeds 0..K-1 [default: 5, the paper's].")
@click.option(
    "--steps", type=_INT, default=None, help="Gradient steps per run [default: the paper's, 1M]."
)
@click.option(
    "--jobs",
    type=_INT,
    default=None,
    help="Runs at a time [default: 1; with --ray-address, as many as the cluster holds].",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Results under OUT/NAME [default: runs, the folder `widerl train` writes its runs to "
    "by default].",
)
@click.option(
    "--ray-address",
    default=None,
    help="Run each run as a task on this Ray cluster (auto or HOST:PORT of `ray start "
    "--head`), on whichever node has room; needs --storage.",
)
@click.option(
    "--storage",
    type=click.Path(path_type=Path),
    default=None,
    help="With --ray-address: results under STORAGE/NAME, a folder every node of the cluster "
    "sees at this same path (e.g. NFS).",
)
@click.option(
    "--cpus-per-run",
    type=float,
    default=None,
    help="With --ray-address: CPUs each run asks for [default: --threads, plus one per "
    "collector of a run with --actors].",
)
@click.option(
    "--gpus-per-run",
    type=float,
    default=0.0,
    show_default=True,
    help="With --ray-address: GPUs each run asks for (fractions share a GPU).",
)
@click.option(
    "--envs",
    default=None,
    help="Comma-separated env ids that replace the experiment's tasks (e.g. Hopper-v5).",
)
@click.option(
    "--runs",
    "run_names",
    default=None,
    help="Comma-separated run names or shell patterns that keep only those runs of the "
    "experiment (e.g. 'mlp-256,*-1024'; names as in --dry-run, without the env).",
)
@click.option(
    "--threads",
    type=_INT,
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
@click.option(
    "--seeds-per-process",
    type=count(1),
    default=None,
    help="Train this many seeds of a run in one process (`widerl train --seeds`, networks "
    "stacked), 1 for a process per seed; 1 or at least --seeds [default: "
    f"{'--seeds' if STACK_SEEDS else 1}: on a 2-core CPU stacked seeds measured 1.01-1.28x "
    "separate processes, docs/commands.md, `widerl bench --stacked-seeds`].",
)
@click.option("--dry-run", is_flag=True, help="Print the runs' commands; run nothing.")
@click.pass_context
def experiment_cmd(
    ctx: click.Context,
    name: str,
    seeds: int | None,
    steps: int | None,
    jobs: int | None,
    out: Path | None,
    ray_address: str | None,
    storage: Path | None,
    cpus_per_run: float | None,
    gpus_per_run: float,
    envs: str | None,
    run_names: str | None,
    threads: int,
    train_args: str | None,
    unit_scale: float,
    seeds_per_process: int | None,
    dry_run: bool,
) -> None:
    exp = get_experiment(name)
    if jobs is not None and jobs < 1:
        _fail(f"--jobs must be a positive integer, got {jobs}")
    out = check_placement(out, ray_address, storage, cpus_per_run, gpus_per_run)
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
        runs=parse_runs(run_names),
    )
    n_seeds = seeds or exp.seeds
    n_runs, n_jobs = len(job_list) // n_seeds, len(job_list)
    if seeds_per_process is None:  # the measured default (benchmarks/README.md)
        seeds_per_process = n_seeds if STACK_SEEDS else 1
    job_list = pack_jobs(job_list, seeds_per_process)
    try:
        check_jobs(job_list)
    except ConfigError as e:
        if unit_scale == 1.0:
            raise
        raise ConfigError(f"{e} (the widths times --unit-scale {unit_scale:g})") from None
    packed = f" in {len(job_list)} processes" if len(job_list) < n_jobs else ""
    click.echo(
        f"experiment {exp.name} ({exp.figure}: {exp.title}): {n_runs} runs x "
        f"{n_seeds} seed(s) = {n_jobs} jobs{packed}, {job_list[0].steps} gradient steps "
        f"each, in {out / exp.name}"
    )
    if dry_run:
        for job in job_list:
            state = job.state()
            click.echo(f"[{state}] {job.display(state)}")
        return
    from widerl.experiments.runner import run_jobs
    from widerl.record.paths import check_writable

    if ray_address:
        outcome = run_on_cluster(job_list, jobs, ray_address, out, cpus_per_run, gpus_per_run)
    else:
        check_writable(out / exp.name, "--out")
        outcome = run_jobs(job_list, jobs or 1)
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
