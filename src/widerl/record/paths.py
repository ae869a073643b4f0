"""Output folders the user names: a read-only filesystem or a missing permission becomes one
line naming the path and the reason, before any work is done (torch-free)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from widerl.config import ConfigError


def os_message(flag: str, path: Path, e: OSError) -> str:
    where = e.filename if e.filename is not None else str(path)
    return f"{flag} {str(path)!r}: cannot write {str(where)!r} ({e.strerror or e})"


def check_writable(folder: Path, flag: str) -> None:
    """Create `folder` (and parents) and write and remove a probe file in it; ConfigError
    naming `flag`, the path and the reason when that fails."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".widerl-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ConfigError(os_message(flag, folder, e)) from None
