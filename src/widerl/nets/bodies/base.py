"""What every body shares: hidden layers Linear -> [BatchNorm] -> activation (the block order
of OFENet, Ota et al. 2020), each an ensemble layer with a leading members dimension."""

from __future__ import annotations

import torch
from torch import nn

from widerl.nets.ensemble import EnsembleLinear
from widerl.nets.norms import EnsembleBatchNorm

ACTIVATIONS = ("swish", "relu")


def activation_module(name: str) -> nn.Module:
    if name == "swish":
        return nn.SiLU()  # Swish with beta = 1 (Ramachandran et al. 2017), as in OFENet
    if name == "relu":
        return nn.ReLU()
    raise ValueError(f"unknown activation {name!r}; choose from {ACTIVATIONS}")


class Layer(nn.Module):
    """One hidden layer of every member: Linear -> optional BatchNorm -> activation."""

    def __init__(
        self,
        members: int,
        in_dim: int,
        out_dim: int,
        activation: str,
        batchnorm: bool = False,
        init: str = "torch",
    ) -> None:
        super().__init__()
        self.linear = EnsembleLinear(members, in_dim, out_dim, init)
        self.norm = EnsembleBatchNorm(members, out_dim) if batchnorm else None
        if batchnorm:
            # BatchNorm subtracts the batch mean, so this bias's gradient is zero in exact
            # arithmetic; Adam would turn its rounding noise into lr-sized random steps. It is
            # kept (Table 2 counts it) but not trained.
            self.linear.train_bias = False
        self.act = activation_module(activation)
        self.in_dim, self.out_dim = in_dim, out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.linear(x)
        if self.norm is not None:
            h = self.norm(h)
        return self.act(h)


class Body(nn.Module):
    """Hidden layers of one connectivity; `out_dim` is what a head receives, and the output
    is the penultimate-layer feature Phi whose effective rank the paper tracks (A.4)."""

    def __init__(
        self,
        members: int,
        in_dim: int,
        units: int,
        layers: int,
        activation: str = "relu",
        batchnorm: bool = False,
        init: str = "torch",
    ) -> None:
        super().__init__()
        if units <= 0 or layers <= 0:
            raise ValueError(f"units and layers must be positive, got {units} and {layers}")
        self.members, self.in_dim, self.units, self.n_layers = members, in_dim, units, layers
        self.layers = nn.ModuleList(
            Layer(members, d, units, activation, batchnorm, init)
            for d in self.input_dims(in_dim, units, layers)
        )
        self.out_dim = self.output_dim(in_dim, units, layers)

    @staticmethod
    def input_dims(in_dim: int, units: int, layers: int) -> list[int]:
        """Input width of each hidden layer (a plain stack by default)."""
        return [in_dim] + [units] * (layers - 1)

    @staticmethod
    def output_dim(in_dim: int, units: int, layers: int) -> int:
        return units
