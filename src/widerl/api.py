"""The Python API: what `widerl train` does, callable from a script or a notebook.

    import widerl
    cfg = widerl.resolve({"env": "Hopper-v5", "steps": 100_000}, preset="paper-S")
    result = widerl.train(cfg, "runs/hopper")            # a new run (RunResult)
    widerl.train(resume="runs/hopper", steps=200_000)     # continue (and extend) it
    policy = widerl.load_policy("runs/hopper")
    action = policy.act(obs)                              # one observation or a batch

Every check of the command line applies (one `ConfigError` naming the value; nothing written
before the settings pass), a run holds the lock on its folder while it trains, and Ctrl-C or
SIGTERM stops it at a clean point with a checkpoint (`RunResult.interrupted`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from widerl.config import Config, ConfigError, default_out
from widerl.signals import StopSignals


@dataclass
class Started:
    """A run folder ready to train in: its settings, the checkpoint to continue from (None
    for a fresh start) and the folder."""

    cfg: Config
    run_dir: Path
    checkpoint: dict | None


def _refuse_unreachable_ray(address: str) -> None:
    """--ray-address where nothing answers: a one-line error within seconds (Ray itself would
    retry for minutes). Nothing to check without an address."""
    if address:
        from widerl.rayinit import check_ray_address

        check_ray_address(address)


def prepare_resume(
    run_dir: Path, given: dict[str, Any], lock: Callable[[Path, str], None]
) -> Started:
    """Check and lock `run_dir` for `--resume` with the overrides `given`."""
    from widerl.checkpoint import load_checkpoint
    from widerl.layout import CHECKPOINT
    from widerl.paths import check_writable
    from widerl.preflight import preflight
    from widerl.rundir import (
        clear_outputs,
        load_config,
        merge_resume,
        read_divergence,
        remove_temp_files,
    )

    stored = load_config(run_dir, "--resume")
    check_writable(run_dir, "--resume")
    lock(run_dir, "--resume")  # before anything in the folder is touched
    diverged = read_divergence(run_dir)
    if diverged is not None:
        what = diverged.get("quantity", "a value")
        when = f" {'by' if diverged.get('by') else 'at'} update {diverged.get('update', '?')}"
        raise ConfigError(
            f"--resume {str(run_dir)!r}: this run diverged ({what} became non-finite{when}); "
            "its last finite checkpoint would only repeat that: start a new run instead "
            "(--force, e.g. with a lower --lr)"
        )
    cfg = merge_resume(stored, given, run_dir)
    preflight(cfg)  # before the checkpoint takes its share of the memory
    _refuse_unreachable_ray(cfg.ray_address)  # before writing
    remove_temp_files(run_dir)
    ckpt = None
    if (run_dir / CHECKPOINT).is_file():
        ckpt = load_checkpoint(run_dir)
        if ckpt.get("env") != stored.env:
            raise ConfigError(
                f"checkpoint in {str(run_dir)!r} is for env {ckpt.get('env')!r}, "
                f"but its config.json says {stored.env!r}"
            )
    # Nothing learned yet (stopped or crashed before its first checkpoint, or a checkpoint
    # from before learning without the warm-up data): start it afresh from its config.
    if ckpt is None or (int(ckpt["grad_step"]) == 0 and ckpt.get("replay") is None):
        clear_outputs(run_dir)
        ckpt = None
    return Started(cfg, run_dir, ckpt)


def check_new(cfg: Config) -> Path:
    """Every check of a new run's settings (env sizes, device, threads, memory, the cluster's
    address); returns its folder. Writes nothing."""
    from widerl.preflight import preflight

    preflight(cfg)  # env sizes, threads, device, memory: before the folder is touched
    run_dir = Path(cfg.out) if cfg.out else default_out(cfg)
    cfg.out = str(run_dir)
    _refuse_unreachable_ray(cfg.ray_address)  # before the run folder is touched
    return run_dir


def prepare_new(
    cfg: Config, run_dir: Path, force: bool, lock: Callable[[Path, str], None]
) -> Started:
    """Lock and prepare `run_dir` for the checked `cfg` (check_new)."""
    from widerl.paths import check_writable
    from widerl.rundir import prepare_new as prepare_folder

    check_writable(run_dir, "--out")  # a read-only filesystem: one line, before the lock
    lock(run_dir, "--out")
    prepare_folder(cfg, run_dir, force)
    return Started(cfg, run_dir, None)


def train(
    cfg: Config | None = None,
    out: str | Path | None = None,
    *,
    resume: str | Path | None = None,
    force: bool = False,
    **overrides: Any,
) -> Any:
    """Train a new run of `cfg` in `out` (default: `cfg.out`, else runs/<env>-...), or with
    `resume=DIR` continue the run there (`overrides` may change what `--resume` allows, e.g.
    steps=...). Returns the run's `train.RunResult`."""
    from widerl.rundir import RunLock
    from widerl.trainer import Trainer

    with StopSignals() as stop, contextlib.ExitStack() as held:

        def lock(run_dir: Path, flag: str) -> None:
            held.enter_context(RunLock(run_dir, flag))

        if resume is not None:
            if cfg is not None:
                raise ConfigError("give either cfg (a new run) or resume=DIR, not both")
            started = prepare_resume(Path(resume), overrides, lock)
        else:
            if cfg is None:
                raise ConfigError("train() needs a Config (widerl.resolve) or resume=DIR")
            if overrides:
                raise ConfigError(f"unknown keyword arguments {sorted(overrides)}; set them in cfg")
            if out is not None:
                cfg.out = str(out)
            started = prepare_new(cfg, check_new(cfg), force, lock)
        trainer = Trainer(started.cfg, started.run_dir)
        return trainer.run(resume=started.checkpoint is not None, state=started.checkpoint,
                           stop=stop)  # fmt: skip
