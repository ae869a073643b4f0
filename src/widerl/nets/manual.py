"""Hand-written forward and backward passes of a plain MLP body, for the agents' fast update.

At 256x2 on a CPU, an update is about 60 % matmuls and 40 % per-op overhead: autograd's graph
building, its engine, module calls, fresh allocations (benchmarks/README.md). The backward of
Linear -> activation layers is three lines of algebra, so the fast path (agents/base.py) runs
it directly under no_grad with the same ATen kernels autograd would call (`addmm`, `mm`,
`threshold_backward`, `silu_backward`) and skips every product autograd cannot know is unused.

Only the `mlp` arch without BatchNorm takes this path; the other archs and BatchNorm use
autograd (their forward is in nets/blocks.py, which this file must agree with: Layer =
Linear -> activation, y_i = f_i(y_{i-1})).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from widerl.nets.blocks import Body


class Tape(NamedTuple):
    """What the backward of each hidden layer needs: its input x_i and, for swish, the
    pre-activation h_i (ReLU's derivative reads the layer's output, which is x_{i+1})."""

    inputs: list[torch.Tensor]
    pre: list[torch.Tensor]

    def rows(self, sl: slice) -> Tape:
        """The tape of a forward pass over only these rows of the batch (rows are independent)."""
        return Tape([x[sl] for x in self.inputs], [h[sl] for h in self.pre])


def fast_body_ok(body: Body) -> bool:
    """Whether `body` is the plain MLP that `forward`/`backward` implement."""
    return body.arch == "mlp" and all(
        layer.norm is None and isinstance(layer.act, nn.ReLU | nn.SiLU) for layer in body.layers
    )


def linears(body: Body) -> list[nn.Linear]:
    return body.linears


def forward(layers: list[nn.Linear], activation: str, x: torch.Tensor) -> tuple[torch.Tensor, Tape]:
    """y_L of Linear -> activation layers, and the tape for `backward`."""
    inputs: list[torch.Tensor] = []
    pre: list[torch.Tensor] = []
    for lin in layers:
        inputs.append(x)
        h = F.linear(x, lin.weight, lin.bias)  # addmm(b, x, W^T), as nn.Linear
        if activation == "relu":
            x = h.relu_()  # in place: ReLU's backward only needs its output
        else:
            pre.append(h)
            x = F.silu(h)
    return x, Tape(inputs, pre)


def _activation_backward(
    g: torch.Tensor, activation: str, tape: Tape, i: int, y: torch.Tensor
) -> torch.Tensor:
    """d loss / d h_i from d loss / d y_i, with the kernels autograd uses for ReLU and SiLU.
    `g` is a temporary of the backward pass (nothing else reads it), so the result overwrites
    it: no fresh (B, U) buffer, and g is still in cache."""
    if activation == "relu":
        return torch.ops.aten.threshold_backward.grad_input(g, y, 0, grad_input=g)
    return torch.ops.aten.silu_backward.grad_input(g, tape.pre[i], grad_input=g)


def backward(
    layers: list[nn.Linear],
    activation: str,
    tape: Tape,
    y: torch.Tensor,
    g_y: torch.Tensor,
    weight_grads: bool = True,
    input_cols: slice | None = None,
) -> tuple[list[torch.Tensor], torch.Tensor | None]:
    """Backpropagate d loss / d y_L through the body.

    Returns the parameter gradients in `nn.Module.parameters()` order ([W_0, b_0, W_1, ...];
    empty when `weight_grads` is False: the actor step only needs dQ/da from the critics) and
    d loss / d x_0[:, input_cols] (None without `input_cols`: nothing upstream needs it).
    """
    grads: list[torch.Tensor] = []
    g_in = None
    for i in reversed(range(len(layers))):
        lin = layers[i]
        g = _activation_backward(g_y, activation, tape, i, y)
        if weight_grads:
            grads[:0] = [weight_grad(g, tape.inputs[i]), g.sum(0)]
        if i > 0:
            g_y, y = g.mm(lin.weight), tape.inputs[i]
        elif input_cols is not None:
            # (W^T g^T)^T: a product with few output columns (|A| here) is the slow case, and
            # MKL is 2x faster again with the (|A|, U) slice of W^T copied contiguous first.
            g_in = lin.weight[:, input_cols].t().contiguous().mm(g.t()).t()
    return grads, g_in


def weight_grad(g: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """d loss / dW = g^T x for y = x W^T + b. MKL is 2-3x slower on products whose output has
    few columns (a first layer sees 11-14 inputs), so those are computed as (x^T g)^T."""
    if x.shape[1] < g.shape[1]:
        return x.t().mm(g).t().contiguous()
    return g.t().mm(x)
