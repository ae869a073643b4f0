"""--amp bf16: one learning step under bfloat16 autocast stays close to the float32 step from
the same state and batch, for every family with its own numerics, and leaves every kept
tensor float32."""

from __future__ import annotations

import pytest
import torch

from widerl.agents import make_agent
from widerl.config import resolve
from widerl.replay.buffer import ReplayBuffer
from widerl.run.step import LearnStep

OBS, ACT = 5, 2
FAMILIES = {
    "sac-mlp": {"algo": "sac"},
    "td3-mlp": {"algo": "td3", "policy_delay": 1},
    "crossq-batch-renorm": {"algo": "crossq", "policy_delay": 1},
    "sac-simba-c51": {"algo": "sac", "arch": "simba", "critic_head": "c51", "atoms": 11},
    "sac-densenet-ofenet-batchnorm": {
        "algo": "sac", "arch": "densenet", "ofenet_units": 8, "ofenet_layers": 2,
        "batchnorm": True,
    },
    "td3-bronet-hlgauss": {
        "algo": "td3", "arch": "bronet", "critic_head": "hlgauss", "atoms": 11,
        "policy_delay": 1,
    },
}  # fmt: skip
# bfloat16 keeps 8 significant bits (relative rounding 2^-9 = 0.2%). Measured here: the
# step's losses and mean Q moved by up to 4.8% (BroNet's actor loss; 1.6% for its mean Q),
# and the parameter updates agreed in sign on 99.1-99.8% of the entries. The tolerances:
LOSS_RTOL = 0.1
SIGN_AGREEMENT = 0.98  # of the parameter entries the float32 step moved


def one_step(kw: dict, amp: str) -> tuple[dict, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    cfg = resolve({"units": 32, "layers": 2, "amp": amp, **kw})
    agent = make_agent(cfg, OBS, ACT, torch.device("cpu"))
    g = torch.Generator().manual_seed(1)
    rb = ReplayBuffer(OBS, ACT, 512, seed=3)
    rb.add(torch.randn(256, OBS, generator=g), torch.rand(256, ACT, generator=g) * 2 - 1,
           torch.randn(256, generator=g), torch.randn(256, OBS, generator=g),
           torch.zeros(256))  # fmt: skip
    before = {k: v.clone() for k, v in agent.state_dict().items() if v.is_floating_point()}
    metrics = LearnStep(rb, agent.features, agent, 64)(0, 10)
    after = {k: v for k, v in agent.state_dict().items() if v.is_floating_point()}
    return metrics, before, after


@pytest.mark.parametrize("family", list(FAMILIES))
def test_a_bf16_step_stays_close_to_the_float32_step(family: str) -> None:
    m32, start, f32 = one_step(FAMILIES[family], "off")
    m16, start16, bf16 = one_step(FAMILIES[family], "bf16")
    assert all(torch.equal(start[k], start16[k]) for k in start)  # the same state and batch
    assert {v.dtype for v in bf16.values()} == {torch.float32}  # nothing kept is bfloat16
    for k in ("critic_loss", "q_mean", "actor_loss"):
        assert m16[k].dtype == torch.float32
        assert float(m16[k]) == pytest.approx(float(m32[k]), rel=LOSS_RTOL, abs=1e-2), k
    moved = agree = 0
    for k in f32:
        d32, d16 = f32[k] - start[k], bf16[k] - start[k]
        mask = d32 != 0
        moved += int(mask.sum())
        agree += int((torch.sign(d32[mask]) == torch.sign(d16[mask])).sum())
    assert moved > 1_000 and agree / moved >= SIGN_AGREEMENT, agree / moved
    assert any(not torch.equal(f32[k], bf16[k]) for k in f32)  # bf16 did run


def test_a_gpu_without_bf16_is_refused_before_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    from widerl.config import ConfigError
    from widerl.run import preflight

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Tesla T4")
    with pytest.raises(ConfigError, match=r"--amp bf16: this GPU \(Tesla T4\) has no bfloat16"):
        preflight._check_bf16(torch.device("cuda"))
