"""Atomic checkpoint writes and safe loads.

A checkpoint is written to a temporary file in the same folder, flushed to disk and then
renamed over the old one, so a run killed at any moment leaves either the previous or the
new checkpoint, never a torn one. Loading uses `torch.load(weights_only=True)`, which only
rebuilds tensors and plain containers: a checkpoint cannot run code when opened.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from widerl.config import ConfigError

CHECKPOINT = "checkpoint.pt"
FORMAT_VERSION = 1


def save_atomic(obj: Any, path: Path) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(run_dir: Path, map_location: str | torch.device = "cpu") -> dict:
    """Load `run_dir/checkpoint.pt`; ConfigError (one line) if missing, unsafe or corrupt."""
    path = Path(run_dir) / CHECKPOINT
    if not path.is_file():
        raise ConfigError(f"no checkpoint in {str(run_dir)!r} (expected {path.name})")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # pickle errors, truncated files, foreign objects
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"cannot load checkpoint {str(path)!r}: {first[:200]}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION:
        raise ConfigError(f"{str(path)!r} is not a widerl checkpoint (format {FORMAT_VERSION})")
    return state
