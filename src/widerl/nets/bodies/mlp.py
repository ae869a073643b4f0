"""MLP: y_i = f_i(y_{i-1})."""

from __future__ import annotations

import torch

from widerl.nets.bodies.base import Body


class MLP(Body):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x
