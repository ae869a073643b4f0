"""The `widerl` command line: train, eval and summary, and the registration of the others.

`train`'s flags are generated from the `Config` dataclass (config/fields.py), so every setting has
exactly one declaration, one default and one help text. Errors a user can cause print one
line naming the value and what is allowed, and exit with status 2 (no traceback).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from widerl.cli.options import (
    config_options,
    count,
    given_values,
    preset_option,
    train_options,
)
from widerl.config import (
    DEVICES,
    ConfigError,
    resolve,
)
from widerl.errors import CollectorsFailed, Diverged, OutputFailed

if TYPE_CHECKING:
    from widerl.run.signals import StopSignals


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="widerl")
def app() -> None:
    """Training larger networks for off-policy deep RL (Ota, Jha & Kanezaki 2021)."""


@app.command("train")
@train_options
def train_cmd(
    preset: str | None, resume: Path | None, force: bool, seeds: str | None, **kwargs: Any
) -> int:
    """Train SAC, TD3 or CrossQ. --steps counts gradient updates. The run folder (--out) gets
    config.json, metrics.csv, tb/, checkpoint.pt and learning_curve.png; with --seeds each
    seed gets such a folder, --out/s<seed>/."""
    from widerl.run.signals import StopSignals

    # First of all (before torch is imported): from here on SIGINT/SIGTERM only ask the run
    # to stop at a clean point. The run folder's lock is held until the command ends.
    with StopSignals() as stop, contextlib.ExitStack() as held:

        def lock(run_dir: Path, flag: str) -> None:
            from widerl.record.folder import RunLock

            held.enter_context(RunLock(run_dir, flag))

        return _train(preset, resume, force, given_values(kwargs), stop, lock, seeds)


def _train(
    preset: str | None,
    resume: Path | None,
    force: bool,
    given: dict[str, Any],
    stop: StopSignals,
    lock: Callable[[Path, str], None],
    seeds_text: str | None = None,
) -> int:
    """`train` under the caller's StopSignals and lock; the exit status (128 + the signal's
    number when a signal stopped it, as a shell reports it)."""
    import signal

    from widerl import api
    from widerl.record.seeds import parse_seeds

    seeds = None if seeds_text is None else parse_seeds(seeds_text)
    if seeds is not None and "seed" in given:
        raise ConfigError(
            f"--seed {given['seed']} and --seeds {seeds_text} cannot be combined; --seeds N "
            "alone trains seed N"
        )
    if resume is not None:
        if preset is not None:
            raise ConfigError(
                "--preset cannot be combined with --resume (the run keeps its stored config)"
            )
        if seeds is not None:
            raise ConfigError(
                f"--seeds cannot be combined with --resume (--resume {resume} continues the "
                "seeds it holds)"
            )
        if api.is_seeds_run(resume):
            started = api.prepare_resume_seeds(resume, given, lock)
        else:
            started = api.prepare_resume(resume, given, lock)
    else:
        cfg = resolve(given, preset)
        run_dir = api.check_new(cfg) if seeds is None else api.check_new_seeds(cfg, seeds)
        if stop.stop:
            click.echo("stopped before the run started; nothing was written", err=True)
            return 128 + stop.signum
        if seeds is not None:
            started = api.prepare_new_seeds(cfg, run_dir, seeds, force, lock)
        else:
            started = api.prepare_new(cfg, run_dir, force, lock)
    cfg, run_dir, ckpt = started.cfg, started.run_dir, started.checkpoint
    if stop.stop:  # the folder holds a config (and maybe a checkpoint): --resume continues
        first = ckpt[0] if isinstance(ckpt, list) else ckpt
        step = int(first["grad_step"]) if first else 0
        click.echo(
            f"stopped at {step} updates. Continue with: widerl train --resume {run_dir}", err=True
        )
        return 128 + stop.signum
    result = started.trainer().run(resume=ckpt is not None, state=ckpt, stop=stop)
    if result.interrupted or stop.stop:
        click.echo(
            f"stopped at {result.grad_step} updates; checkpoint saved. Continue with: "
            f"widerl train --resume {run_dir}",
            err=True,
        )
        return 128 + (stop.signum or signal.SIGINT)
    if started.seeds is not None:
        from widerl.record.seeds import seed_dir

        lasts = ["n/a" if v is None else f"{v:.1f}" for v in result.last_evals]
        click.echo(
            f"done: {len(started.seeds)} seeds, {result.grad_step} updates and "
            f"{result.env_step} env steps each, last eval returns {' '.join(lasts)}"
        )
        for s in started.seeds:
            click.echo(f"seed {s}: {seed_dir(run_dir, s)}/")
        return 0
    last = "n/a" if result.last_eval is None else f"{result.last_eval:.1f}"
    click.echo(
        f"done: {result.grad_step} updates, {result.env_step} env steps, last eval return {last}"
    )
    click.echo(f"results: {run_dir}/metrics.csv  {run_dir}/checkpoint.pt  {run_dir}/tb/")
    click.echo(f"plot: {result.curve}")
    return 0


@app.command("eval")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--episodes", type=count(1), default=10, show_default=True, help="Episodes to run.")
@click.option(
    "--seed",
    type=count(0),
    default=12345,
    show_default=True,
    help="Seed of the first episode (episode i uses seed + i).",
)
@click.option(
    "--video",
    type=click.Path(path_type=Path),
    default=None,
    help="Write the first episode to this .gif or .mp4.",
)
@click.option(
    "--device", type=click.Choice(DEVICES), default="cpu", show_default=True, help="Torch device."
)
@click.option(
    "--threads",
    type=count(1),
    default=1,
    show_default=True,
    help="Torch CPU threads, at most this machine's CPUs (acting on one observation at a time "
    "is fastest on one).",
)
def eval_cmd(
    run_dir: Path, episodes: int, seed: int, video: Path | None, device: str, threads: int
) -> None:
    """Run a trained run's deterministic policy on a fresh env; print mean and std return."""
    from widerl.run.preflight import check_threads

    check_threads(threads)
    import torch

    from widerl.run.evaluate import evaluate_run

    torch.set_num_threads(threads)

    if video is not None and video.suffix not in (".gif", ".mp4"):
        raise ConfigError(f"--video {str(video)!r} must end in .gif or .mp4")
    if video is not None and video.exists():
        raise ConfigError(f"--video {str(video)!r} already exists; choose a new path")
    if video is not None:
        import os

        from widerl.record.paths import check_writable

        check_writable(video.parent, "--video")  # before the episodes run
        # Headless machines have no window system; EGL renders MuJoCo offscreen.
        os.environ.setdefault("MUJOCO_GL", "egl")
    returns = evaluate_run(run_dir, episodes, seed, video, device)
    click.echo(
        f"return over {episodes} episodes: mean {returns.mean():.2f} std {returns.std():.2f}"
    )
    if video is not None:
        click.echo(f"video: {video}")


