"""nets/onednn.py: the members' products through oneDNN, eagerly and in a compiled step."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from widerl.nets import onednn
from widerl.nets.ensemble import EnsembleLinear


@pytest.fixture
def chosen(monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    """Sets the process's choice (oneDNN or the BLAS) for one test, whatever this CPU's."""

    def choose(use: bool | None) -> None:
        monkeypatch.setattr(onednn, "_decided", use)

    return choose


def _layer(members: int = 3) -> EnsembleLinear:
    torch.manual_seed(0)
    return EnsembleLinear(members, 20, 24)


@pytest.mark.parametrize("members", [3, 1])
def test_a_layers_product_and_its_gradients_are_baddbmms(chosen, members: int) -> None:  # noqa: ANN001
    """Eagerly: the output and the gradients of the input, weights and bias equal those of
    `baddbmm` (to float rounding), for a contiguous input, a transposed view, and an input
    that needs no gradient; one member (an actor) as several (critics)."""
    chosen(True)
    layer = _layer(members)
    e = members
    for x in (torch.randn(e, 40, 20), torch.randn(e, 20, 40).transpose(1, 2)):
        for needs_grad in (True, False):
            x = x.detach().requires_grad_(needs_grad)
            y = layer(x)
            assert y.grad_fn is not None and "OneDNNProduct" in type(y.grad_fn).__name__
            ref = torch.baddbmm(layer.bias, x, layer.weight)
            torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)
            g = torch.randn_like(y)
            inputs = [layer.weight, layer.bias, *([x] if needs_grad else [])]
            ours = torch.autograd.grad(y, inputs, g)
            theirs = torch.autograd.grad(ref, inputs, g)
            for a, b in zip(ours, theirs, strict=True):
                torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_the_blas_choice_and_thin_or_few_row_products_keep_baddbmm(chosen) -> None:  # noqa: ANN001
    chosen(False)
    layer = _layer()
    assert type(layer(torch.randn(3, 40, 20)).grad_fn).__name__ == "BaddbmmBackward0"
    chosen(True)
    # acting and evaluation (a few rows), and a product with a side under MIN_SIZE
    assert type(layer(torch.randn(3, 2, 20)).grad_fn).__name__ == "BaddbmmBackward0"
    assert not onednn.worth_it(torch.empty(0), 256, 256, onednn.MIN_SIZE - 1)
    assert not onednn.worth_it(torch.empty(0, dtype=torch.float64), 256, 256, 256)
    assert onednn.worth_it(torch.empty(0), 256, 256, 256)


def test_a_torchscript_trace_keeps_baddbmm(chosen) -> None:  # noqa: ANN001
    """An exported file must run without widerl: a trace records baddbmm, not our products."""
    chosen(True)
    traced = torch.jit.trace(_layer(), torch.randn(3, 40, 20))
    code = str(traced.inlined_graph)
    assert "baddbmm" in code and "mkldnn" not in code and "OneDNN" not in code


def test_flops_are_counted_as_baddbmms(chosen) -> None:  # noqa: ANN001
    """FlopCounterMode (widerl bench's FLOPs per update) counts the same products either
    way: forward, input and weight gradients."""

    def flops(use: bool) -> int:
        chosen(use)
        layer, x = _layer(), torch.randn(3, 40, 20, requires_grad=True)
        with FlopCounterMode(display=False) as counter:
            layer(x).square().sum().backward()
        return counter.get_total_flops()

    assert flops(True) == flops(False) == 3 * 2 * 3 * 40 * 20 * 24


def test_the_choice_follows_the_environment_or_the_probe(
    chosen,  # noqa: ANN001
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for value, expected in (("blas", False), ("onednn", True), (" ONEDNN ", True)):
        chosen(None)
        monkeypatch.setenv("WIDERL_CPU_MATMUL", value)
        assert onednn.use_onednn() is expected
        assert onednn.decided() == ("onednn" if expected else "blas")
        assert "WIDERL_CPU_MATMUL" in onednn.describe()
    monkeypatch.setenv("WIDERL_CPU_MATMUL", "auto")
    for ratio, expected in ((2.0, True), (onednn.MARGIN - 0.01, False)):
        chosen(None)
        monkeypatch.setattr(onednn, "_probe", lambda r=ratio: r)
        assert onednn.use_onednn() is expected
        assert f"{ratio:.2f}x" in onednn.describe()
    chosen(None)
    monkeypatch.setenv("WIDERL_CPU_MATMUL", "gpu")
    with pytest.raises(ValueError, match="WIDERL_CPU_MATMUL='gpu': choose one of auto, onednn"):
        onednn.use_onednn()


def test_the_probe_times_real_tensors_where_networks_are_built_on_meta() -> None:
    """Networks are first built on the meta device; the probe still times real products."""
    with torch.device("meta"):
        ratio = onednn._probe()
    assert 0.05 < ratio < 20


def test_a_compiled_gradient_calls_onednn_for_its_products(
    chosen,  # noqa: ANN001
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Inductor with the post-grad pass (what `compile_step` passes on a CPU where oneDNN
    won): torch.func.grad of a two-layer loss, as the learning step takes it, runs its
    forward product and its weight gradient through oneDNN (not the thin last layer's), and
    the gradients equal the eager BLAS's."""
    chosen(True)
    calls = []
    products = onednn._member_products
    monkeypatch.setattr(onednn, "_member_products", lambda *a: calls.append(1) or products(*a))
    torch.manual_seed(0)
    first, last = EnsembleLinear(2, 20, 32), EnsembleLinear(2, 32, 1)
    x = torch.randn(2, 64, 20)
    params = {"w": first.weight.detach(), "b": first.bias.detach()}

    def loss(p: dict[str, torch.Tensor]) -> torch.Tensor:
        h = torch.func.functional_call(first, {"weight": p["w"], "bias": p["b"]}, (x,))
        return last(torch.relu(h)).square().mean()

    def grads(p: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return torch.func.grad(loss)(p)

    swap = onednn.OneDNNProducts()
    compiled = torch.compile(grads, fullgraph=True, dynamic=False,
                             options={"post_grad_custom_post_pass": swap})  # fmt: skip
    with torch._inductor.config.patch(force_disable_caches=True):  # the pass runs here
        ours = compiled(params)
    assert swap.swapped == 2  # the forward product and the weight gradient (x needs none)
    assert len(calls) == 2
    chosen(False)
    ref = grads(params)
    for k in params:
        torch.testing.assert_close(ours[k], ref[k], rtol=1e-4, atol=1e-6)
