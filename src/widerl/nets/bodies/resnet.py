"""MLP-ResNet (Sec. 4.2): y_i = f_i(y_{i-1}) + y_{i-1}; the first layer changes the width, so
only the later layers have a skip."""

from __future__ import annotations

import torch

from widerl.nets.bodies.base import Body


class ResNet(Body):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.layers[0](x)
        for layer in self.layers[1:]:
            y = layer(y) + y
        return y
