"""Run folders: refuse to clobber a finished or running run, write the resolved config, lock
a folder for the lifetime of the run that uses it, record a divergence."""

from __future__ import annotations

import csv
import errno
import fcntl
import json
import os
import shutil
from pathlib import Path

from widerl.config import Config, ConfigError, from_dict, validate
from widerl.record.names import (
    CHECKPOINT,
    CONFIG,
    DIVERGED,
    LOCK,
    METRICS,
    RUN_FILES,
    SEEDS,
    WANDB,
)
from widerl.record.paths import check_writable, os_message

# Temporary files of writes a kill interrupted (checkpoint.save_atomic, RunLogger, _write,
# tracking's wandb.json, widerl export's .policy.<pid>.tmp.<suffix>).
_TEMP_GLOBS = (
    f".{CHECKPOINT}.*.tmp",
    *(f"{n}.tmp" for n in (METRICS, CONFIG, DIVERGED, WANDB)),
    ".policy.*.tmp.*",
)


def holds_run(path: Path) -> bool:
    return any((path / name).exists() for name in RUN_FILES)


class RunLock:
    """An exclusive flock on `run_dir/run.lock`, with the holder's pid written in it, held
    until `release` or the process ends: the kernel drops it on any exit, SIGKILL included, so
    it is never stale. `flag` names the option that chose the folder, for the refusal."""

    def __init__(self, run_dir: Path, flag: str) -> None:
        run_dir = Path(run_dir)
        if run_dir.exists() and not run_dir.is_dir():
            raise ConfigError(f"{flag} {str(run_dir)!r} exists and is not a folder")
        run_dir.mkdir(parents=True, exist_ok=True)
        path = run_dir / LOCK
        # os.open's descriptors are not inherited by child processes (PEP 446), so the lock
        # ends with this process, not with collectors it started.
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise ConfigError(f"{flag} {str(run_dir)!r}: cannot lock {LOCK}: {e}") from None
            raise ConfigError(
                f"{flag} {str(run_dir)!r} is in use by another widerl run (pid {holder}); "
                "wait for it to end or stop it first"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd: int | None = fd

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor drops the flock
            self.fd = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _remove(run_dir: Path, names: tuple[str, ...]) -> None:
    # The checkpoint first and the config last: a kill part-way leaves a folder that
    # `--resume` starts again from its config (no checkpoint: nothing learned).
    order = {CHECKPOINT: 0, CONFIG: 2}
    for name in sorted(names, key=lambda n: order.get(n, 1)):
        p = run_dir / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
    for pattern in _TEMP_GLOBS:
        for p in run_dir.glob(pattern):
            p.unlink()


def remove_temp_files(run_dir: Path) -> None:
    """Temporary files a killed write left behind (call with the folder locked)."""
    _remove(run_dir, ())


def clear_outputs(run_dir: Path) -> None:
    """Everything a run wrote except its config, for a run that starts again from nothing."""
    _remove(run_dir, tuple(n for n in RUN_FILES if n != CONFIG))


def prepare_new(cfg: Config, out: Path, force: bool) -> Path:
    """Check and clear `out` for a new run, then write its config. Call with `out` locked
    (RunLock), so that no running run's files are touched."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {str(out)!r} exists and is not a folder")
    if out.is_dir() and holds_run(out) and not force:
        if not (out / CHECKPOINT).exists():
            raise ConfigError(
                f"--out {str(out)!r} holds a run that stopped before its first checkpoint; "
                f"use --resume {out} to start it with its stored settings or --force to "
                "replace it"
            )
        raise ConfigError(
            f"--out {str(out)!r} already holds a run; use --resume {out} to continue it "
            "or --force to replace it"
        )
    check_writable(out, "--out")  # before --force removes anything
    try:
        if force:
            _remove(out, RUN_FILES)
        remove_temp_files(out)
        write_config(out, cfg)
    except OSError as e:
        raise ConfigError(os_message("--out", out, e)) from None
    return out


def write_divergence(run_dir: Path, record: dict) -> None:
    _write(Path(run_dir) / DIVERGED, json.dumps(record, sort_keys=True) + "\n")


def read_divergence(run_dir: Path) -> dict | None:
    path = Path(run_dir) / DIVERGED
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        record = {}
    return record if isinstance(record, dict) else {}


def write_config(run_dir: Path, cfg: Config, dims: dict[str, int] | None = None) -> None:
    """config.json: every setting, plus the sizes of what the networks see (`dims`)."""
    values = json.loads(cfg.to_json())
    if dims:
        values["dims"] = dims
    _write(run_dir / CONFIG, json.dumps(values, indent=2, sort_keys=True) + "\n")


def _write(path: Path, text: str) -> None:
    """Write-and-rename, so that a kill mid-write never leaves a torn file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def load_config(run_dir: Path, arg: str = "--resume") -> Config:
    """The run's config.json; `arg` names where the folder came from in messages (the flag or
    argument the user typed, e.g. `--resume` or `widerl eval RUN_DIR`)."""
    path = run_dir / CONFIG
    if not run_dir.is_dir():
        what = " (it does not exist)" if not run_dir.exists() else ""
        raise ConfigError(f"{arg} {str(run_dir)!r} is not a folder{what}")
    if path.is_dir():
        raise ConfigError(f"{arg} {str(run_dir)!r}: its {CONFIG} is a folder, not a run's config")
    if not path.is_file() and (run_dir / SEEDS).is_file():
        raise ConfigError(
            f"{arg} {str(run_dir)!r} holds a run of several seeds, one folder each: give one "
            f"seed's folder, e.g. {str(run_dir / 's0')!r}"
        )
    if not path.is_file():
        raise ConfigError(f"{arg} {str(run_dir)!r} holds no run (no {CONFIG})")
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"cannot read {str(path)!r}: {_reason(e)}") from None
    if not isinstance(values, dict):
        raise ConfigError(
            f"cannot read {str(path)!r}: it holds a JSON {type(values).__name__}, not the "
            "object of settings a run writes"
        )
    try:
        cfg = from_dict(values)
        validate(cfg)
    except ConfigError as e:
        raise ConfigError(f"{str(path)!r}: {e} (was it edited by hand?)") from None
    return cfg


