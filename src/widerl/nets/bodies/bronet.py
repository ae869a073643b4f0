"""BroNet (Nauman et al. 2024, arXiv 2405.16158, Sec. 3, Fig. 4): Linear -> LayerNorm -> ReLU
to width d, then residual blocks x + (Linear -> LayerNorm -> ReLU -> Linear -> LayerNorm)(x).

widerl's flags: --units is d (BRO: critic 512, actor 256) and --layers the number of residual
blocks (BRO's critic 2, actor 1), so a body holds 1 + 2 x layers Linear layers. BRO's critic
(512 x 2 blocks) is about 1.05M parameters plus its input and output layers; initialisation
is torch's default (BRO: orthogonal, gain sqrt(2))."""

from __future__ import annotations

import torch
from torch import nn

from widerl.nets.bodies.base import Body, Layer, Part


class BroBlock(nn.Module):
    """x + LayerNorm(Linear(act(LayerNorm(Linear(x))))) for every member."""

    def __init__(self, members: int, d: int, activation: str, init: str) -> None:
        super().__init__()
        self.first = Layer(members, d, d, activation, "layernorm", init)
        self.second = Layer(members, d, d, None, "layernorm", init)
        self.in_dim = self.out_dim = d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.second(self.first(x))


class BroNet(Body):
    def build_layers(self, activation: str, batchnorm: bool, init: str) -> list[nn.Module]:
        if batchnorm:
            raise ValueError("BroNet normalises with LayerNorm; it takes no --batchnorm")
        m, d = self.members, self.units
        return [
            Layer(m, self.in_dim, d, activation, "layernorm", init),
            *(BroBlock(m, d, activation, init) for _ in range(self.n_layers)),
        ]

    def parts(self) -> list[Part]:
        first, *blocks = self.layers
        d = self.units
        rows: list[Part] = [("input Linear+LN", first, self.in_dim, d)]
        for i, b in enumerate(blocks, start=1):
            rows += [
                (f"block {i} Linear+LN", b.first, d, d),
                (f"block {i} Linear+LN", b.second, d, d),
            ]
        return rows

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x
