"""The Python API: what `widerl train` does, callable from a script or a notebook.

    import widerl
    cfg = widerl.resolve({"env": "Hopper-v5", "steps": 100_000}, preset="paper-S")
    result = widerl.train(cfg, "runs/hopper")            # a new run (RunResult)
    widerl.train(resume="runs/hopper", steps=200_000)     # continue (and extend) it
    widerl.train(cfg, "runs/hopper5", seeds=[0, 1, 2, 3, 4])  # 5 seeds in one process
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
from widerl.run.signals import StopSignals


@dataclass
class Started:
    """A run folder ready to train in: its settings, the checkpoint to continue from (None
    for a fresh start) and the folder. A `--seeds` run has `seeds`, one checkpoint per seed
    and the folder that holds the seeds' folders."""

    cfg: Config
    run_dir: Path
    checkpoint: dict | list[dict] | None
    seeds: list[int] | None = None

    def trainer(self) -> Any:
        from widerl.run.trainer import Trainer

        return Trainer(self.cfg, self.run_dir, seeds=self.seeds)


def _refuse_unreachable_ray(address: str) -> None:
    """--ray-address where nothing answers: a one-line error within seconds (Ray itself would
    retry for minutes). Nothing to check without an address."""
    if address:
        from widerl.collect.rayinit import check_ray_address

        check_ray_address(address)


def prepare_resume(
    run_dir: Path, given: dict[str, Any], lock: Callable[[Path, str], None]
) -> Started:
    """Check and lock `run_dir` for `--resume` with the overrides `given`."""
    from widerl.collect.envs import check_stored_env
    from widerl.record.checkpoint import load_checkpoint
    from widerl.record.folder import (
        check_continuable,
        clear_outputs,
        load_config,
        merge_resume,
        read_divergence,
        remove_temp_files,
    )
    from widerl.record.names import CHECKPOINT
    from widerl.record.paths import check_writable
    from widerl.run.preflight import preflight

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
    check_continuable(run_dir)  # rows without a checkpoint are not a run to start afresh
    check_stored_env(cfg.env, run_dir, "--resume")
    preflight(cfg)  # before the checkpoint takes its share of the memory
    _refuse_unreachable_ray(cfg.ray_address)  # before writing
    ckpt = None
    if (run_dir / CHECKPOINT).is_file():
        ckpt = load_checkpoint(run_dir)
        if ckpt.get("env") != stored.env:
            raise ConfigError(
                f"checkpoint in {str(run_dir)!r} is for env {ckpt.get('env')!r}, "
                f"but its config.json says {stored.env!r}"
            )
        done = int(ckpt["grad_step"])
        if cfg.steps < done:
            raise ConfigError(
                f"--steps {cfg.steps} is below the {done} updates the run in {str(run_dir)!r} "
                f"has done; give --steps {done} or more"
            )
    remove_temp_files(run_dir)
    # Nothing learned yet (stopped or crashed before its first checkpoint, or a checkpoint
    # from before learning without the warm-up data): start it afresh from its config.
    if ckpt is None or (int(ckpt["grad_step"]) == 0 and ckpt.get("replay") is None):
        clear_outputs(run_dir)
        ckpt = None
    return Started(cfg, run_dir, ckpt)


def check_new(cfg: Config) -> Path:
    """Every check of a new run's settings (env sizes, device, threads, memory, the cluster's
    address); returns its folder. Writes nothing."""
    from widerl.run.preflight import preflight

    preflight(cfg)  # env sizes, threads, device, memory: before the folder is touched
    run_dir = Path(cfg.out) if cfg.out else default_out(cfg)
    if is_seeds_run(run_dir):  # even with --force: it replaces a run of its own kind only
        from widerl.record.seeds import read_seeds

        seeds = ",".join(map(str, read_seeds(run_dir) or []))
        raise ConfigError(
            f"--out {str(run_dir)!r} holds a run of seeds {seeds}; a single run needs a folder "
            f"of its own (--force replaces a single run only; to replace the seeds, remove the "
            "folder first)"
        )
    cfg.out = str(run_dir)
    _refuse_unreachable_ray(cfg.ray_address)  # before the run folder is touched
    return run_dir


def prepare_new(
    cfg: Config, run_dir: Path, force: bool, lock: Callable[[Path, str], None]
) -> Started:
    """Lock and prepare `run_dir` for the checked `cfg` (check_new)."""
    from widerl.record.folder import prepare_new as prepare_folder
    from widerl.record.paths import check_writable

    check_writable(run_dir, "--out")  # a read-only filesystem: one line, before the lock
    lock(run_dir, "--out")
    prepare_folder(cfg, run_dir, force)
    return Started(cfg, run_dir, None)


def check_new_seeds(cfg: Config, seeds: list[int]) -> Path:
    """`check_new` for a `--seeds` run (the memory of every seed's replay included); returns
    the folder that holds the seeds' folders. Writes nothing."""
    from widerl.record.seeds import default_seeds_out
    from widerl.run.preflight import preflight

    if cfg.actors and len(seeds) > 1:
        raise ConfigError(
            f"--actors {cfg.actors} with --seeds of {len(seeds)} seeds is not supported yet, "
            "because Ray collectors act for a single agent; use --actors 0 with --seeds, or one "
            "--seed per run with --actors"
        )
    preflight(cfg, len(seeds))
    out = Path(cfg.out) if cfg.out else default_seeds_out(cfg)
    cfg.out = str(out)
    _refuse_unreachable_ray(cfg.ray_address)
    return out


