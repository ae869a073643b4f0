import pytest
import torch

from widerl.analysis.summary import count, network_tables
from widerl.config import HYPERSPHERE_ARCHS, LAYERNORM_ARCHS, resolve
from widerl.config.registries import REGISTRIES
from widerl.nets.bodies import make_body
from widerl.nets.ensemble import (
    THIN_MIN_ROWS,
    THIN_OUT,
    EnsembleLinear,
    reset_members,
    thin_product,
)
from widerl.nets.norms import EnsembleBatchNorm


def body(arch: str, in_dim: int, units: int, layers: int, activation: str = "relu", **kw):  # noqa: ANN201
    return make_body(arch, 1, in_dim, units, layers, activation=activation, **kw)


@pytest.mark.parametrize("arch", ["mlp", "resnet", "d2rl", "densenet"])
@pytest.mark.parametrize("layers", [1, 2, 4])
def test_body_shapes_and_params(arch: str, layers: int) -> None:
    in_dim, units = 7, 32
    b = body(arch, in_dim, units, layers, "swish")
    y = b(torch.randn(1, 5, in_dim))
    expected_out = in_dim + layers * units if arch == "densenet" else units
    assert b.out_dim == expected_out and y.shape == (1, 5, expected_out)
    # Input width of every layer, from the definitions in Sec. 3.3 / 4.2.
    ins = [layer.in_dim for layer in b.layers]
    if arch == "densenet":
        assert ins == [in_dim + i * units for i in range(layers)]
    elif arch == "d2rl":
        assert ins == [in_dim] + [units + in_dim] * (layers - 1)
    else:
        assert ins == [in_dim] + [units] * (layers - 1)
    assert count(b) == sum(i * units + units for i in ins)


def test_resnet_skip_and_densenet_concat() -> None:
    torch.manual_seed(0)
    x = torch.randn(1, 3, 4)
    res = body("resnet", 4, 8, 2)
    y1 = res.layers[0](x)
    assert torch.allclose(res(x), res.layers[1](y1) + y1)
    dense = body("densenet", 4, 8, 2)
    out = dense(x)
    assert torch.equal(out[..., :4], x)  # the input is carried through (y_0 = x)
    y1 = dense.layers[0](x)
    assert torch.allclose(out[..., 4:12], y1)
    assert torch.allclose(out[..., 12:], dense.layers[1](torch.cat([x, y1], -1)))


def test_d2rl_feeds_input_to_later_layers() -> None:
    x = torch.randn(1, 3, 4)
    d2 = body("d2rl", 4, 8, 3)
    y = d2.layers[0](x)
    for layer in d2.layers[1:]:
        y = layer(torch.cat([y, x], -1))
    assert torch.allclose(d2(x), y)


def test_batchnorm_counted_like_table2_and_modes() -> None:
    b = body("densenet", 111, 256, 1, "swish", batchnorm=True)
    # Table 2, OFENet 1st layer: 111 -> 256 has 29,696 (Linear + BN weight, bias, mean, var).
    assert count(b) == 29_696
    b.train()
    x = torch.randn(1, 64, 111) * 3 + 1
    before = b.layers[0].norm.running_mean.clone()
    b(x)
    assert not torch.equal(before, b.layers[0].norm.running_mean)  # train mode: stats move
    b.eval()
    frozen = b.layers[0].norm.running_mean.clone()
    b(x)
    assert torch.equal(frozen, b.layers[0].norm.running_mean)


def test_table2_original_policy_96520() -> None:
    cfg = resolve({}, "paper-original")
    tables = network_tables(cfg, 111, 8)
    name, rows, total, extra = tables[0]
    assert [(r[1], r[2], r[3]) for r in rows] == [
        (111, 256, 28_672),
        (256, 256, 65_792),
        (256, 8, 2_056),
    ]
    assert total == 96_520
    assert extra[0][3] == 2_056  # log-std head listed on its own