def read_rows(run_dir: Path, arg: str) -> tuple[list[str], list[dict[str, str]]]:
    """The columns and rows of the run's metrics.csv (none if it has none yet), checked:
    ConfigError (one line naming the file) when it is a folder, not UTF-8 text, or not a
    table of rows with an integer grad_step, as a hand edit or a damaged copy would leave it."""
    path = Path(run_dir) / METRICS
    if path.is_dir():
        raise ConfigError(f"{arg} {str(run_dir)!r}: its {METRICS} is a folder, not a table")
    if not path.exists():
        return [], []
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            columns = reader.fieldnames or []
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise ConfigError(f"cannot read {str(path)!r}: {_reason(e)}") from None
    if "grad_step" not in columns:
        raise ConfigError(
            f"cannot read {str(path)!r}: it has no grad_step column (is it a widerl "
            "metrics.csv? was it edited by hand?)"
        )
    for i, row in enumerate(rows, start=2):
        step = row.get("grad_step") or ""
        if not step.isdigit():
            raise ConfigError(
                f"cannot read {str(path)!r}: line {i} has grad_step {step!r}, not a count of "
                "updates (was it edited by hand?)"
            )
    return list(columns), rows


def check_continuable(run_dir: Path, arg: str = "--resume") -> None:
    """ConfigError unless the folder's checkpoint can carry on what the folder holds: a
    checkpoint.pt that is no file, or rows in metrics.csv without any checkpoint, would make a
    fresh start delete results (the run restarts from update 0 only when it has none)."""
    path = run_dir / CHECKPOINT
    if path.exists() and not path.is_file():
        raise ConfigError(
            f"{arg} {str(run_dir)!r}: its {CHECKPOINT} is a folder, not a checkpoint; move it "
            "aside or restore the file, then resume"
        )
    _, rows = read_rows(run_dir, arg)
    if not path.exists() and rows:
        raise ConfigError(
            f"{arg} {str(run_dir)!r} holds {len(rows)} rows of {METRICS} (up to update "
            f"{rows[-1]['grad_step']}) but no {CHECKPOINT} to continue them from; restore "
            f"{CHECKPOINT}, or start the run anew with --out {run_dir} --force, which deletes them"
        )


def _reason(e: Exception) -> str:
    """An error reading a text file as one phrase."""
    if isinstance(e, UnicodeDecodeError):
        return f"it is not UTF-8 text (byte {e.start})"
    if isinstance(e, json.JSONDecodeError):
        return f"it is not valid JSON ({e.msg}, line {e.lineno} column {e.colno})"
    if isinstance(e, OSError):
        return e.strerror or str(e)
    return str(e)


# Settings a resumed run may change: how long it runs and where, not what it learns.
RESUMABLE_OVERRIDES = (
    "steps",
    "device",
    "progress",
    "threads",
    "ray_address",
    "collector_wait",
    "wandb",  # where the run reports, not what it learns
    "wandb_entity",
    "wandb_group",
)


def merge_resume(stored: Config, overrides: dict, run_dir: Path) -> Config:
    """The stored config with the few allowed overrides; any other differing flag is an error
    (e.g. resuming a Hopper run with --env Walker2d-v5). Validated, not written: the Trainer
    rewrites config.json once every check has passed."""
    values = json.loads(stored.to_json())
    for key, value in overrides.items():
        if key in RESUMABLE_OVERRIDES:
            values[key] = value
        elif values.get(key) != value:
            flag = "--" + key.replace("_", "-")
            raise ConfigError(
                f"{flag} {value!r} differs from the run in {str(run_dir)!r} "
                f"({values.get(key)!r}); on --resume only "
                f"{', '.join('--' + k.replace('_', '-') for k in RESUMABLE_OVERRIDES)} may change"
            )
    cfg = from_dict(values)
    validate(cfg)
    return cfg