def prepare_new_seeds(
    cfg: Config, out: Path, seeds: list[int], force: bool, lock: Callable[[Path, str], None]
) -> Started:
    """Lock `out` and every seed's folder `out/s<seed>/`, check that none holds a run (unless
    `force`) before anything is written, then write each seed's config and the seed list."""
    import dataclasses

    from widerl.record.folder import holds_run
    from widerl.record.folder import prepare_new as prepare_folder
    from widerl.record.names import CONFIG
    from widerl.record.paths import check_writable
    from widerl.record.seeds import read_seeds, seed_dir, write_seeds

    check_writable(out, "--out")
    lock(out, "--out")
    if (out / CONFIG).is_file():
        raise ConfigError(
            f"--out {str(out)!r} holds a single-seed run; --seeds needs a folder of its own "
            "(it writes s<seed>/ in it per seed)"
        )
    before = read_seeds(out)
    dirs = [seed_dir(out, s) for s in seeds]
    for d in dirs:
        lock(d, "--out")
    if not force:
        if before is not None and before != seeds:
            raise ConfigError(
                f"--out {str(out)!r} already holds a run of seeds "
                f"{','.join(map(str, before))}; use --resume {out} to continue it or --force "
                "to replace it"
            )
        held = [d for d in dirs if holds_run(d)]
        if held:
            raise ConfigError(
                f"--out {str(out)!r} already holds a run of seed {held[0].name[1:]} "
                f"({held[0]}); use --resume {out} to continue it or --force to replace it"
            )
    for s, d in zip(seeds, dirs, strict=True):
        prepare_folder(dataclasses.replace(cfg, seed=s, out=str(d)), d, force)
    write_seeds(out, seeds)
    return Started(cfg, out, None, seeds)


def prepare_resume_seeds(
    out: Path, given: dict[str, Any], lock: Callable[[Path, str], None]
) -> Started:
    """Check and lock a `--seeds` run in `out` and each of its seeds' folders for `--resume`
    (each exactly as a single run's `--resume` checks it); the seeds continue together."""
    import json

    from widerl.record.paths import check_writable
    from widerl.record.seeds import read_seeds, seed_dir

    check_writable(out, "--resume")
    lock(out, "--resume")
    seeds = read_seeds(out)
    if seeds is None:
        raise ConfigError(f"--resume {str(out)!r} holds no run of several seeds")
    started = [prepare_resume(seed_dir(out, s), given, lock) for s in seeds]
    base = json.loads(started[0].cfg.to_json())
    for st in started[1:]:
        other = json.loads(st.cfg.to_json())
        diff = sorted(k for k in base if k not in ("seed", "out") and base[k] != other.get(k))
        if diff:
            raise ConfigError(
                f"--resume {str(out)!r}: {st.run_dir.name}'s --{diff[0].replace('_', '-')} "
                f"differs from {started[0].run_dir.name}'s, so the seeds cannot continue as one "
                "run: resume each seed's folder alone"
            )
    ckpts = [st.checkpoint for st in started]
    fresh = [st.run_dir.name for st, c in zip(started, ckpts, strict=True) if c is None]
    if fresh and len(fresh) < len(started):
        raise ConfigError(
            f"--resume {str(out)!r}: {fresh[0]} has learned nothing yet but the other seeds "
            "have, so they cannot continue as one run: resume each seed's folder alone"
        )
    cfg = started[0].cfg
    cfg.out = str(out)
    return Started(cfg, out, None if fresh else ckpts, seeds)  # type: ignore[arg-type]


def is_seeds_run(folder: Path) -> bool:
    """Whether `folder` holds a `--seeds` run (rather than a single run)."""
    from widerl.record.names import CONFIG, SEEDS

    return (Path(folder) / SEEDS).is_file() and not (Path(folder) / CONFIG).is_file()


def train(
    cfg: Config | None = None,
    out: str | Path | None = None,
    *,
    resume: str | Path | None = None,
    force: bool = False,
    seeds: list[int] | None = None,
    **overrides: Any,
) -> Any:
    """Train a new run of `cfg` in `out` (default: `cfg.out`, else runs/<env>-...), or with
    `resume=DIR` continue the run there (`overrides` may change what `--resume` allows, e.g.
    steps=...). With `seeds`, one agent per seed in one process, each seed's run folder
    `out/s<seed>/` (what `widerl train --seeds` does); `resume=` of such a folder continues
    all its seeds. Returns the run's `trainer.RunResult`."""
    from widerl.record.folder import RunLock

    with StopSignals() as stop, contextlib.ExitStack() as held:

        def lock(run_dir: Path, flag: str) -> None:
            held.enter_context(RunLock(run_dir, flag))

        if resume is not None:
            if cfg is not None or seeds is not None:
                raise ConfigError("give either cfg (a new run) or resume=DIR, not both")
            if is_seeds_run(Path(resume)):
                started = prepare_resume_seeds(Path(resume), overrides, lock)
            else:
                started = prepare_resume(Path(resume), overrides, lock)
        else:
            if cfg is None:
                raise ConfigError("train() needs a Config (widerl.resolve) or resume=DIR")
            if overrides:
                raise ConfigError(f"unknown keyword arguments {sorted(overrides)}; set them in cfg")
            if out is not None:
                cfg.out = str(out)
            if seeds is not None:
                seeds = list(seeds)
                if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
                    raise ConfigError(f"seeds {seeds}: distinct non-negative integers")
                started = prepare_new_seeds(cfg, check_new_seeds(cfg, seeds), seeds, force, lock)
            else:
                started = prepare_new(cfg, check_new(cfg), force, lock)
        return started.trainer().run(
            resume=started.checkpoint is not None, state=started.checkpoint, stop=stop
        )
