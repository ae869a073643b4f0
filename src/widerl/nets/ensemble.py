"""The members dimension: every network in widerl is an ensemble of E independent copies.

A Linear layer holds weights `[E, in, out]` and biases `[E, 1, out]` and maps `[E, B, in]`
to `[E, B, out]` with one batched product (`baddbmm`; on some CPUs each member's through
oneDNN, nets/onednn.py). The twin critics of SAC/TD3 are E = 2 members of one network,
evaluated in one pass; the many-seeds mode stacks K agents along the same dimension (critics
E = K x N, actors E = K). Members never mix: every op is per member, so member e's outputs
and gradients depend on member e's parameters and inputs only.

A layer whose leading input columns carry no gradient (`frozen`, e.g. the target features
z_s inside z_sa in the actor's loss) takes the input gradient of the other columns only.

Initialisation draws each seed's block of members from that seed's own generator, so a
member starts from the weights the single run of the same seed starts from, whatever else
shares the process.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from widerl.nets import onednn
from widerl.nets.norms import EnsembleNorm

INITS = ("torch", "glorot")


# A layer with at most THIN_OUT outputs (a critic's Q, a policy's mean) over a batch of at
# least THIN_MIN_ROWS rows takes `thin_product`'s form on a CPU: MKL's sgemm, one thread,
# ran [256, 256] @ [256, 6] at 7 GFLOP/s and [256, 256] @ [256, 1] batched over two critics
# in 170-200 us, against 84 GFLOP/s for [256, 256] @ [256, 256] (benchmarks/README.md,
# "Thin products"). At a few rows (acting, evaluation) the plain product is the faster one.
THIN_OUT = 8
THIN_MIN_ROWS = 128


def thin_product(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """x W + b for a W `[E, in, out]` of few outputs, in the forms whose products, forward
    and backward as autograd derives them, MKL runs fast: one output as a product with the
    weight row and a sum over the inputs (a reduction a compiler fuses); a few as (W^T x^T)^T,
    the thin side of the product in its rows. The same value as `baddbmm(b, x, W)` up to the
    order of the float sums."""
    if w.shape[-1] == 1:
        return (x * w.transpose(1, 2)).sum(-1, keepdim=True) + b
    return (
        torch.baddbmm(b.transpose(1, 2), w.transpose(1, 2), x.transpose(1, 2))
        .transpose(1, 2)
        .contiguous()
    )


class EnsembleLinear(nn.Module):
    """y_e = x_e W_e + b_e for every member e (weights `[E, in, out]`)."""

    def __init__(self, members: int, in_dim: int, out_dim: int, init: str = "torch") -> None:
        super().__init__()
        if init not in INITS:
            raise ValueError(f"unknown init {init!r}; choose from {INITS}")
        self.members, self.in_dim, self.out_dim, self.init = members, in_dim, out_dim, init
        self.train_bias = True  # False when a BatchNorm follows (nets/bodies/base.py)
        # True: every output unit's weights stay on the unit sphere (SimbaV2's hyperspherical
        # layers, --weight-projection): projected at initialisation and after every optimizer
        # step (nets/optim.py, `project_unit_norm`).
        self.unit_norm = False
        self.weight = nn.Parameter(torch.empty(members, in_dim, out_dim))
        self.bias = nn.Parameter(torch.empty(members, 1, out_dim))
        self.reset_parameters()
        onednn.use_onednn()  # decided before any step is traced (it times two products)

    def forward(self, x: torch.Tensor, frozen: int = 0) -> torch.Tensor:
        """x W + b. `frozen`: how many leading columns of x no gradient is wanted for (they
        are constants of the loss being differentiated); their input gradient is skipped."""
        # Only where it pays: the custom backward costs a padded copy of the gradient (and
        # eagerly a Python call), worth it when it skips at least a quarter of the product.
        # (The quarter is a judgement, not a measured break-even: it leaves out OFENet's
        # phi_s, whose 11 observation columns are a sliver of every layer's input.)
        if 4 * frozen >= self.in_dim and frozen < self.in_dim and x.requires_grad:
            return _FrozenPrefixLinear.apply(x, self.weight, self.bias, frozen)
        return self.product(x)

    def product(self, x: torch.Tensor, frozen: int = 0) -> torch.Tensor:
        """x W + b with autograd's own backward, every input column's gradient taken (what
        `forward` does without `frozen`; on a CPU a thin layer in `thin_product`'s forms, a
        learning step's batch through oneDNN where it outruns the BLAS: nets/onednn.py). It
        takes forward's `frozen` and ignores it, so that tests and benchmarks can put it in
        forward's place to compare the skip against it."""
        rows = x.shape[-2]  # a symbolic size (an export's dynamic batch) keeps baddbmm
        thin = self.out_dim <= THIN_OUT and type(rows) is int and rows >= THIN_MIN_ROWS
        if thin and x.device.type == "cpu":
            return thin_product(x, self.weight, self.bias)
        if onednn.worth_it(x, rows, self.in_dim, self.out_dim):
            # a float32 CPU product where oneDNN outruns the BLAS (nets/onednn.py)
            return onednn.product(x, self.weight, self.bias)
        return torch.baddbmm(self.bias, x, self.weight)

    def bounds(self) -> tuple[float, float]:
        """U(-a, a) bounds of weight and bias: torch's nn.Linear default (a = 1/sqrt(in) for
        both), or Glorot-uniform weights with zero biases (Keras' default, used by OFENet)."""
        if self.init == "glorot":
            return math.sqrt(6.0 / (self.in_dim + self.out_dim)), 0.0
        a = 1.0 / math.sqrt(self.in_dim) if self.in_dim else 0.0
        return a, a

    @torch.no_grad()
    def reset_parameters(self, generators: Sequence[torch.Generator] | None = None) -> None:
        """Redraw the weights; with `generators` (one per seed), seed k's members come from
        generators[k], weight first, then bias, member by member."""
        if self.weight.device.type == "meta":
            return
        wa, ba = self.bounds()
        gens = list(generators) if generators else [None]
        if self.members % len(gens):
            raise ValueError(f"{self.members} members do not split over {len(gens)} seeds")
        per_seed = self.members // len(gens)
        for k, g in enumerate(gens):
            for m in range(k * per_seed, (k + 1) * per_seed):
                _uniform(self.weight[m], wa, g)
                if ba:
                    _uniform(self.bias[m], ba, g)
                else:
                    self.bias[m].zero_()
        if self.unit_norm:
            project_unit_norm(self.weight)

    def extra_repr(self) -> str:
        return f"members={self.members}, in={self.in_dim}, out={self.out_dim}, init={self.init}"


@torch.no_grad()
def project_unit_norm(weight: torch.Tensor, eps: float = 1e-12) -> None:
    """w_j <- w_j / ||w_j||_2 for every output unit j of a weight `[E, in, out]` (the norm is
    over the inputs, dim 1), in place: SimbaV2's projection onto the unit hypersphere."""
    weight.div_(torch.linalg.vector_norm(weight, dim=1, keepdim=True).clamp_min(eps))


class EnsembleScaler(nn.Module):
    """A learnable per-unit scale of every member, y = x * s (SimbaV2, Sec. 4.1 "scaler"):
    s = s_init / s_scale * p with the parameter p initialised to s_scale, so s starts at
    s_init while Adam, whose steps are about lr in size whatever a parameter's magnitude, moves
    it at the rate s_scale sets."""

    def __init__(self, members: int, dim: int, init: float, scale: float) -> None:
        super().__init__()
        self.s_init, self.s_scale = init, scale
        self.param = nn.Parameter(torch.empty(members, 1, dim))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        self.param.fill_(self.s_scale)

    def scale(self) -> torch.Tensor:
        return self.param * (self.s_init / self.s_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale()


def constant_prefix(x: torch.Tensor, frozen: int) -> int:
    """The leading columns of x that carry no gradient: all of them when x carries none."""
    return frozen if x.requires_grad else x.shape[-1]


class _FrozenPrefixLinear(torch.autograd.Function):
    """baddbmm(b, x, W) whose gradient for x covers only the columns from `frozen` on: the
    product g W^T for the leading columns would be computed only to be discarded (autograd
    takes the input gradient of a product whole). The frozen columns' gradient is zero."""

    @staticmethod
    def forward(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, frozen: int) -> torch.Tensor:
        return torch.baddbmm(b, x, w)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        x, w, _, frozen = inputs
        ctx.frozen = frozen
        ctx.save_for_backward(x, w)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, w = ctx.saved_tensors
        # While torch.compile traces, needs_input_grad reads False for torch.func.grad's
        # tensors: every gradient is then written out, and the ones unused are dropped from
        # the graph.
        tracing = torch.compiler.is_compiling()
        gx = gw = gb = None
        if tracing or ctx.needs_input_grad[0]:
            tail = torch.bmm(g, w[:, ctx.frozen :].transpose(1, 2))
            gx = torch.nn.functional.pad(tail, (ctx.frozen, 0))
        if tracing or ctx.needs_input_grad[1]:
            gw = torch.bmm(x.transpose(1, 2), g)
        if tracing or ctx.needs_input_grad[2]:
            gb = g.sum(1, keepdim=True)
        return gx, gw, gb, None


def _uniform(t: torch.Tensor, a: float, g: torch.Generator | None) -> None:
    """t ~ U(-a, a) from `g`; drawn on the generator's device and copied when the tensor
    lives elsewhere (a reset of a CUDA network from the seeds' CPU generators)."""
    if g is None or g.device == t.device:
        t.uniform_(-a, a, generator=g)
    else:
        t.copy_(torch.empty(t.shape, dtype=t.dtype, device=g.device).uniform_(-a, a, generator=g))


def ensemble_linears(module: nn.Module) -> list[EnsembleLinear]:
    return [m for m in module.modules() if isinstance(m, EnsembleLinear)]


def trained_names(module: nn.Module, prefix: str = "") -> list[str]:
    """Names of the parameters an optimizer trains: all but the biases of Linear layers
    that a BatchNorm follows (see nets/bodies/base.py)."""
    frozen = {id(m.bias) for m in ensemble_linears(module) if not m.train_bias}
    return [prefix + n for n, p in module.named_parameters() if id(p) not in frozen]


def reset_members(module: nn.Module, generators: Sequence[torch.Generator]) -> None:
    """Re-initialise every layer of `module`, in module order, from the seeds' generators, so
    that seed k's draws are the same sequence whether or not other seeds share the network.
    Norm layers go back to their initial state too (they draw nothing)."""
    for layer in module.modules():
        if isinstance(layer, EnsembleLinear):
            layer.reset_parameters(generators)
        elif isinstance(layer, (EnsembleNorm, EnsembleScaler)):
            layer.reset_parameters()
