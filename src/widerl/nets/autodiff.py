"""Gradients of a loss with respect to some of a module's parameters, written once for the
eager and the compiled learning step.

Eagerly this is `torch.autograd.grad`. torch.compile cannot trace `autograd.grad` into one
graph, but it traces `torch.func.grad`, which needs the loss as a function of the parameters:
there the module's parameters are swapped for the differentiated ones with
`torch.func.functional_call`. Both compute the same gradients; the compiled step then holds
forward, backward, optimizer and target updates in one graph, and computes only the products
a gradient actually needs (e.g. no critic weight gradients in the actor step).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from widerl.nets.norms import record_running_stats


class _Call(nn.Module):
    """Runs a closure as the forward of `root`, so functional_call can swap root's tensors."""

    def __init__(self, root: nn.Module) -> None:
        super().__init__()
        self.root = root

    def forward(self, fn: Callable[..., Any], *args: Any) -> Any:
        return fn(*args)


class Differentiable:
    """The parameters of `module` named by `names`, and gradients of losses with respect to
    them: `grad(fn, *args)` for `fn(*args) -> (loss, aux)` returns (grads, aux).

    Norm layers in train mode move their running statistics during the loss's forward pass;
    those moves are recorded and written back after the gradient (nets/norms.py)."""

    def __init__(self, module: nn.Module, names: Sequence[str]) -> None:
        named = dict(module.named_parameters())
        self.names = list(names)
        self.params = [named[n] for n in self.names]
        self._call = _Call(module)
        self._keys = [f"root.{n}" for n in self.names]

    def grad(
        self, fn: Callable[..., tuple[torch.Tensor, Any]], *args: Any
    ) -> tuple[list[torch.Tensor], Any]:
        buffers: list[list[torch.Tensor]] = []

        def recorded(*a: Any) -> tuple[torch.Tensor, Any]:
            with record_running_stats() as rec:
                loss, aux = fn(*a)
            buffers.append(rec.buffers)
            return loss, (aux, rec.values)

        grads, (aux, values) = self._grad(recorded, *args)
        with torch.no_grad():
            for buf, value in zip(buffers[0], values, strict=True):
                buf.copy_(value)
        return grads, aux

    def _grad(
        self, fn: Callable[..., tuple[torch.Tensor, Any]], *args: Any
    ) -> tuple[list[torch.Tensor], Any]:
        if torch.compiler.is_compiling():

            def of_params(tensors: list[torch.Tensor]) -> tuple[torch.Tensor, Any]:
                values = dict(zip(self._keys, tensors, strict=True))
                return torch.func.functional_call(self._call, values, (fn, *args), strict=False)

            grads, aux = torch.func.grad(of_params, has_aux=True)(self.params)
            return list(grads), aux
        # Parameters are kept with requires_grad False (so that torch.compile's graph may
        # update them in place); eager autograd tracks these for the duration of one loss.
        for p in self.params:
            p.requires_grad_(True)
        try:
            with torch.enable_grad():
                loss, aux = fn(*args)
                grads = torch.autograd.grad(loss, self.params)
        finally:
            for p in self.params:
                p.requires_grad_(False)
        return list(grads), aux
