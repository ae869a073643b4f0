"""--device as a torch.device."""

from __future__ import annotations

import torch

from widerl.config import ConfigError


def resolve_device(name: str) -> torch.device:
    """auto picks CUDA when available; cuda without a GPU is the user's error (one line)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is available here; use cpu or auto")
    return torch.device(name)
