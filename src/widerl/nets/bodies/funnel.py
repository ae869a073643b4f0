"""MLP-funnel: an MLP whose hidden widths halve layer by layer, units, units/2, units/4, ...
(FastTD3's and FastSAC's actor and critic, Seo et al. 2025: 1024-512-256 critics, 512-256-128
actors)."""

from __future__ import annotations

import torch
from torch import nn

from widerl.nets.bodies.base import Body, Layer


def widths(units: int, layers: int) -> list[int]:
    """The hidden layers' widths: units // 2^i, at least 1."""
    return [max(units >> i, 1) for i in range(layers)]


class Funnel(Body):
    def build_layers(self, activation: str, batchnorm: bool, init: str) -> list[nn.Module]:
        norm = "batchnorm" if batchnorm else None
        outs = widths(self.units, self.n_layers)
        ins = [self.in_dim, *outs[:-1]]
        return [
            Layer(self.members, d, w, activation, norm, init)
            for d, w in zip(ins, outs, strict=True)
        ]

    @staticmethod
    def input_dims(in_dim: int, units: int, layers: int) -> list[int]:
        return [in_dim, *widths(units, layers)[:-1]]

    @staticmethod
    def output_dim(in_dim: int, units: int, layers: int) -> int:
        return widths(units, layers)[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x
