"""widerl: training larger networks for off-policy deep RL (Ota, Jha & Kanezaki 2021).

The Python API (see README, "Python API"): `Config`, `resolve`, `PRESETS`, `train`,
`load_policy`, `export`. Importing widerl stays light: torch loads with the last three.
"""

from __future__ import annotations

from typing import Any

from widerl.config import PRESETS, Config, ConfigError, resolve

__version__ = "0.2.0"
__all__ = ["PRESETS", "Config", "ConfigError", "export", "load_policy", "resolve", "train"]


def __getattr__(name: str) -> Any:
    if name == "train":
        from widerl.api import train

        return train
    if name == "load_policy":
        from widerl.policy import load_policy

        return load_policy
    if name == "export":  # the function; its module is widerl.exported
        from widerl.exported import export

        return export
    raise AttributeError(f"module 'widerl' has no attribute {name!r}")