_NET_FIELDS = (
    "algo",
    "arch",
    "units",
    "layers",
    "activation",
    "batchnorm",
    "ofenet_units",
    "ofenet_layers",
    "ofenet_target_dim",
    "actor_units",
    "actor_layers",
    "critics",
    "critic_head",
    "atoms",
    "obs_norm",
)


@app.command("summary")
@click.option("--obs-dim", type=count(1), required=True, help="Observation size (Ant-v2: 111).")
@click.option("--act-dim", type=count(1), required=True, help="Action size (Ant-v2: 8).")
@preset_option
@config_options(only=_NET_FIELDS)
def summary_cmd(obs_dim: int, act_dim: int, preset: str | None, **kwargs: Any) -> None:
    """Per-layer input units, output units and parameters of every network a configuration
    builds, laid out like the paper's Table 2."""
    from widerl.analysis.summary import render_summary
    from widerl.run.preflight import check_env_settings

    cfg = resolve(given_values(kwargs), preset)
    check_env_settings(cfg, obs_dim, source="--obs-dim")  # train's checks, where they apply
    click.echo(render_summary(cfg, obs_dim, act_dim), nl=False)


# --- commands defined in their own modules: one import and one add_command each ----------
# (keep this block; add new commands below it)
from widerl.cli.landscape import landscape_cmd  # noqa: E402

app.add_command(landscape_cmd)
from widerl.cli.bench import bench_cmd  # noqa: E402

app.add_command(bench_cmd)
from widerl.cli.report import report_cmd  # noqa: E402

app.add_command(report_cmd)
from widerl.cli.experiment import experiment_cmd  # noqa: E402

app.add_command(experiment_cmd)
from widerl.cli.export import export_cmd  # noqa: E402

app.add_command(export_cmd)


# click >= 8.2 raises this for a group called without a command (8.1 prints help and exits 0).
_NO_ARGS = getattr(click.exceptions, "NoArgsIsHelpError", ())


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors become one line on stderr and exit status 2."""
    try:
        rv = app.main(args=argv, prog_name="widerl", standalone_mode=False)
    except click.exceptions.Exit as e:
        return e.exit_code
    except _NO_ARGS as e:  # bare `widerl`: the whole help, as written, and a usage error's 2
        print(e.ctx.get_help(), file=sys.stderr)
        return 2
    except click.ClickException as e:  # usage errors, bad values, unknown options
        print(f"widerl: error: {e.format_message()}".replace("\n", " "), file=sys.stderr)
        return 2
    except ConfigError as e:
        print(f"widerl: error: {e}", file=sys.stderr)
        return 2
    except (CollectorsFailed, Diverged, OutputFailed) as e:  # not bad input (exit 1), no traceback
        print(f"widerl: error: {e}", file=sys.stderr)
        return 1
    except click.exceptions.Abort:
        print("widerl: aborted", file=sys.stderr)
        return 130
    return rv if isinstance(rv, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
