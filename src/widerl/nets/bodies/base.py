"""What every body shares: hidden layers Linear -> [norm] -> activation (the block order
of OFENet, Ota et al. 2020), each an ensemble layer with a leading members dimension.

A body's `layers` are its building blocks in order. The paper's bodies (mlp, resnet, d2rl,
densenet) are one `Layer` per hidden layer; bodies whose blocks hold several Linear layers
(SimBa, BroNet) list each block's parts through `parts()`, which `widerl summary` prints row
by row.
"""

from __future__ import annotations

import torch
from torch import nn

from widerl.nets.ensemble import EnsembleLinear
from widerl.nets.norms import make_norm

ACTIVATIONS = ("swish", "relu")

# A row of a block in a parameter table: (label, module, input units, output units).
Part = tuple[str, nn.Module, int, int]


def ordinal(i: int) -> str:
    """1 -> '1st', 2 -> '2nd', 3 -> '3rd', 11 -> '11th'."""
    if i % 100 in (11, 12, 13):
        return f"{i}th"
    return f"{i}" + {1: "st", 2: "nd", 3: "rd"}.get(i % 10, "th")


def activation_module(name: str | None) -> nn.Module:
    if name is None:
        return nn.Identity()
    if name == "swish":
        return nn.SiLU()  # Swish with beta = 1 (Ramachandran et al. 2017), as in OFENet
    if name == "relu":
        return nn.ReLU()
    raise ValueError(f"unknown activation {name!r}; choose from {ACTIVATIONS}")


class Layer(nn.Module):
    """One hidden layer of every member: Linear -> optional norm -> activation (None: no
    activation, BroNet's second Linear of a block)."""

    def __init__(
        self,
        members: int,
        in_dim: int,
        out_dim: int,
        activation: str | None,
        norm: str | None = None,
        init: str = "torch",
    ) -> None:
        super().__init__()
        self.linear = EnsembleLinear(members, in_dim, out_dim, init)
        self.norm = make_norm(norm, members, out_dim) if norm else None
        if norm in ("batchnorm", "batchrenorm"):
            # A batch norm subtracts the batch mean, so this bias's gradient is zero in exact
            # arithmetic; Adam would turn its rounding noise into lr-sized random steps. It is
            # kept (Table 2 counts it) but not trained. (LayerNorm subtracts each sample's
            # mean over features, which leaves a per-feature bias its effect.)
            self.linear.train_bias = False
        self.act = activation_module(activation)
        self.in_dim, self.out_dim = in_dim, out_dim

    def forward(self, x: torch.Tensor, frozen: int = 0) -> torch.Tensor:
        h = self.linear(x, frozen)  # frozen: leading columns of x without a gradient
        if self.norm is not None:
            h = self.norm(h)
        return self.act(h)


class Body(nn.Module):
    """Hidden layers of one connectivity; `out_dim` is what a head receives, and the output
    is the penultimate-layer feature Phi whose effective rank the paper tracks (A.4).

    A body whose output begins with its input (`keeps_input`, DenseNet) also takes
    `forward(x, frozen)`: the leading columns of x that carry no gradient in the loss being
    differentiated, whose input gradients its layers then skip (nets/ensemble.py)."""

    keeps_input = False

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
        self.layers = nn.ModuleList(self.build_layers(activation, batchnorm, init))
        self.out_dim = self.output_dim(in_dim, units, layers)

    def build_layers(self, activation: str, batchnorm: bool, init: str) -> list[nn.Module]:
        """The blocks in order; by default one `Layer` per hidden layer."""
        norm = "batchnorm" if batchnorm else None
        return [
            Layer(self.members, d, self.units, activation, norm, init)
            for d in self.input_dims(self.in_dim, self.units, self.n_layers)
        ]

    def parts(self) -> list[Part]:
        """The rows of this body's parameter table: one per hidden layer by default."""
        return [
            (f"{ordinal(i)} layer", layer, layer.in_dim, layer.out_dim)
            for i, layer in enumerate(self.layers, start=1)
        ]

    @staticmethod
    def input_dims(in_dim: int, units: int, layers: int) -> list[int]:
        """Input width of each hidden layer (a plain stack by default)."""
        return [in_dim] + [units] * (layers - 1)

    @staticmethod
    def output_dim(in_dim: int, units: int, layers: int) -> int:
        return units
