"""Atomic checkpoint writes and safe loads.

A checkpoint is written to a temporary file in the same folder, flushed to disk and then
renamed over the old one, so a run killed at any moment leaves either the previous or the
new checkpoint, never a torn one. Loading uses `torch.load(weights_only=True)`, which only
rebuilds tensors and plain containers: a checkpoint cannot run code when opened.
"""

from __future__ import annotations

import os
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

from widerl.config import ConfigError
from widerl.layout import CHECKPOINT

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
        with warnings.catch_warnings():  # torch warns (several lines) about foreign pickles
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # pickle errors, truncated files, foreign objects
        raise ConfigError(
            f"cannot load checkpoint {str(path)!r}: {load_failure(e, path)}"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION:
        raise ConfigError(f"{str(path)!r} is not a widerl checkpoint (format {FORMAT_VERSION})")
    return state


_ZIP_HEAD = b"PK\x03\x04"  # a local file header: torch.save's zip format starts with one
_ZIP_END = b"PK\x05\x06"  # the end-of-central-directory record, within the last 64 KiB + 22
_PICKLE_HEAD = b"\x80"  # the PROTO opcode of pickle protocol 2 and later


def load_failure(e: Exception, path: Path) -> str:
    """Why torch.load failed, as one whole sentence of our own, from the error and the file's
    bytes: torch's messages run over several lines of advice (including to load the file
    unsafely, which we never do) and differ by how the file is broken."""
    # torch 2.6+: "Unsupported global: GLOBAL posix.system was not an allowed global ...";
    # later: "Trying to load unsupported GLOBAL posix.system whose module posix is blocked."
    refused = re.search(r"\bGLOBAL ([\w.]+)", str(e))
    if refused:
        name = refused.group(1).rstrip(".")
        return (
            f"it would load the Python object {name}, which a safe (weights-only) load refuses "
            "because unpickling it could run code; widerl never opens a checkpoint unsafely"
        )
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(4)
            f.seek(max(size - 65_557, 0))
            tail = f.read()
    except OSError as err:
        return f"the file cannot be read ({err.strerror or err})"
    if size == 0:
        return "the file is empty (was it copied or written only in part?)"
    if head == _ZIP_HEAD and _ZIP_END not in tail:
        return (
            "the file is truncated: its torch zip archive has no end record (was it copied or "
            "written only in part?)"
        )
    if head == _ZIP_HEAD:
        return "the torch zip archive in the file is corrupt (a damaged copy?)"
    if head[:1] == _PICKLE_HEAD:
        return (
            "the file is a bare Python pickle (or part of one), not a torch checkpoint, and a "
            "safe (weights-only) load cannot read it"
        )
    return "the file is not a torch checkpoint (neither a torch zip archive nor a pickle)"


def check_fits(expected: dict[str, torch.Tensor], stored: dict[str, Any], where: str) -> None:
    """ConfigError unless `stored` has exactly the tensors of `expected`, with their shapes:
    the checkpoint `where` was written by a run with other settings than its config.json."""
    head = f"{where} does not fit its config.json"
    tail = "the config and the checkpoint do not belong together"
    for name, tensor in expected.items():
        want = tuple(tensor.shape)
        if name not in stored:
            raise ConfigError(
                f"{head}: tensor {name} {want} of the networks config.json describes is not in "
                f"the checkpoint; {tail}"
            )
        have = tuple(getattr(stored[name], "shape", ()))
        if have != want:
            raise ConfigError(
                f"{head}: tensor {name} has shape {have} in the checkpoint but {want} in the "
                f"networks config.json describes; {tail}"
            )
    extra = [k for k in stored if k not in expected]
    if extra:
        more = f" and {len(extra) - 1} more" if len(extra) > 1 else ""
        raise ConfigError(
            f"{head}: the checkpoint holds tensor {extra[0]}{more}, which the networks "
            f"config.json describes do not have; {tail}"
        )
