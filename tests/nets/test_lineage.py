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


# --- SALE (TD7) --------------------------------------------------------------------------------
def test_avg_l1_norm_hand_computed() -> None:
    from widerl.nets.latent import avg_l1_norm

    x = torch.tensor([[1.0, -3.0, 2.0, 2.0]])  # mean |x| = 2
    assert torch.allclose(avg_l1_norm(x), torch.tensor([[0.5, -1.5, 1.0, 1.0]]))


def test_sale_loss_is_eq_3_and_the_agent_sees_the_fixed_copy() -> None:
    from widerl.nets.sale import SALE

    sale = SALE(OBS, ACT, units=16, dim=8, refresh_every=3)
    sale.reset_parameters([torch.Generator().manual_seed(0)])
    b = fixed_batch()
    net = sale.online
    zs = net.f(b.obs.unsqueeze(0))
    zs = zs / zs.abs().mean(-1, keepdim=True)  # AvgL1Norm
    target = net.f(b.next_obs.unsqueeze(0))
    target = target / target.abs().mean(-1, keepdim=True)
    pred = net.g(torch.cat([zs, b.act.unsqueeze(0)], -1))
    want = (pred - target).square().mean()
    assert torch.allclose(sale.heldout_loss(b.obs, b.act, b.next_obs), want, rtol=1e-5)
    # [s, z_s] and [s, z_s, a, z_sa], from the fixed copy (inputs `[K, B, ...]`)
    obs, act = b.obs.unsqueeze(0), b.act.unsqueeze(0)
    z_s = sale.state(obs)
    assert z_s.shape == (1, B, OBS + 8) and torch.equal(z_s[..., :OBS], obs)
    z_sa = sale.state_action(z_s, act)
    assert z_sa.shape == (1, B, OBS + 8 + ACT + 8) and torch.equal(z_sa[..., : OBS + 8], z_s)
    fixed_before = sale.state(obs)
    losses = [float(sale.update(b.obs, b.act, b.next_obs)) for _ in range(2)]
    assert losses[1] < losses[0]
    # Two updates: the online encoder moved, the agent's fixed copy has not ...
    assert torch.equal(sale.state(obs), fixed_before)
    assert not torch.allclose(sale.online.f.l1.weight, sale.fixed.f.l1.weight)
    sale.update(b.obs, b.act, b.next_obs)  # ... until the 3rd, which refreshes it
    assert torch.equal(sale.online.f.l1.weight, sale.fixed.f.l1.weight)
    assert not torch.equal(sale.state(obs), fixed_before)


# --- MR.Q's encoder ----------------------------------------------------------------------------
def test_two_hot_hand_computed() -> None:
    from widerl.nets.mrq import TwoHot, symexp

    th = TwoHot(bins=5, low=-2.0, high=2.0)  # bins symexp(-2, -1, 0, 1, 2)
    e = math.e
    assert torch.allclose(th.bins, torch.tensor([-(e**2 - 1), -(e - 1), 0.0, e - 1, e**2 - 1]))
    x = torch.tensor([0.5 * (e - 1), 0.0, 100.0, -(e - 1)])
    enc = th.encode(x)
    assert torch.allclose(enc[0], torch.tensor([0.0, 0.0, 0.5, 0.5, 0.0]))
    assert torch.allclose(enc[1], torch.tensor([0.0, 0.0, 1.0, 0.0, 0.0]))
    assert torch.allclose(enc[2], torch.tensor([0.0, 0.0, 0.0, 0.0, 1.0]))  # clipped
    assert torch.allclose(enc[3], torch.tensor([0.0, 1.0, 0.0, 0.0, 0.0]))
    assert torch.allclose((enc * th.bins).sum(-1)[:2], x[:2])  # the expectation is x
    assert torch.allclose(symexp(torch.tensor([1.0])), torch.tensor([e - 1]))
    logits = torch.log(enc[:1] + 1e-30)
    assert torch.allclose(
        th.cross_entropy(logits, x[:1]), -(enc[:1] * logits.log_softmax(-1)).sum(-1)
    )


