"""Run folders: refuse to clobber a finished or running run, write the resolved config."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from widerl.checkpoint import CHECKPOINT
from widerl.config import Config, ConfigError, from_dict
from widerl.logger import METRICS

CONFIG = "config.json"
# Everything a run writes; --force removes exactly these and nothing else.
RUN_FILES = (CONFIG, METRICS, CHECKPOINT, "learning_curve.png", "tb")


def holds_run(path: Path) -> bool:
    return any((path / name).exists() for name in RUN_FILES)


def prepare_new(cfg: Config, out: Path, force: bool) -> Path:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {str(out)!r} exists and is not a folder")
    if out.is_dir() and holds_run(out):
        if not force:
            raise ConfigError(
                f"--out {str(out)!r} already holds a run; use --resume {out} to continue it "
                "or --force to replace it"
            )
        for name in RUN_FILES:
            p = out / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    out.mkdir(parents=True, exist_ok=True)
    write_config(out, cfg)
    return out


def write_config(run_dir: Path, cfg: Config, dims: dict[str, int] | None = None) -> None:
    """config.json: every setting, plus the sizes of what the networks see (`dims`)."""
    values = json.loads(cfg.to_json())
    if dims:
        values["dims"] = dims
    (run_dir / CONFIG).write_text(json.dumps(values, indent=2, sort_keys=True) + "\n")


def load_config(run_dir: Path) -> Config:
    path = run_dir / CONFIG
    if not path.is_file():
        raise ConfigError(f"--resume {str(run_dir)!r} holds no run (no {CONFIG})")
    try:
        return from_dict(json.loads(path.read_text()))
    except (json.JSONDecodeError, TypeError) as e:
        raise ConfigError(f"cannot read {str(path)!r}: {e}") from None


# Settings a resumed run may change: how long it runs and where, not what it learns.
RESUMABLE_OVERRIDES = ("steps", "device", "progress", "threads", "ray_address", "collector_wait")


def merge_resume(stored: Config, overrides: dict, run_dir: Path) -> Config:
    """The stored config with the few allowed overrides; any other differing flag is an error
    (e.g. resuming a Hopper run with --env Walker2d-v5)."""
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
    write_config(run_dir, cfg)
    return cfg