def test_table2_ours_sac_layers() -> None:
    """Table 2 'SAC (Ours)': a 2048-wide DenseNet on z_s of 2,159 = 111 + 2,048 features."""
    cfg = resolve({"arch": "densenet", "units": 2048, "layers": 2})
    name, rows, total, _ = network_tables(cfg, 2_159, 8)[0]
    assert [(r[1], r[2], r[3]) for r in rows] == [
        (2_159, 2_048, 4_423_680),
        (4_207, 2_048, 8_617_984),
        (6_255, 8, 50_048),
    ]
    assert total == 13_091_712


# --- the members dimension ------------------------------------------------------------------
def test_ensemble_linear_is_one_linear_per_member() -> None:
    layer = EnsembleLinear(3, 5, 4)
    x = torch.randn(3, 7, 5)
    y = layer(x)
    for e in range(3):
        torch.testing.assert_close(y[e], x[e] @ layer.weight[e] + layer.bias[e])


@pytest.mark.parametrize("outputs", [1, 6, THIN_OUT, THIN_OUT + 1])
@pytest.mark.parametrize("rows", [1, THIN_MIN_ROWS])
def test_a_thin_layer_gives_the_plain_products_values_and_gradients(
    outputs: int, rows: int
) -> None:
    """A layer of few outputs (a Q head, a policy's mean) over a full batch takes
    `thin_product`'s forms on a CPU; its output and its gradients for the input, the weights
    and the biases are baddbmm's, up to the order of the float sums, member by member."""
    layer = EnsembleLinear(2, 40, outputs)
    x = torch.randn(2, rows, 40, requires_grad=True)
    g = torch.randn(2, rows, outputs)
    y = layer(x)
    thin = outputs <= THIN_OUT and rows >= THIN_MIN_ROWS
    assert (y.grad_fn.name() != "BaddbmmBackward0") == thin  # which form ran
    ref = torch.baddbmm(layer.bias, x, layer.weight)
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)
    assert y.is_contiguous()
    params = (x, layer.weight, layer.bias)
    grads, ref_grads = torch.autograd.grad(y, params, g), torch.autograd.grad(ref, params, g)
    for a, b in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    if thin:  # members never mix: member 0 alone gets the same numbers
        assert torch.equal(thin_product(x[:1], layer.weight[:1], layer.bias[:1]), y[:1])


