"""The members' products through oneDNN on CPUs where its float32 kernels outrun the BLAS.

PyTorch runs a float32 `bmm` / `baddbmm` on a CPU through its BLAS, Intel MKL in the wheels.
MKL picks its kernels by CPU vendor: on an AMD CPU with AVX-512 (the machines widerl is
measured on: Zen 5) it runs its AVX2 kernels, about half what the CPU can do, while oneDNN
(also inside PyTorch) picks its kernels by the instruction sets it finds. One thread,
[256, 256] @ [256, 256]: MKL 96-101 GFLOP/s, oneDNN 187-217, XLA (sbx's JAX) 170 (one-off
script, 2026-12-08; benchmarks/README.md, issue 24). The update of a 256-unit network is
mostly such products, so the peers that run on XLA were ahead of widerl by that much.

Each member's product `a[e] @ b[e] (+ bias[e])` goes to oneDNN's float32 inner product
(`torch.ops.mkldnn._linear_pointwise`, which takes dense tensors of any strides, transposed
views included), forward and backward: eagerly through `OneDNNProduct`, an autograd function;
in a compiled step through `OneDNNProducts`, an inductor pass that swaps the graph's `bmm` and
`baddbmm` for the op `widerl::onednn_bmm` (`torch.library`) after AOTAutograd has derived the
backward (inductor's own lowering of a product is MKL's). The values are the BLAS's up to the
order of the float sums.

Whether to use it is decided once per process (`use_onednn`): `WIDERL_CPU_MATMUL=onednn` or
`blas` says so; otherwise (`auto`) both run the same [256, 256] products, alternated, and
oneDNN is taken where it is at least `MARGIN` times as fast. MKL runs its AVX-512 kernels
on Intel CPUs, where the two should be close and MKL then stays (only AMD was measured here);
the margin keeps a machine where they are close from flipping between runs. The choice is
made when the first network is built, so that no trace has to time anything; the processes
a run starts to compile its step take the run's choice (run/compiling.py).
"""

from __future__ import annotations

import math
import os
import time
from typing import Any

import torch
from torch._inductor.custom_graph_pass import CustomGraphPass, get_hash_for_files
from torch.utils import flop_counter

ENV = "WIDERL_CPU_MATMUL"
CHOICES = ("auto", "onednn", "blas")
# oneDNN is taken where it runs the probe at least this many times as fast as the BLAS: on
# the AMD EPYC (Zen 5) these figures were measured on, 1.9-2.2.
MARGIN = 1.3
# The smallest side of a product that goes through oneDNN (`worth_it`).
MIN_SIZE = 16
_decided: bool | None = None
_reason = ""


def available() -> bool:
    """Whether this torch has oneDNN's float32 inner product."""
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def _probe() -> float:
    """How many times as fast oneDNN runs [256, 256] @ [256, 256] as the BLAS at the process's
    thread count, the best of five alternated rounds each (about 10 ms in all). Real CPU
    tensors whatever the caller's context (networks are first built on the meta device)."""
    from torch._subclasses.fake_tensor import unset_fake_temporarily

    linear = torch.ops.mkldnn._linear_pointwise.default
    with unset_fake_temporarily(), torch.no_grad():
        a, b = torch.randn(256, 256, device="cpu"), torch.randn(256, 256, device="cpu")

        def blas() -> None:
            torch.mm(a, b)

        def onednn() -> None:
            linear(a, b.t(), None, "none", [], "")

        def best(f: Any) -> float:
            times = []
            for _ in range(5):
                t = time.perf_counter()
                for _ in range(4):
                    f()
                times.append(time.perf_counter() - t)
            return min(times)

        blas(), onednn()  # first calls build their kernels
        t_blas, t_onednn = [], []
        for _ in range(2):  # alternated
            t_blas.append(best(blas))
            t_onednn.append(best(onednn))
        return min(t_blas) / min(t_onednn)


