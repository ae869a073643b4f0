"""The registry of bodies (torch-free, so that config/fields.py can list the names).

A body maps `[E, B, in_dim]` to `[E, B, out_dim]` through `layers` hidden layers of `units`
units (nets/bodies/base.py); for the residual bodies (simba, bronet) `layers` counts blocks
of width `units`. Adding one is a file in this folder plus one line here.
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> "module:class"; the connectivities the paper compares (Sec. 3.3, 4.2) come first.
BODIES: dict[str, str] = {
    "mlp": "widerl.nets.bodies.mlp:MLP",
    "resnet": "widerl.nets.bodies.resnet:ResNet",
    "d2rl": "widerl.nets.bodies.d2rl:D2RL",
    "densenet": "widerl.nets.bodies.densenet:DenseNet",
    # Beyond the paper: residual bodies with LayerNorm (docs/paper.md, "Beyond the paper").
    "simba": "widerl.nets.bodies.simba:SimBa",
    "bronet": "widerl.nets.bodies.bronet:BroNet",
}


def body_class(name: str) -> Any:
    if name not in BODIES:
        raise ValueError(f"unknown arch {name!r}; choose from {', '.join(BODIES)}")
    module, cls = BODIES[name].split(":")
    return getattr(importlib.import_module(module), cls)


def make_body(name: str, members: int, in_dim: int, units: int, layers: int, **kw: Any) -> Any:
    """The body called `name` (see nets/bodies/base.py for the keyword arguments)."""
    return body_class(name)(members, in_dim, units, layers, **kw)