def test_replay_sequences_follow_one_envs_steps_and_mask_after_an_end() -> None:
    rb = ReplayBuffer(1, 1, 100, horizon=3)
    # One env: s0 -> s1 -> s2 (terminates) ; then s10 -> s11 (a time-limit end, no successor)
    obs = torch.tensor([[0.0], [1.0], [2.0], [10.0], [11.0]])
    nxt = torch.tensor([[1.0], [2.0], [3.0], [11.0], [12.0]])
    act = torch.tensor([[0.1], [0.2], [0.3], [0.4], [0.5]])
    rew = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    term = torch.tensor([0.0, 0.0, 1.0, 0.0, 0.0])
    rb.add(obs, act, rew, nxt, term)
    batch = rb.gather(torch.tensor([0.0, 0.2, 0.6, 0.8]) + 1e-3)
    assert batch.idx.tolist() == [0, 1, 3, 4]
    seq = batch.seq
    assert seq.rew.tolist() == [[1.0, 2.0, 3.0], [2.0, 3.0, 3.0], [4.0, 5.0, 5.0], [5.0, 5.0, 5.0]]
    assert seq.mask.tolist() == [[1, 1, 1], [1, 1, 0], [1, 1, 0], [1, 0, 0]]
    assert seq.next_obs[0, :, 0].tolist() == [1.0, 2.0, 3.0]
    assert seq.term[0].tolist() == [0.0, 0.0, 1.0]
    assert torch.allclose(seq.act[2, :2, 0], torch.tensor([0.4, 0.5]))
    plain = ReplayBuffer(1, 1, 10)
    plain.add(obs, act, rew, nxt, term)
    assert plain.sample(2).seq is None  # only where a learner asks


def test_mrq_loss_unrolls_its_model_and_masks_missing_steps() -> None:
    from types import SimpleNamespace

    from widerl.nets.mrq import MRQEncoder

    enc = MRQEncoder(OBS, ACT, units=16, dim=8, horizon=2)
    enc.reset_parameters([torch.Generator().manual_seed(1)])
    g = torch.Generator().manual_seed(2)
    k, b, h = 1, 6, 2
    seq = SimpleNamespace(
        act=torch.rand(k, b, h, ACT, generator=g), rew=torch.randn(k, b, h, generator=g),
        next_obs=torch.randn(k, b, h, OBS, generator=g), term=torch.zeros(k, b, h),
        mask=torch.tensor([[[1.0, 1.0], [1.0, 0.0], [1.0, 1.0], [1.0, 0.0], [1.0, 1.0],
                            [1.0, 1.0]]]),
    )  # fmt: skip
    seq.term[0, 1, 0] = 1.0  # sample 1 terminates at its first step: its second is masked
    obs = torch.randn(k, b, OBS, generator=g)
    net, fixed = enc.online, enc.fixed
    want = torch.zeros(())
    zs = net.zs(obs)
    for step in range(h):
        done, zs, reward = net.predict(zs, seq.act[:, :, step])
        target = fixed.zs(seq.next_obs[:, :, step])  # `[K, B, obs]`: one step at a time
        dyn = (zs - target).square().mean(-1)
        rew = enc.two_hot.cross_entropy(reward, seq.rew[:, :, step])
        term = (done - seq.term[:, :, step]).square()
        want = want + ((dyn + 0.1 * rew + 0.1 * term) * seq.mask[:, :, step]).mean()
    assert torch.allclose(enc.model_loss(obs, seq), want.reshape(1), rtol=1e-5)
    # A masked step contributes nothing, whatever its values.
    seq2 = SimpleNamespace(**vars(seq))
    seq2.rew = seq.rew.clone()
    seq2.rew[0, 1, 1] = 1e4
    assert torch.allclose(enc.model_loss(obs, seq2), enc.model_loss(obs, seq))
    with pytest.raises(TypeError, match="learn"):
        enc.update(obs, obs, obs)


def test_mrq_learns_through_the_learning_step_and_its_fixed_copy_feeds_the_agent() -> None:
    agent = agent_for("td3", features="mrq", encoder_units=16, encoder_dim=8,
                      encoder_horizon=3, encoder_target_every=2)  # fmt: skip
    assert agent.features.horizon == 3
    rb = ReplayBuffer(OBS, ACT, 1_000, seed=3, horizon=agent.features.horizon)
    for i in range(3):
        b = fixed_batch(seed=i)
        rb.add(b.obs, b.act, b.rew, b.next_obs, b.term)
    step = LearnStep(rb, agent.features, agent, 32)
    losses = [float(step(i, 6)["aux_loss"]) for i in range(6)]
    assert all(math.isfinite(v) for v in losses)
    assert float(agent.features.updates) == 6
    # Refreshed at update 6: the fixed copy is the online one.
    for (n, a), b in zip(agent.features.online.named_parameters(),
                         agent.features.fixed.parameters(), strict=True):  # fmt: skip
        assert torch.equal(a, b), n


def test_summary_prints_the_lineage() -> None:
    from click.testing import CliRunner

    from widerl.cli import app

    cases = {
        ("--preset", "mrq"): ("MR.Q encoder", "model: done, next z_s, reward", "1,751,874"),
        ("--preset", "td7"): ("SALE encoder (TD7)", "z_sa encoder g, layer 3"),
        ("--preset", "simbav2"): ("block 2 Linear+LERP", "shift+l2, embedding", "c51 logits"),
    }
    for args, wanted in cases.items():
        res = CliRunner().invoke(app, ["summary", *args, "--obs-dim", "17", "--act-dim", "6"])
        assert res.exit_code == 0, res.output
        for w in wanted:
            assert w in res.output, (args, w)