def use_onednn() -> bool:
    """Whether float32 CPU products go through oneDNN in this process (module docstring):
    `WIDERL_CPU_MATMUL` (auto, onednn, blas), decided on the first call."""
    global _decided, _reason
    if _decided is None:
        choice = os.environ.get(ENV, "auto").strip().lower() or "auto"
        if choice not in CHOICES:
            raise ValueError(f"{ENV}={choice!r}: choose one of {', '.join(CHOICES)}")
        if not available():
            _decided, _reason = False, "this torch has no oneDNN"
        elif choice == "auto":
            ratio = _probe()
            _decided = ratio >= MARGIN
            _reason = f"oneDNN ran [256, 256] @ [256, 256] {ratio:.2f}x as fast as the BLAS"
        else:
            _decided, _reason = choice == "onednn", f"{ENV}={choice}"
    return _decided


def decided() -> str:
    """What `use_onednn` chose: "onednn" or "blas" (part of a saved step's key)."""
    return "onednn" if use_onednn() else "blas"


def describe() -> str:
    """The choice and why, one line for run.log."""
    return f"{decided()} ({_reason})"


def _member_products(a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    linear = torch.ops.mkldnn._linear_pointwise.default
    biases = [None] * a.shape[0] if bias is None else bias.squeeze(1).unbind(0)
    # _linear_pointwise(X, W, B) = X W^T + B: W^T = b[e] is a transposed view, no copy.
    outs = [
        linear(x, w.t(), c, "none", [], "")
        for x, w, c in zip(a.unbind(0), b.unbind(0), biases, strict=True)
    ]
    return outs[0].unsqueeze(0) if len(outs) == 1 else torch.stack(outs)  # one member: no copy


def _onednn_bmm(a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return _member_products(a, b, bias)


# `widerl::onednn_bmm(a [E, M, K], b [E, K, N], bias [E, 1, N]?)`: `a @ b (+ bias)` per member
# through oneDNN, what a compiled step calls in place of the BLAS's products (`OneDNNProducts`).
# No autograd of its own: the pass swaps it in after autograd's graph is built. Defined with
# `torch.library.Library` rather than `custom_op`, whose wrapper cost 16 us more per call (a
# compiled TD3 step makes 14 such calls; one-off script, 2026-12-08).
_LIBRARY = torch.library.Library("widerl", "DEF")
_LIBRARY.define("onednn_bmm(Tensor a, Tensor b, Tensor? bias) -> Tensor")
_LIBRARY.impl("onednn_bmm", _onednn_bmm, "CPU")


@torch.library.register_fake("widerl::onednn_bmm")
def _(a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return a.new_empty(a.shape[0], a.shape[1], b.shape[2])


class OneDNNProduct(torch.autograd.Function):
    """`baddbmm(bias, a, b)` through oneDNN in the forward and both products of the backward
    (`g b^T`, `a^T g`, each member's), eagerly. A traced step keeps `baddbmm`, whose products
    `OneDNNProducts` swaps after autograd (an autograd function in a graph keeps AOTAutograd
    from caching it: nets/norms.py, BatchNormalize)."""

    @staticmethod
    def forward(a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:  # type: ignore[override]
        return _member_products(a, b, bias)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        a, b, bias = inputs
        ctx.save_for_backward(a, b)
        ctx.has_bias = bias is not None

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        a, b = ctx.saved_tensors
        grad_a = grad_b = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_a = _member_products(g, b.transpose(1, 2), None)
        if ctx.needs_input_grad[1]:
            grad_b = _member_products(a.transpose(1, 2), g, None)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = g.sum(1, keepdim=True)
        return grad_a, grad_b, grad_bias


def product(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """`baddbmm(b, x, w)`: eagerly through `OneDNNProduct`, traced as `baddbmm` (for
    `OneDNNProducts` to swap; a TorchScript trace keeps it, so that the file runs without
    widerl). The caller has checked `worth_it`."""
    if torch.compiler.is_compiling() or torch.jit.is_tracing():
        return torch.baddbmm(b, x, w)
    return OneDNNProduct.apply(x, w, b)


def worth_it(a: torch.Tensor, m: Any, k: Any, n: Any) -> bool:
    """Whether a product of `a`'s device and dtype with these sizes goes through oneDNN: a
    float32 CPU product of at least MIN_SIZE on every side (sizes known, not symbolic),
    outside autocast (--amp bf16 keeps autocast's own products), in a process where oneDNN
    won (`use_onednn`). Thinner products lose to MKL's (one output: 9 against 23-36 GFLOP/s)
    or are too small to matter."""
    sizes_known = all(type(s) is int for s in (m, k, n))
    return (
        sizes_known
        and min(m, k, n) >= MIN_SIZE
        and a.device.type == "cpu"
        and a.dtype == torch.float32
        and not torch.is_autocast_enabled("cpu")
        and use_onednn()
    )


class OneDNNProducts(CustomGraphPass):
    """Inductor's post-grad pass (`torch.compile(options={"post_grad_custom_post_pass":
    ...})`): every float32 CPU `bmm` / `baddbmm` of the forward and backward graphs that
    `worth_it` accepts becomes `widerl::onednn_bmm`, which inductor calls as it would have
    called the BLAS. Its uuid (this file's hash and the process's choice) is part of torch's
    cache key, so a graph compiled with the other choice is never reused. `swapped` counts the
    products it has swapped."""

    def __init__(self) -> None:
        self.swapped = 0

    def __call__(self, graph: torch.fx.Graph) -> None:
        bmm, baddbmm = torch.ops.aten.bmm.default, torch.ops.aten.baddbmm.default
        for node in list(graph.nodes):
            if node.op != "call_function" or node.target not in (bmm, baddbmm):
                continue
            if node.target is baddbmm:
                bias, a, b = node.args[:3]
                if node.kwargs or len(node.args) > 3:  # beta / alpha other than 1
                    continue
                if not _member_bias(bias):
                    continue
            else:
                (a, b), bias = node.args[:2], None
            if not (isinstance(a, torch.fx.Node) and isinstance(b, torch.fx.Node)):
                continue
            va, vb = a.meta.get("val"), b.meta.get("val")
            if va is None or vb is None or va.dim() != 3:
                continue
            if not worth_it(va, va.shape[1], va.shape[2], vb.shape[2]):
                continue
            with graph.inserting_before(node):
                new = graph.call_function(torch.ops.widerl.onednn_bmm.default, (a, b, bias))
            new.meta.update(node.meta)
            node.replace_all_uses_with(new)
            graph.erase_node(node)
            self.swapped += 1

    def uuid(self) -> Any:
        return (get_hash_for_files((__file__,)), use_onednn(), MIN_SIZE)


def _member_bias(bias: Any) -> bool:
    """A baddbmm bias that is a per-member row `[E, 1, N]` (what EnsembleLinear adds)."""
    v = getattr(bias, "meta", {}).get("val")
    return v is not None and v.dim() == 3 and v.shape[1] == 1


def compile_options() -> dict[str, Any]:
    """Inductor's options that route a CPU step's products through oneDNN where it won
    (none where it did not)."""
    return {"post_grad_custom_post_pass": OneDNNProducts()} if use_onednn() else {}


def _count_flops() -> None:
    """FlopCounterMode (`widerl bench`'s FLOPs per update, tests) counts these products as
    it counts `bmm`: 2 M K N each (`_linear_pointwise` eagerly, `onednn_bmm` compiled)."""

    def linear_flops(x_shape: Any, w_shape: Any, *args: Any, **kwargs: Any) -> int:
        return 2 * math.prod(x_shape) * w_shape[0]

    def bmm_flops(a_shape: Any, b_shape: Any, *args: Any, **kwargs: Any) -> int:
        return 2 * math.prod(a_shape) * b_shape[-1]

    for op, formula in ((torch.ops.mkldnn._linear_pointwise, linear_flops),
                        (torch.ops.widerl.onednn_bmm, bmm_flops)):  # fmt: skip
        if op not in flop_counter.flop_registry:
            flop_counter.register_flop_formula(op)(formula)


_count_flops()
