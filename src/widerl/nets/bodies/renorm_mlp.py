"""CrossQ's networks (Bhatt et al. 2024, Sec. 3; the authors' code release): an MLP with
Batch Renormalization on its input and after every hidden layer's activation,

    x -> BRN -> [Linear -> act -> BRN] x layers,

for the critics and (the release's default, "brn_actor") the policy. Not an --arch of its own:
--algo crossq builds it (agents/crossq.py)."""

from __future__ import annotations

import torch
from torch import nn

from widerl.nets.bodies.base import Body, Part, activation_module, ordinal
from widerl.nets.ensemble import EnsembleLinear
from widerl.nets.norms import EnsembleBatchRenorm


class RenormLayer(nn.Module):
    """Linear -> activation -> Batch Renormalization (the norm after the activation, so the
    Linear's bias still matters and is trained)."""

    def __init__(self, members: int, in_dim: int, out_dim: int, activation: str, init: str):
        super().__init__()
        self.linear = EnsembleLinear(members, in_dim, out_dim, init)
        self.act = activation_module(activation)
        self.norm = EnsembleBatchRenorm(members, out_dim)
        self.in_dim, self.out_dim = in_dim, out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.act(self.linear(x)))


class RenormMLP(Body):
    def build_layers(self, activation: str, batchnorm: bool, init: str) -> list[nn.Module]:
        m, d = self.members, self.units
        dims = [self.in_dim] + [d] * (self.n_layers - 1)
        return [
            EnsembleBatchRenorm(m, self.in_dim),
            *(RenormLayer(m, i, d, activation, init) for i in dims),
        ]

    def set_warmup(self, passes: int) -> None:
        """Training passes during which every Batch Renormalization layer is BatchNorm."""
        for layer in self.modules():
            if isinstance(layer, EnsembleBatchRenorm):
                layer.warmup = passes

    def parts(self) -> list[Part]:
        first, *hidden = self.layers
        rows: list[Part] = [("input Batch Renorm", first, self.in_dim, self.in_dim)]
        for i, layer in enumerate(hidden, start=1):
            rows.append((f"{ordinal(i)} layer (+BRN)", layer, layer.in_dim, layer.out_dim))
        return rows

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x