@pytest.mark.parametrize("compiled", [False, True])
def test_frozen_prefix_gives_the_plain_gradients_with_fewer_flops(compiled: bool) -> None:
    """A DenseNet whose input begins with constant columns (z_s inside z_sa in the actor's
    loss): the gradients of the other input columns and of the weights equal the plain
    product's, eagerly and traced by torch.compile under torch.func.grad (what the compiled
    step runs), and the backward skips the constant columns' products."""
    from torch.utils.flop_counter import FlopCounterMode

    net = make_body("densenet", 2, 12, 16, 3, activation="swish")
    reset_members(net, [torch.Generator().manual_seed(s) for s in (0, 1)])
    const, var = torch.randn(2, 32, 9), torch.randn(2, 32, 3)
    w = net.layers[1].linear.weight

    def loss(w_: torch.Tensor, var_: torch.Tensor) -> torch.Tensor:
        out = torch.func.functional_call(
            net, {"layers.1.linear.weight": w_}, (torch.cat([const, var_], -1), 9)
        )
        return out.square().sum()

    def grad(w_: torch.Tensor, var_: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.func.grad(loss, argnums=(0, 1))(w_, var_)

    with FlopCounterMode(display=False) as skipped:
        ours = grad(w, var)
    if compiled:  # outside the counter: a dispatch mode keeps dynamo out
        ours = torch.compile(grad, fullgraph=True, backend="aot_eager")(w, var)
    plain = pytest.MonkeyPatch()
    plain.setattr(EnsembleLinear, "forward", EnsembleLinear.product)
    try:
        with FlopCounterMode(display=False) as full:
            ref = grad(w, var)
    finally:
        plain.undo()
    for a, b in zip(ours, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert ours[1].abs().sum() > 0
    assert skipped.get_total_flops() < full.get_total_flops()


def test_ensemble_init_matches_torch_linear_bounds_and_is_per_seed() -> None:
    """torch's nn.Linear default: weights and biases U(-1/sqrt(in), 1/sqrt(in)); Glorot:
    U(-sqrt(6/(in+out)), ...), zero bias. Seed k's members come from generators[k] alone."""
    layer = EnsembleLinear(4, 100, 50)
    bound = 1 / 100**0.5
    assert layer.weight.abs().max() <= bound and layer.weight.abs().max() > 0.9 * bound
    glorot = EnsembleLinear(1, 100, 50, init="glorot")
    assert glorot.weight.abs().max() <= (6 / 150) ** 0.5 and torch.count_nonzero(glorot.bias) == 0
    # Two seeds x two members; seed 1 alone (one seed x two members) draws the same values.
    both = EnsembleLinear(4, 6, 3)
    both.reset_parameters([torch.Generator().manual_seed(s) for s in (10, 11)])
    alone = EnsembleLinear(2, 6, 3)
    alone.reset_parameters([torch.Generator().manual_seed(11)])
    assert torch.equal(both.weight[2:], alone.weight) and torch.equal(both.bias[2:], alone.bias)


@pytest.mark.parametrize("arch", sorted(REGISTRIES["arch"]))
def test_members_never_mix(arch: str) -> None:
    """Member e's output depends on member e's input and parameters only (with BatchNorm,
    except for the LayerNorm bodies, which take none)."""
    batchnorm = arch not in (*LAYERNORM_ARCHS, *HYPERSPHERE_ARCHS)
    b = make_body(arch, 3, 6, 8, 2, activation="swish", batchnorm=batchnorm)
    reset_members(b, [torch.Generator().manual_seed(s) for s in (0, 1, 2)])
    x = torch.randn(3, 16, 6)
    y = b(x)
    x2 = x.clone()
    x2[1] += torch.randn(16, 6)  # not a constant shift, which BatchNorm would remove
    with torch.no_grad():
        for p in b.parameters():
            p[2].mul_(1.5)
    y2 = b(x2)
    assert torch.equal(y[0], y2[0])
    assert not torch.allclose(y[1], y2[1]) and not torch.allclose(y[2], y2[2])


def test_ensemble_batchnorm_matches_torch_per_member() -> None:
    torch.manual_seed(0)
    bn = EnsembleBatchNorm(2, 5, momentum=0.1, eps=1e-5)
    ref = [torch.nn.BatchNorm1d(5, momentum=0.1, eps=1e-5) for _ in range(2)]
    x = (torch.randn(2, 32, 5) * 3 + 1).requires_grad_(True)
    y = bn(x)
    g = torch.randn_like(y)
    grads = torch.autograd.grad(y, (x, bn.weight, bn.bias), g)
    for e in range(2):
        want = ref[e](x[e])
        torch.testing.assert_close(y[e], want)
        # The gradients too (nets/norms.py's BatchNormalize writes the backward by hand).
        ref_grads = torch.autograd.grad(want, (x, ref[e].weight, ref[e].bias), g[e])
        torch.testing.assert_close(grads[0][e], ref_grads[0][e])
        torch.testing.assert_close(grads[1][e, 0], ref_grads[1])
        torch.testing.assert_close(grads[2][e, 0], ref_grads[2])
        torch.testing.assert_close(bn.running_mean[e, 0], ref[e].running_mean)
        torch.testing.assert_close(bn.running_var[e, 0], ref[e].running_var)
    bn.eval()
    for r in ref:
        r.eval()
    for e in range(2):
        torch.testing.assert_close(bn(x)[e], ref[e](x[e]))
