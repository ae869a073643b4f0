"""MLP-DenseNet (Sec. 3.3): y_i = f_i([y_0, ..., y_{i-1}]) with y_0 = x; the output is
[y_0, ..., y_L], so out_dim = in_dim + layers * units (Table 2)."""

from __future__ import annotations

import torch

from widerl.nets.bodies.base import Body


class DenseNet(Body):
    @staticmethod
    def input_dims(in_dim: int, units: int, layers: int) -> list[int]:
        return [in_dim + i * units for i in range(layers)]

    @staticmethod
    def output_dim(in_dim: int, units: int, layers: int) -> int:
        return in_dim + layers * units

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        for layer in self.layers:
            y = torch.cat([y, layer(y)], dim=-1)
        return y
