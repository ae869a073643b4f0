"""The four connectivity architectures compared in the paper (Sec. 3.3, 4.2), one interface.

Every body maps `in_dim` features to `out_dim` features through `layers` hidden layers of
`units` units; a head (nets/heads.py) adds the output layer. Each hidden layer is
Linear -> [BatchNorm] -> activation, the block order of OFENet (Ota et al. 2020).

- mlp:      y_i = f_i(y_{i-1})
- resnet:   y_i = f_i(y_{i-1}) + y_{i-1}            (Sec. 4.2; first layer changes width)
- d2rl:     y_i = f_i([y_{i-1}, x]) for i >= 2       (Sinha et al. 2020: input fed to every
                                                     hidden layer after the first)
- densenet: y_i = f_i([y_0, ..., y_{i-1}]), y_0 = x  (Sec. 3.3; output = [y_0, ..., y_L], so
                                                     out_dim = in_dim + layers * units, Table 2)
"""

from __future__ import annotations

import torch
from torch import nn

from widerl.config import ARCHS


def activation_module(name: str) -> nn.Module:
    if name == "swish":
        return nn.SiLU()  # Swish with beta = 1 (Ramachandran et al. 2017), as in OFENet
    if name == "relu":
        return nn.ReLU()
    raise ValueError(f"unknown activation {name!r}")


class Layer(nn.Module):
    """One hidden layer: Linear -> optional BatchNorm -> activation."""

    def __init__(self, in_dim: int, out_dim: int, activation: str, batchnorm: bool) -> None:
        super().__init__()
        self.linear = nn.Linear(in_dim, out_dim)
        self.norm = nn.BatchNorm1d(out_dim) if batchnorm else None
        self.act = activation_module(activation)
        self.in_dim, self.out_dim = in_dim, out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.linear(x)
        if self.norm is not None:
            h = self.norm(h)
        return self.act(h)


class Body(nn.Module):
    """Hidden layers of one connectivity architecture; `out_dim` is what a head receives."""

    def __init__(
        self,
        in_dim: int,
        arch: str,
        units: int,
        layers: int,
        activation: str = "relu",
        batchnorm: bool = False,
    ) -> None:
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"unknown arch {arch!r}; choose from {ARCHS}")
        if units <= 0 or layers <= 0:
            raise ValueError(f"units and layers must be positive, got {units} and {layers}")
        self.arch, self.in_dim, self.units, self.n_layers = arch, in_dim, units, layers
        dims = self._input_dims(arch, in_dim, units, layers)
        self.layers = nn.ModuleList(Layer(d, units, activation, batchnorm) for d in dims)
        # The hand-written update (nets/manual.py) walks these on every call: a plain list in
        # __dict__ (not registered twice) skips ModuleList iteration and attribute look-ups.
        self.linears: list[nn.Linear] = [layer.linear for layer in self.layers]
        self.out_dim = in_dim + layers * units if arch == "densenet" else units

    @staticmethod
    def _input_dims(arch: str, in_dim: int, units: int, layers: int) -> list[int]:
        if arch == "densenet":
            return [in_dim + i * units for i in range(layers)]
        if arch == "d2rl":
            return [in_dim] + [units + in_dim] * (layers - 1)
        return [in_dim] + [units] * (layers - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.arch == "mlp":
            for layer in self.layers:
                x = layer(x)
            return x
        if self.arch == "densenet":
            y = x
            for layer in self.layers:
                y = torch.cat([y, layer(y)], dim=-1)
            return y
        if self.arch == "d2rl":
            y = self.layers[0](x)
            for layer in self.layers[1:]:
                y = layer(torch.cat([y, x], dim=-1))
            return y
        # resnet: the first layer changes the width, so only later layers have a skip.
        y = self.layers[0](x)
        for layer in self.layers[1:]:
            y = layer(y) + y
        return y
