"""The bodies: each a file in this folder, registered as `arch` in config/registries.py
(adding one is that file plus one line there).

A body maps `[E, B, in_dim]` to `[E, B, out_dim]` through `layers` hidden layers of `units`
units (nets/bodies/base.py); for the residual bodies (simba, bronet) `layers` counts blocks
of width `units`.
"""

from __future__ import annotations

from typing import Any

from widerl.config import registries


def body_class(name: str) -> Any:
    return registries.load("arch", name)


def make_body(name: str, members: int, in_dim: int, units: int, layers: int, **kw: Any) -> Any:
    """The body called `name` (see nets/bodies/base.py for the keyword arguments)."""
    return body_class(name)(members, in_dim, units, layers, **kw)
