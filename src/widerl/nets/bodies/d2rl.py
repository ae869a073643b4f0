"""MLP-D2RL (Sinha et al. 2020): y_i = f_i([y_{i-1}, x]) for i >= 2, the network input fed to
every hidden layer after the first; the last hidden layer's output is not concatenated."""

from __future__ import annotations

import torch

from widerl.nets.bodies.base import Body


class D2RL(Body):
    @staticmethod
    def input_dims(in_dim: int, units: int, layers: int) -> list[int]:
        return [in_dim] + [units + in_dim] * (layers - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.layers[0](x)
        for layer in self.layers[1:]:
            y = layer(torch.cat([y, x], dim=-1))
        return y
