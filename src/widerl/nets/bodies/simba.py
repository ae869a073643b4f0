"""SimBa (Lee et al. 2024, arXiv 2410.09754, Sec. 4.1, Fig. 3): an input Linear to width d,
then residual feed-forward blocks with pre-LayerNorm, x + MLP(LayerNorm(x)) where MLP =
Linear(d, 4d) -> ReLU -> Linear(4d, d), and a final ("post-") LayerNorm.

widerl's flags: --units is d (SimBa's "hidden dim": critic 512, actor 128) and --layers is
the number of residual blocks (critic 2, actor 1), so a body holds 1 + 2 x layers Linear
layers. SimBa's running-statistics observation normalisation is a feature learner here
(--obs-norm, nets/obs_norm.py). Initialisation is torch's default for every Linear (SimBa:
orthogonal for the input layer, He-normal inside the blocks)."""

from __future__ import annotations

import torch
from torch import nn

from widerl.nets.bodies.base import Body, Part, activation_module
from widerl.nets.ensemble import EnsembleLinear
from widerl.nets.norms import EnsembleLayerNorm


class SimBaBlock(nn.Module):
    """x + Linear(4d -> d)(act(Linear(d -> 4d)(LayerNorm(x)))) for every member."""

    def __init__(self, members: int, d: int, activation: str, init: str) -> None:
        super().__init__()
        self.norm = EnsembleLayerNorm(members, d)
        self.up = EnsembleLinear(members, d, 4 * d, init)
        self.act = activation_module(activation)
        self.down = EnsembleLinear(members, 4 * d, d, init)
        self.in_dim = self.out_dim = d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.down(self.act(self.up(self.norm(x))))


class SimBa(Body):
    def build_layers(self, activation: str, batchnorm: bool, init: str) -> list[nn.Module]:
        if batchnorm:
            raise ValueError("SimBa normalises with LayerNorm; it takes no --batchnorm")
        m, d = self.members, self.units
        return [
            EnsembleLinear(m, self.in_dim, d, init),
            *(SimBaBlock(m, d, activation, init) for _ in range(self.n_layers)),
            EnsembleLayerNorm(m, d),
        ]

    def parts(self) -> list[Part]:
        first, *blocks, last = self.layers
        d = self.units
        rows: list[Part] = [("input Linear", first, self.in_dim, d)]
        for i, b in enumerate(blocks, start=1):
            rows += [
                (f"block {i} LayerNorm", b.norm, d, d),
                (f"block {i} Linear", b.up, d, 4 * d),
                (f"block {i} Linear", b.down, 4 * d, d),
            ]
        return [*rows, ("final LayerNorm", last, d, d)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x
