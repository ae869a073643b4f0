"""The paper's lineage (issue 26): SimbaV2's hypersphere (body, weight projection, reward
scaling), and the weight projection XQC composes with CrossQ. Equations against hand-computed
cases; the learning step with each piece; resets and checkpoints."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from widerl.agents import make_agent
from widerl.collect.collector import Collector
from widerl.collect.envs import make_vec_env
from widerl.collect.reward_scale import ReturnScale
from widerl.config import ConfigError, resolve
from widerl.nets.bodies import make_body
from widerl.nets.bodies.simbav2 import C_SHIFT, HyperLinear, l2
from widerl.nets.ensemble import EnsembleScaler, ensemble_linears, project_unit_norm
from widerl.nets.optim import Adam
from widerl.replay.buffer import Batch, ReplayBuffer
from widerl.run.step import LearnStep

OBS, ACT, B = 5, 2, 64


def fixed_batch(seed: int = 0, rew_scale: float = 1.0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    return Batch(
        obs=torch.randn(B, OBS, generator=g),
        act=torch.rand(B, ACT, generator=g) * 2 - 1,
        rew=torch.randn(B, generator=g) * rew_scale,
        next_obs=torch.randn(B, OBS, generator=g),
        term=torch.zeros(B),
        weight=None,
        idx=torch.arange(B),
    )


def agent_for(algo: str = "sac", **kw: object):  # noqa: ANN201
    torch.manual_seed(0)
    cfg = resolve({"algo": algo, "units": 16, "layers": 2, **kw})
    return make_agent(cfg, OBS, ACT, torch.device("cpu"))


def unit_columns(w: torch.Tensor) -> bool:
    return torch.allclose(torch.linalg.vector_norm(w, dim=1), torch.ones(()), atol=1e-5)


# --- the projection ---------------------------------------------------------------------------
def test_projection_hand_computed() -> None:
    # One member, 2 inputs, 2 output units: columns (3, 4) and (0, -2).
    w = torch.tensor([[[3.0, 0.0], [4.0, -2.0]]])
    project_unit_norm(w)
    assert torch.allclose(w, torch.tensor([[[0.6, 0.0], [0.8, -1.0]]]))


def test_adam_projects_after_its_step_and_leaves_the_rest() -> None:
    p = torch.tensor([[[1.0], [1.0]]])
    q = p.clone()
    opt = Adam([p, q], lr=0.1, projected=[True, False])
    opt.step([torch.tensor([[[1.0], [-1.0]]])] * 2)
    # Adam's first step moves each entry by lr against its gradient's sign: (0.9, 1.1).
    assert torch.allclose(q, torch.tensor([[[0.9], [1.1]]]))
    assert torch.allclose(p, q / math.hypot(0.9, 1.1))


def test_scaler_starts_at_its_init_and_moves_at_its_scale() -> None:
    s = EnsembleScaler(2, 3, init=0.5, scale=0.1)
    assert torch.allclose(s.scale(), torch.full((2, 1, 3), 0.5))
    assert torch.allclose(s.param, torch.full((2, 1, 3), 0.1))
    x = torch.ones(2, 4, 3)
    assert torch.allclose(s(x), 0.5 * x)


# --- the SimbaV2 body ---------------------------------------------------------------------
def test_simbav2_body_by_hand() -> None:
    body = make_body("simbav2", 2, OBS, 8, 1)
    emb, block = body.layers
    x = torch.randn(2, 7, OBS)
    # The embedding: shift + l2, a unit-norm Linear without bias, scaler, l2.
    xs = torch.cat([x, torch.full((2, 7, 1), C_SHIFT)], -1)
    xs = xs / xs.norm(dim=-1, keepdim=True)
    h = xs @ emb.linear.weight * (1 / math.sqrt(8))
    h = h / h.norm(dim=-1, keepdim=True)
    assert torch.allclose(emb(x), h, atol=1e-6)
    # The LERP block, alpha = 1 / (L + 1) = 1/2 at initialisation.
    t = torch.relu(h @ block.up.weight * (1 / math.sqrt(8))) @ block.down.weight
    t = t / t.norm(dim=-1, keepdim=True)
    out = h + 0.5 * (t - h)
    out = out / out.norm(dim=-1, keepdim=True)
    assert torch.allclose(body(x), out, atol=1e-6)
    assert torch.allclose(body(x).norm(dim=-1), torch.ones(2, 7), atol=1e-5)
    linears = ensemble_linears(body)
    assert linears and all(isinstance(m, HyperLinear) for m in linears)
    assert all(unit_columns(m.weight) and not m.bias.any() for m in linears)


def test_l2_keeps_float32_under_bf16() -> None:
    x = torch.randn(3, 300).to(torch.bfloat16)
    assert l2(x).dtype == torch.bfloat16
    assert torch.allclose(l2(x).float().norm(dim=-1), torch.ones(3), atol=1e-2)


def test_simbav2_weights_stay_on_the_sphere_through_updates_and_resets() -> None:
    agent = agent_for("sac", arch="simbav2", critic_head="c51", atoms=11, v_min=-5, v_max=5)
    rb = ReplayBuffer(OBS, ACT, 1_000, seed=3)
    for i in range(3):
        b = fixed_batch(seed=i)
        rb.add(b.obs, b.act, b.rew, b.next_obs, b.term)
    step = LearnStep(rb, agent.features, agent, 32)
    before = {k: v.clone() for k, v in agent.state_dict().items()}
    for i in range(3):
        metrics = step(i, 3)
    assert all(torch.isfinite(v).all() for v in metrics.values())
    hyper = [m for m in ensemble_linears(agent) if m.unit_norm]
    # Embedding + 2 blocks of 2 in the critics, their target copy and the actor.
    assert len(hyper) == (1 + 2 * 2) * 3
    projected = {id(p) for opt in agent.optimizers().values() for p in opt.projected}
    trained = [m for m in hyper if not any(m is t for t in agent.critics_target.modules())]
    assert {id(m.weight) for m in trained} == projected
    for m in hyper:
        assert unit_columns(m.weight)
    scalers = [n for n in agent.state_dict() if n.endswith(".param")]
    assert scalers and all(not torch.equal(agent.state_dict()[n], before[n]) for n in scalers)
    agent.reset_networks()
    for m in hyper:
        assert unit_columns(m.weight) and not m.bias.any()


def test_simbav2_config_rules() -> None:
    with pytest.raises(ConfigError, match="hypersphere; it does not take --batchnorm"):
        resolve({"arch": "simbav2", "batchnorm": True})
    with pytest.raises(ConfigError, match="uses ReLU"):
        resolve({"arch": "simbav2", "activation": "swish"})
    cfg = resolve({"env": "Hopper-v5"}, "simbav2")
    assert cfg.reward_scaling and (cfg.v_min, cfg.v_max) == (-5.0, 5.0) and cfg.atoms == 101


# --- --weight-projection (XQC) ------------------------------------------------------------
@pytest.mark.parametrize("algo", ["sac", "crossq"])
def test_weight_projection_keeps_body_weights_unit_norm(algo: str) -> None:
    agent = agent_for(algo, weight_projection=True)
    body_linears = [m for m in ensemble_linears(agent) if m.unit_norm]
    heads = [m for m in ensemble_linears(agent) if not m.unit_norm]
    assert body_linears and heads  # the heads are not projected
    for i in range(3):
        agent.update(fixed_batch(seed=i))
    assert all(unit_columns(m.weight) for m in body_linears)
    plain = agent_for(algo)
    assert not any(m.unit_norm for m in ensemble_linears(plain))


# --- reward scaling -----------------------------------------------------------------------
def test_return_scale_hand_computed() -> None:
    rs = ReturnScale(g_max=5.0)
    assert rs.scale() == 1.0
    rs.add(np.array([1.0, 3.0]))
    rs.add(np.array([-2.0]))
    g = np.array([1.0, 3.0, -2.0])
    assert rs.count == 3 and math.isclose(rs.var, g.var()) and rs.abs_max == 3.0
    # sqrt(var) = 2.055 > max|G| / G_max = 0.6
    assert math.isclose(rs.scale(), math.sqrt(g.var() + 1e-8))
    rs.add(np.array([40.0]))
    g = np.append(g, 40.0)
    assert math.isclose(rs.scale(), max(math.sqrt(g.var() + 1e-8), 40.0 / 5.0))
    other = ReturnScale(5.0)
    other.load_state_dict(rs.state_dict())
    assert other.scale() == rs.scale()


def test_collector_tracks_each_envs_discounted_return() -> None:
    envs = make_vec_env("Pendulum-v1", 2)
    col = Collector(envs, 0, torch.device("cpu"), return_gamma=0.5)
    g = np.zeros(2)
    for _ in range(3):
        chunk = col.step(None)
        g = 0.5 * g + chunk.rew
        assert np.allclose(chunk.disc_return, g, atol=1e-4)
    state = col.state_dict()
    assert np.allclose(state["disc_return"].numpy(), g)
    envs.close()
    assert (
        Collector(make_vec_env("Pendulum-v1", 1), 0, torch.device("cpu")).step(None).disc_return
        is None
    )


def test_the_learning_step_divides_rewards_by_the_scale() -> None:
    """An agent at reward scale c on rewards c * r learns exactly what it learns on r."""
    a = agent_for("sac", reward_scaling=True)
    b = agent_for("sac", reward_scaling=True)
    a.reward_scale.fill_(4.0)
    for i in range(2):
        ma = a.update(fixed_batch(seed=i, rew_scale=4.0))
        mb = b.update(fixed_batch(seed=i))
        assert torch.allclose(ma["critic_loss"], mb["critic_loss"], rtol=1e-4)
    for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True):
        assert torch.allclose(x, y, rtol=1e-4, atol=1e-6)
    rs = ReturnScale(5.0)
    rs.add(np.array([10.0, 30.0]))
    a.set_reward_scale([rs])
    assert math.isclose(float(a.reward_scale[0]), rs.scale(), rel_tol=1e-6)
    assert "reward_scale" not in a.state_dict()  # the intake's statistics are checkpointed
