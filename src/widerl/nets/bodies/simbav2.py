"""SimbaV2 (Lee et al. 2025, arXiv 2502.15280, Sec. 4, Fig. 2): every feature and every weight
vector kept on the unit hypersphere.

    input      x~ = l2(concat(x, c_shift))                    shift + l2 (Sec. 4.1; c_shift 3)
    embedding  h_0 = l2(s_h * (W_0 x~))                       unit-norm rows, learnable scaler
    block l    t = l2(W_2 ReLU(s_l * (W_1 h)))               W_1: d -> 4d, W_2: 4d -> d
               h <- l2(h + alpha_l * (t - h))                 LERP residual (Sec. 4.2)

l2(v) = v / ||v||. Every W is a hyperspherical Linear: no bias, each output unit's weights
projected back to unit norm after every optimizer step (`EnsembleLinear.unit_norm`, done by
nets/optim.py). The scalers s and alpha are `EnsembleScaler`s with the published initial
values and scales (configs/agent/hyper_simba.yaml of the authors' code): s_init = s_scale =
1/sqrt(d), alpha_init = 1/(L+1), alpha_scale = 1/sqrt(d).

widerl's flags: --units is d (critic 512, actor 128), --layers the number of blocks L (critic
2, actor 1). The observation normalisation SimbaV2 inherits from SimBa is --obs-norm; its
distributional critic on scaled rewards is --critic-head c51 with --reward-scaling.

What differs (a decision): the output layers are widerl's heads (plain Linear: the actor's
mean and log-std, the critic's atoms), where SimbaV2 ends each network with one more
hyperspherical Linear and scaler before its output layer; weights start from torch's default
uniform draw, projected (SimbaV2: orthogonal, projected)."""

from __future__ import annotations

import math

import torch
from torch import nn

from widerl.nets.bodies.base import Body, Part
from widerl.nets.ensemble import EnsembleLinear, EnsembleScaler

C_SHIFT = 3.0  # the constant appended before the input's l2 normalisation (Sec. 4.1)


def l2(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """x / ||x|| over the last dim, computed in float32 (under --amp bf16 too)."""
    x32 = x.float()
    return (x32 * torch.rsqrt(x32.square().sum(-1, keepdim=True) + eps)).to(x.dtype)


class HyperLinear(EnsembleLinear):
    """A Linear on the hypersphere: unit-norm weight vectors, no bias (kept at zero, untrained)."""

    def __init__(self, members: int, in_dim: int, out_dim: int) -> None:
        super().__init__(members, in_dim, out_dim)
        self.unit_norm, self.train_bias = True, False
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self, generators: list[torch.Generator] | None = None) -> None:
        super().reset_parameters(generators)  # draws, then projects (unit_norm)
        self.bias.zero_()


class Embedding(nn.Module):
    """h_0 = l2(s_h * W_0 l2([x, c_shift]))."""

    def __init__(self, members: int, in_dim: int, d: int) -> None:
        super().__init__()
        self.linear = HyperLinear(members, in_dim + 1, d)
        self.scaler = EnsembleScaler(members, d, 1 / math.sqrt(d), 1 / math.sqrt(d))
        self.in_dim, self.out_dim = in_dim, d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shift = torch.full_like(x[..., :1], C_SHIFT)
        return l2(self.scaler(self.linear(l2(torch.cat([x, shift], dim=-1)))))


class LerpBlock(nn.Module):
    """h <- l2(h + alpha * (l2(W_2 ReLU(s * W_1 h)) - h))."""

    def __init__(self, members: int, d: int, blocks: int) -> None:
        super().__init__()
        self.up = HyperLinear(members, d, 4 * d)
        self.scaler = EnsembleScaler(members, 4 * d, 1 / math.sqrt(d), 1 / math.sqrt(d))
        self.down = HyperLinear(members, 4 * d, d)
        self.alpha = EnsembleScaler(members, d, 1 / (blocks + 1), 1 / math.sqrt(d))
        self.in_dim = self.out_dim = d

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        t = l2(self.down(torch.relu(self.scaler(self.up(h)))))
        return l2(h + self.alpha(t - h))


class SimbaV2(Body):
    def build_layers(self, activation: str, batchnorm: bool, init: str) -> list[nn.Module]:
        if batchnorm:
            raise ValueError("SimbaV2 normalises onto the hypersphere; it takes no --batchnorm")
        m, d, blocks = self.members, self.units, self.n_layers
        return [Embedding(m, self.in_dim, d), *(LerpBlock(m, d, blocks) for _ in range(blocks))]

    def parts(self) -> list[Part]:
        first, *blocks = self.layers
        d = self.units
        rows: list[Part] = [("shift+l2, embedding", first, self.in_dim + 1, d)]
        for i, b in enumerate(blocks, start=1):
            rows += [
                (f"block {i} Linear+scaler", nn.ModuleList([b.up, b.scaler]), d, 4 * d),
                (f"block {i} Linear+LERP", nn.ModuleList([b.down, b.alpha]), 4 * d, d),
            ]
        return rows

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x
