import pytest
import torch

from widerl.config import resolve
from widerl.nets.blocks import Body
from widerl.summary import count, network_tables


@pytest.mark.parametrize("arch", ["mlp", "resnet", "d2rl", "densenet"])
@pytest.mark.parametrize("layers", [1, 2, 4])
def test_body_shapes_and_params(arch: str, layers: int) -> None:
    in_dim, units = 7, 32
    body = Body(in_dim, arch, units, layers, "swish")
    y = body(torch.randn(5, in_dim))
    expected_out = in_dim + layers * units if arch == "densenet" else units
    assert body.out_dim == expected_out and y.shape == (5, expected_out)
    # Input width of every layer, from the definitions in Sec. 3.3 / 4.2.
    ins = [layer.in_dim for layer in body.layers]
    if arch == "densenet":
        assert ins == [in_dim + i * units for i in range(layers)]
    elif arch == "d2rl":
        assert ins == [in_dim] + [units + in_dim] * (layers - 1)
    else:
        assert ins == [in_dim] + [units] * (layers - 1)
    assert count(body) == sum(i * units + units for i in ins)


def test_resnet_skip_and_densenet_concat() -> None:
    torch.manual_seed(0)
    x = torch.randn(3, 4)
    res = Body(4, "resnet", 8, 2, "relu")
    y1 = res.layers[0](x)
    assert torch.allclose(res(x), res.layers[1](y1) + y1)
    dense = Body(4, "densenet", 8, 2, "relu")
    out = dense(x)
    assert torch.equal(out[:, :4], x)  # the input is carried through (y_0 = x)
    y1 = dense.layers[0](x)
    assert torch.allclose(out[:, 4:12], y1)
    assert torch.allclose(out[:, 12:], dense.layers[1](torch.cat([x, y1], -1)))


def test_d2rl_feeds_input_to_later_layers() -> None:
    x = torch.randn(3, 4)
    d2 = Body(4, "d2rl", 8, 3, "relu")
    y = d2.layers[0](x)
    for layer in d2.layers[1:]:
        y = layer(torch.cat([y, x], -1))
    assert torch.allclose(d2(x), y)


def test_batchnorm_counted_like_table2_and_modes() -> None:
    body = Body(111, "densenet", 256, 1, "swish", batchnorm=True)
    # Table 2, OFENet 1st layer: 111 -> 256 has 29,696 (Linear + BN weight, bias, mean, var).
    assert count(body) == 29_696
    body.train()
    x = torch.randn(64, 111) * 3 + 1
    before = body.layers[0].norm.running_mean.clone()
    body(x)
    assert not torch.equal(before, body.layers[0].norm.running_mean)  # train mode: stats move
    body.eval()
    frozen = body.layers[0].norm.running_mean.clone()
    body(x)
    assert torch.equal(frozen, body.layers[0].norm.running_mean)


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
