"""MLP-DenseNet (Sec. 3.3): y_i = f_i([y_0, ..., y_{i-1}]) with y_0 = x; the output is
[y_0, ..., y_L], so out_dim = in_dim + layers * units (Table 2)."""

from __future__ import annotations

import torch

from widerl.nets.bodies.base import Body
from widerl.nets.ensemble import constant_prefix


class DenseNet(Body):
    keeps_input = True  # the output begins with x itself

    @staticmethod
    def input_dims(in_dim: int, units: int, layers: int) -> list[int]:
        return [in_dim + i * units for i in range(layers)]

    @staticmethod
    def output_dim(in_dim: int, units: int, layers: int) -> int:
        return in_dim + layers * units

    def forward(self, x: torch.Tensor, frozen: int = 0) -> torch.Tensor:
        # Every layer sees x: when x (or its first `frozen` columns) carries no gradient, no
        # layer takes the input gradient of those columns. In the paper-S critic that is the
        # 526 z_sa columns of the second layer's 782, and in the actor's loss the 267 z_s
        # columns of every layer of phi_sa and the critics.
        frozen = constant_prefix(x, frozen)
        y = x
        for layer in self.layers:
            y = torch.cat([y, layer(y, frozen)], dim=-1)
        return y
