"""Beyond the paper: SimBa / BroNet bodies, LayerNorm and Batch Renormalization, the categorical
critic heads (C51, HL-Gauss), weight decay, observation normalisation, resets and CrossQ."""

import math

import pytest
import torch
import torch.nn.functional as F

from widerl.agents import make_agent
from widerl.analysis.summary import count, network_tables
from widerl.config import ConfigError, resolve
from widerl.nets.bodies import make_body
from widerl.nets.bodies.renorm_mlp import RenormMLP
from widerl.nets.critic_heads import C51Head, HLGaussHead, ScalarHead, select_min
from widerl.nets.ensemble import EnsembleLinear, reset_members
from widerl.nets.norms import (
    BatchNormalize,
    EnsembleBatchRenorm,
    EnsembleLayerNorm,
    batch_moments,
    make_norm,
    record_running_stats,
)
from widerl.replay.buffer import Batch, ReplayBuffer

OBS, ACT, B = 5, 2, 64
OBS_STATS = {"features.mean", "features.var", "features.count"}


def fixed_batch(term: float = 0.0, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    return Batch(
        obs=torch.randn(B, OBS, generator=g) * 3 + 1,
        act=torch.rand(B, ACT, generator=g) * 2 - 1,
        rew=torch.randn(B, generator=g),
        next_obs=torch.randn(B, OBS, generator=g) * 3 + 1,
        term=torch.full((B,), term),
        weight=None,
        idx=torch.arange(B),
    )


def agent_for(algo: str = "sac", **kw: object):  # noqa: ANN201
    torch.manual_seed(0)
    cfg = resolve({"algo": algo, "units": 16, "layers": 2, **kw})
    return make_agent(cfg, OBS, ACT, torch.device("cpu"))


def affine_ln(x: torch.Tensor, ln: EnsembleLayerNorm, e: int) -> torch.Tensor:
    return F.layer_norm(x, (x.shape[-1],), eps=ln.eps) * ln.weight[e] + ln.bias[e]


# --- bodies ---------------------------------------------------------------------------------
@pytest.mark.parametrize("blocks", [1, 3])
def test_simba_structure_and_parameter_count(blocks: int) -> None:
    """SimBa (Sec. 4.1): Linear(in, d); blocks x + W2 relu(W1 LN(x)) with W1: d -> 4d;
    a final LayerNorm. Parameters: (in + 1) d + blocks (2d + (d + 1) 4d + (4d + 1) d) + 2d."""
    in_dim, d = 7, 8
    body = make_body("simba", 2, in_dim, d, blocks, activation="relu")
    reset_members(body, [torch.Generator().manual_seed(1)])
    with torch.no_grad():  # non-trivial LayerNorm affines
        for p in body.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x = torch.randn(2, 5, in_dim)
    first, *block_list, last = body.layers
    assert len(block_list) == blocks and body.out_dim == d
    for e in range(2):
        h = x[e] @ first.weight[e] + first.bias[e]
        for blk in block_list:
            inner = torch.relu(affine_ln(h, blk.norm, e) @ blk.up.weight[e] + blk.up.bias[e])
            h = h + inner @ blk.down.weight[e] + blk.down.bias[e]
        torch.testing.assert_close(body(x)[e], affine_ln(h, last, e))
    assert (
        count(body, 2)
        == (in_dim + 1) * d + blocks * (2 * d + (d + 1) * 4 * d + (4 * d + 1) * d) + 2 * d
    )


@pytest.mark.parametrize("blocks", [1, 2])
def test_bronet_structure_and_parameter_count(blocks: int) -> None:
    """BroNet (Sec. 3): relu(LN(Linear(x))), then blocks x + LN(W2 relu(LN(W1 x))).
    Parameters: (in + 1) d + 2d + blocks * 2 ((d + 1) d + 2d)."""
    in_dim, d = 7, 8
    body = make_body("bronet", 1, in_dim, d, blocks, activation="relu")
    with torch.no_grad():
        for p in body.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x = torch.randn(1, 5, in_dim)

    def dense_ln(h: torch.Tensor, layer) -> torch.Tensor:  # noqa: ANN001
        return affine_ln(h @ layer.linear.weight[0] + layer.linear.bias[0], layer.norm, 0)

    first, *block_list = body.layers
    h = torch.relu(dense_ln(x[0], first))
    for blk in block_list:
        h = h + dense_ln(torch.relu(dense_ln(h, blk.first)), blk.second)
    torch.testing.assert_close(body(x)[0], h)
    assert count(body) == (in_dim + 1) * d + 2 * d + blocks * 2 * ((d + 1) * d + 2 * d)


@pytest.mark.parametrize("arch", ["simba", "bronet"])
def test_layernorm_bodies_refuse_batchnorm(arch: str) -> None:
    with pytest.raises(ValueError, match="LayerNorm"):
        make_body(arch, 1, 4, 8, 1, batchnorm=True)
    with pytest.raises(ConfigError, match="--batchnorm"):
        resolve({"arch": arch, "batchnorm": True})


def test_renorm_mlp_members_never_mix() -> None:
    """CrossQ's body (input BRN, then Linear -> act -> BRN) keeps members apart, as plain
    BatchNorm during warm-up and renormalised after it, and in eval mode."""
    import copy

    for warmup, train in ((100, True), (0, True), (0, False)):
        b = RenormMLP(3, 6, 8, 2, activation="relu")
        b.set_warmup(warmup)
        b.train(train)
        reset_members(b, [torch.Generator().manual_seed(s) for s in (0, 1, 2)])
        with torch.no_grad():  # running statistics that renormalisation visibly uses
            for m in b.modules():
                if isinstance(m, EnsembleBatchRenorm):
                    m.running_mean.normal_()
                    m.running_var.uniform_(0.5, 2.0)
        other = copy.deepcopy(b)
        x = torch.randn(3, 16, 6)
        y = b(x)
        x2 = x.clone()
        x2[1] += torch.randn(16, 6)  # not a constant shift, which a batch norm would remove
        with torch.no_grad():
            for p in other.parameters():
                p[2].mul_(1.5)
        y2 = other(x2)
        assert torch.equal(y[0], y2[0])
        assert not torch.allclose(y[1], y2[1]) and not torch.allclose(y[2], y2[2])


# --- norm layers ----------------------------------------------------------------------------
def test_ensemble_layernorm_matches_torch_per_member() -> None:
    ln = EnsembleLayerNorm(2, 5)
    with torch.no_grad():
        ln.weight.copy_(torch.randn(2, 1, 5))
        ln.bias.copy_(torch.randn(2, 1, 5))
    x = torch.randn(2, 7, 5) * 3 + 1
    for e in range(2):
        ref = torch.nn.LayerNorm(5)
        with torch.no_grad():
            ref.weight.copy_(ln.weight[e, 0])
            ref.bias.copy_(ln.bias[e, 0])
        torch.testing.assert_close(ln(x)[e], ref(x[e]))
    x2 = x.clone()
    x2[1] *= 2.0
    assert torch.equal(ln(x2)[0], ln(x)[0])  # members never mix


def test_batch_renorm_warmup_is_batchnorm_and_tracks_biased_variance() -> None:
    """During warm-up: y = w (x - mu_B) / sqrt(var_B + eps) + b; running mean and (biased)
    variance move by momentum; the pass counter counts."""
    brn = EnsembleBatchRenorm(2, 3, momentum=0.1, eps=1e-3, warmup=5)
    x = torch.randn(2, 32, 3) * 2 + 1
    y = brn(x)
    mu, var = x.mean(1, keepdim=True), x.var(1, unbiased=False, keepdim=True)
    torch.testing.assert_close(y, (x - mu) / torch.sqrt(var + 1e-3))
    torch.testing.assert_close(brn.running_mean, 0.1 * mu)
    torch.testing.assert_close(brn.running_var, 0.9 + 0.1 * var)
    assert brn.steps.flatten().tolist() == [1, 1]


def test_batch_renorm_formulas_after_warmup_with_clipping() -> None:
    """Ioffe 2017, Alg. 1: r = clip(sigma_B / sigma, 1/r_max, r_max), d = clip((mu_B - mu) /
    sigma, -d_max, d_max), y = w ((x - mu_B) / sigma_B r + d) + b; r and d carry no
    gradient. Member 0 unclipped, member 1 clipped in both r and d."""
    eps, r_max, d_max = 1e-3, 3.0, 5.0
    brn = EnsembleBatchRenorm(2, 4, momentum=0.01, eps=eps, r_max=r_max, d_max=d_max, warmup=0)
    x = torch.randn(2, 50, 4) * 2 + 0.5
    with torch.no_grad():
        brn.weight.copy_(torch.rand(2, 1, 4) + 0.5)
        brn.bias.copy_(torch.randn(2, 1, 4))
        brn.running_mean.copy_(torch.stack([torch.full((1, 4), 0.3), torch.full((1, 4), -9.0)]))
        brn.running_var.copy_(torch.stack([torch.full((1, 4), 3.0), torch.full((1, 4), 0.01)]))
    mu_run, std_run = brn.running_mean.clone(), torch.sqrt(brn.running_var + eps)
    x.requires_grad_(True)
    y = brn(x)
    mu = x.mean(1, keepdim=True)
    std = torch.sqrt(x.var(1, unbiased=False, keepdim=True) + eps)
    r = (std / std_run).detach()
    d = ((mu - mu_run) / std_run).detach()
    assert (r[0] < r_max).all() and (r[0] > 1 / r_max).all() and (d[0].abs() < d_max).all()
    assert (r[1] > r_max).all() and (d[1] > d_max).all()  # member 1's values get clipped
    r, d = r.clamp(1 / r_max, r_max), d.clamp(-d_max, d_max)
    want = ((x - mu) / std * r + d) * brn.weight + brn.bias
    torch.testing.assert_close(y, want)
    # Gradients: those of the formula with r and d held constant (stop_gradient), for the
    # input and the affine parameters alike.
    g = torch.randn_like(y)
    got = torch.autograd.grad(y, (x, brn.weight, brn.bias), g, retain_graph=True)
    ref = torch.autograd.grad(want, (x, brn.weight, brn.bias), g)
    for a, b in zip(got, ref, strict=True):
        torch.testing.assert_close(a, b)
    # Eval mode: the running statistics, whatever the batch.
    brn.eval()
    with torch.no_grad():
        torch.testing.assert_close(
            brn(x),
            (x - brn.running_mean) / torch.sqrt(brn.running_var + eps) * brn.weight + brn.bias,
        )


@pytest.mark.parametrize("renorm", [False, True])
def test_batch_normalize_backward_is_the_gradient_of_its_forward(renorm: bool) -> None:
    """BatchNormalize's hand-written backward (nets/norms.py) against finite differences of
    the whole map x, weight, shift -> y, the batch statistics' dependence on x included
    (torch.autograd.gradcheck, float64); r, Batch Renormalization's factor, is a constant."""
    torch.manual_seed(0)
    r = torch.rand(2, 1, 3, dtype=torch.float64) + 0.5 if renorm else None

    def layer(x: torch.Tensor, weight: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        centred, _, var = batch_moments(x.detach())
        return BatchNormalize.apply(x, centred, torch.rsqrt(var + 1e-3), r, weight, shift)

    x = torch.randn(2, 9, 3, dtype=torch.float64) * 2 + 1
    weight = torch.rand(2, 1, 3, dtype=torch.float64) + 0.5
    shift = torch.randn(2, 1, 3, dtype=torch.float64)
    inputs = tuple(t.requires_grad_(True) for t in (x, weight, shift))
    assert torch.autograd.gradcheck(layer, inputs)


@pytest.mark.parametrize("layer", ["batchnorm", "batchrenorm"])
def test_norms_eager_and_traced_forms_agree(layer: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Train mode runs BatchNormalize eagerly and autograd's own chain when torch.compile
    traces it (nets/norms.py: normalize): the same outputs, gradients and running statistics
    to float rounding, Batch Renormalization past its warm-up with r and d clipped in part."""
    torch.manual_seed(0)
    x = torch.randn(2, 40, 5) * 2 + 0.5
    g = torch.randn(2, 40, 5)
    results = []
    for traced in (False, True):
        monkeypatch.setattr(torch.compiler, "is_compiling", lambda t=traced: t)
        torch.manual_seed(1)
        norm = make_norm(layer, 2, 5)
        with torch.no_grad():
            norm.weight.copy_(torch.rand(2, 1, 5) + 0.5)
            norm.bias.copy_(torch.randn(2, 1, 5))
            norm.running_var.fill_(0.5)
        if isinstance(norm, EnsembleBatchRenorm):
            norm.warmup = 0
        xi = x.clone().requires_grad_(True)
        y = norm(xi)
        grads = torch.autograd.grad(y, (xi, norm.weight, norm.bias), g)
        results.append([y, *grads, norm.running_mean.clone(), norm.running_var.clone()])
    monkeypatch.undo()
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b)
    assert results[0][1].abs().max() > 0.1  # the input gradient is not zero by construction


def test_batch_renorm_records_its_statistics_inside_a_loss() -> None:
    """Inside a recorded forward pass (autodiff.Differentiable) the buffers stay as they are;
    the recorder holds the new values, the pass counter's included."""
    brn = EnsembleBatchRenorm(1, 3, warmup=1)
    x = torch.randn(1, 16, 3)
    with record_running_stats() as rec:
        brn(x)
        brn(x)  # used twice in one pass: moves twice, and renormalises the second time
    assert torch.equal(brn.running_mean, torch.zeros(1, 1, 3)) and int(brn.steps) == 0
    assert int(rec.current(brn.steps)) == 2
    mu = x.mean(1, keepdim=True)
    torch.testing.assert_close(rec.current(brn.running_mean), mu * (1 - 0.99**2))


# --- critic heads ---------------------------------------------------------------------------
def c51_reference(atoms: torch.Tensor, p: torch.Tensor, head: C51Head) -> torch.Tensor:
    """Bellemare et al. 2017, Algorithm 1, as written: floor / ceil and a loop."""
    dz = (head.v_max - head.v_min) / (head.out_dim - 1)
    m = torch.zeros(head.out_dim, dtype=torch.float64)
    for tz, pj in zip(atoms.tolist(), p.tolist(), strict=True):
        bj = (min(max(tz, head.v_min), head.v_max) - head.v_min) / dz
        lo, up = math.floor(bj), math.ceil(bj)
        if lo == up:
            m[lo] += pj
        else:
            m[lo] += pj * (up - bj)
            m[up] += pj * (bj - lo)
    return m


def test_c51_projection_hand_computed() -> None:
    """Support {-1, 0, 1}, next-state probabilities (0.2, 0.5, 0.3)."""
    head = C51Head(3, -1.0, 1.0)
    logits = torch.tensor([0.2, 0.5, 0.3]).log().reshape(1, 1, 3)

    def target(r: float, disc: float, bonus: float | None = None) -> list[float]:
        b = None if bonus is None else torch.tensor([[bonus]])
        out = head.target(torch.tensor([[r]]), torch.tensor([[disc]]), logits, b)
        return out.flatten().tolist()

    # r + 0.5 z = (0, 0.5, 1): 0.2 on z=0; 0.5 split evenly between 0 and 1; 0.3 on z=1.
    assert target(0.5, 0.5) == pytest.approx([0.0, 0.45, 0.55])
    # Terminal: every atom at r = 0.25, i.e. 3/4 on z=0 and 1/4 on z=1.
    assert target(0.25, 0.0) == pytest.approx([0.0, 0.75, 0.25])
    # Beyond v_max: clipped onto the last atom.
    assert target(2.0, 0.5) == pytest.approx([0.0, 0.0, 1.0])
    # A bonus b = 1 moves the atoms to r + disc (z - b) = (-0.5, 0, 0.5): 0.2 split between
    # -1 and 0, 0.5 on 0, 0.3 split between 0 and 1.
    assert target(0.5, 0.5, 1.0) == pytest.approx([0.1, 0.1 + 0.5 + 0.15, 0.15])
    # The value is the expectation: E[Z] of the next state = -0.2 + 0.3.
    assert head.value(logits).item() == pytest.approx(0.1)


def test_c51_projection_matches_algorithm_1() -> None:
    head = C51Head(11, -3.0, 7.0)
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        p = torch.rand(11, generator=g, dtype=torch.float64).softmax(-1)
        atoms = torch.randn(11, generator=g, dtype=torch.float64) * 4 + 1
        got = head.project(atoms.reshape(1, 1, -1), p.reshape(1, 1, -1)).flatten()
        torch.testing.assert_close(got, c51_reference(atoms, p, head))
        assert got.sum().item() == pytest.approx(1.0)


def test_hlgauss_target_is_the_gaussian_histogram() -> None:
    """Farebrother et al. 2024, Sec. 3.1: p_i = Phi((e_{i+1} - y) / s) - Phi((e_i - y) / s),
    normalised over the support, s = 0.75 bin widths; bins on [0, 4]."""
    head = HLGaussHead(4, 0.0, 4.0, sigma_ratio=0.75)
    s = 0.75

    def phi(v: float) -> float:
        return 0.5 * (1.0 + math.erf(v / math.sqrt(2.0)))

    for y in (1.3, 0.0, 3.9):
        edges = [0.0, 1.0, 2.0, 3.0, 4.0]
        mass = [phi((edges[i + 1] - y) / s) - phi((edges[i] - y) / s) for i in range(4)]
        want = [m / (phi((4.0 - y) / s) - phi((0.0 - y) / s)) for m in mass]
        got = head.probs(torch.tensor([[y]]), torch.zeros(1)).flatten().tolist()
        assert got == pytest.approx(want, rel=1e-5, abs=1e-6)
    # Q is the expectation over the bin centres; the loss is the cross-entropy.
    logits = torch.randn(1, 1, 1, 4)
    centres = torch.tensor([0.5, 1.5, 2.5, 3.5])
    assert head.value(logits).item() == pytest.approx((logits.softmax(-1) * centres).sum().item())
    y = torch.tensor([[2.2]])
    ce = -(head.probs(y, logits) * logits[0, 0].log_softmax(-1)).sum()
    assert head.loss(logits, y).item() == pytest.approx(ce.item(), rel=1e-6)
    # Targets beyond the support are clipped into it.
    torch.testing.assert_close(
        head.probs(torch.tensor([[9.0]]), logits), head.probs(torch.tensor([[4.0]]), logits)
    )


def test_select_min_takes_the_lower_critic_per_sample() -> None:
    out = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(1, 2, 3, 4)
    q = torch.tensor([[[1.0, 5.0, 2.0], [3.0, 0.0, 2.5]]])  # critic 0 lower on samples 0, 2
    got = select_min(out, q, None)
    torch.testing.assert_close(got[0], torch.stack([out[0, 0, 0], out[0, 1, 1], out[0, 0, 2]]))
    scalar = ScalarHead()
    qs = q.unsqueeze(-1)
    torch.testing.assert_close(scalar.value(select_min(qs, q, None)), q.amin(1))


HEADS = [
    {"critic_head": "scalar"},
    {"critic_head": "c51", "atoms": 21, "v_min": -10.0, "v_max": 10.0},
    {"critic_head": "hlgauss", "atoms": 21, "v_min": -10.0, "v_max": 10.0},
]


@pytest.mark.parametrize("head", HEADS, ids=lambda h: h["critic_head"])
def test_priorities_srank_and_landscape_work_for_every_head(head: dict) -> None:
    from widerl.analysis.critic_landscape import critic_landscape
    from widerl.analysis.srank import critic_srank

    agent = agent_for("td3", policy_noise=0.0, **head)
    batch = fixed_batch()
    before = agent.td_abs(batch)
    m = agent.update(batch)  # a critic step without an actor step (policy delay 2)
    # Ape-X's initial priority equals what the update writes back (deterministic target).
    torch.testing.assert_close(before, m["td_abs"], atol=1e-5, rtol=1e-5)
    assert isinstance(critic_srank(agent, batch.obs, batch.act), int)
    _, _, losses = critic_landscape(agent, batch, span=0.5, grid=3, seed=0)
    assert losses.shape == (3, 3) and torch.isfinite(losses).all()
    # The centre of the landscape is the loss the update would minimise, in eval mode.
    from widerl.agents.base import eval_mode

    with torch.no_grad(), eval_mode(agent):
        target = agent.current_td_target(batch, 0)
        z_sa = agent.features.state_action(agent.features.state(batch.obs[None]), batch.act[None])
        loss, _ = agent.critic_loss(by_seed(batch), z_sa, target[None])
    assert losses[1, 1].item() == pytest.approx(loss.item() / 1, rel=1e-4)


def by_seed(batch: Batch) -> Batch:
    return Batch(*(None if t is None else t.unsqueeze(0) for t in batch[:6]), batch.idx)


@pytest.mark.parametrize("algo", ["sac", "td3"])
@pytest.mark.parametrize("head", HEADS[1:], ids=lambda h: h["critic_head"])
def test_categorical_critics_fit_a_fixed_batch(algo: str, head: dict) -> None:
    agent = agent_for(algo, lr=1e-3, **head)
    batch = fixed_batch()
    first = agent.update(batch)["critic_loss"]
    for _ in range(100):
        last = agent.update(batch)["critic_loss"]
    assert last < first


# --- optimizer options ----------------------------------------------------------------------
def test_weight_decay_is_decoupled_for_actor_and_critics() -> None:
    """With zero importance weights the critics' gradient and Adam step are zero, so an
    update only decays them: theta <- (1 - lr * wd) theta (AdamW)."""
    agent = agent_for("sac", weight_decay=0.1, lr=1e-3)
    assert agent.actor_opt.weight_decay == 0.1 and agent.critic_opt.weight_decay == 0.1
    assert agent.alpha_opt.weight_decay == 0.0
    before = [p.clone() for p in agent.critic_params.params]
    agent.update(fixed_batch()._replace(weight=torch.zeros(B)))
    for p, p0 in zip(agent.critic_params.params, before, strict=True):
        torch.testing.assert_close(p, p0 * (1 - 1e-3 * 0.1))


def test_adam_beta1_reaches_the_optimizers() -> None:
    agent = agent_for("crossq")
    assert agent.critic_opt.betas == (0.5, 0.999) and agent.actor_opt.betas == (0.5, 0.999)
    assert agent_for("sac").critic_opt.betas == (0.9, 0.999)
    with pytest.raises(ConfigError, match="--adam-beta1"):
        resolve({"adam_beta1": 1.0})


# --- observation normalisation --------------------------------------------------------------
def test_obs_norm_statistics_are_those_of_all_trained_batches_and_frozen_when_acting() -> None:
    agent = agent_for("sac", obs_norm=True)
    feats = agent.features
    seen = []
    for i in range(3):
        b = fixed_batch(seed=i)
        seen.append(b.obs)
        agent.features.update(b.obs, b.act, b.next_obs)
        agent.update(b)
    allobs = torch.cat(seen)
    torch.testing.assert_close(feats.mean[0, 0], allobs.mean(0))
    torch.testing.assert_close(feats.var[0, 0], allobs.var(0, unbiased=False))
    assert int(feats.count) == 3 * B
    mean = feats.mean.clone()
    agent.act(torch.randn(7, OBS) * 50)  # acting and eval: statistics frozen
    agent.td_abs(fixed_batch(seed=9))
    agent.eval()
    agent.features.update(allobs[:4], torch.zeros(4, ACT), allobs[:4])
    agent.train()
    assert torch.equal(mean, feats.mean)
    z = agent.features.state(allobs)
    torch.testing.assert_close(z, (allobs - allobs.mean(0)) / torch.sqrt(allobs.var(0, False)))
    # Buffers of the agent: checkpointed, and sent to Ray collectors with the policy.
    from widerl.collect.ray_collectors import weight_keys

    assert {"features.mean", "features.var", "features.count"} <= set(agent.state_dict())
    assert {"features.mean", "features.var"} <= set(weight_keys(agent, with_critics=False))


def test_obs_norm_feeds_ofenet_normalised_observations() -> None:
    agent = agent_for("sac", obs_norm=True, ofenet_units=8, ofenet_layers=2)
    b = fixed_batch()
    loss = agent.features.update(b.obs, b.act, b.next_obs)
    assert loss is not None and agent.features.metric_name == "aux_loss"
    feats = agent.features
    norm = (b.obs - feats.mean[0]) * torch.rsqrt(feats.var[0] + feats.eps)
    torch.testing.assert_close(feats.state(b.obs[None]), feats.inner.state(norm[None]))
    # OFENet still predicts the raw next state.
    torch.testing.assert_close(
        feats.heldout_loss(b.obs, b.act, b.next_obs),
        feats.inner.heldout_loss(norm, b.act, b.next_obs),
    )


# --- resets ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("algo", "kw"),
    [("sac", {"batchnorm": True, "obs_norm": True}), ("td3", {"ofenet_units": 8,
                                                             "ofenet_layers": 2})],
)  # fmt: skip
def test_reset_networks_is_a_fresh_agent_with_the_replay_kept(algo: str, kw: dict) -> None:
    """After a reset from given generators, every network, target, norm statistic and
    optimizer state equals a fresh agent's reset from the same generators; --obs-norm's
    statistics and the update counter stay."""
    trained = agent_for(algo, **kw)
    for i in range(3):
        b = fixed_batch(seed=i)
        trained.features.update(b.obs, b.act, b.next_obs)
        trained.update(b)
    stats = {k: v.clone() for k, v in trained.state_dict().items() if k in OBS_STATS}
    params = [p.data_ptr() for p in trained.trained_parameters()]
    fresh = agent_for(algo, seed=5, **kw)

    def gens() -> list[torch.Generator]:
        return [torch.Generator().manual_seed(123)]

    trained.reset_networks(gens())
    fresh.reset_networks(gens())
    for (k, x), y in zip(trained.state_dict().items(), fresh.state_dict().values(), strict=True):
        if k in stats:
            assert torch.equal(x, stats[k]), k  # observation statistics kept
        else:
            assert torch.equal(x, y), k
    for opt in trained.all_optimizers().values():
        assert int(opt.step_count) == 0 and all(not m.any() for m in opt.exp_avg + opt.exp_avg_sq)
    assert trained.n_updates == 3
    assert [p.data_ptr() for p in trained.trained_parameters()] == params  # in place
    assert torch.isfinite(trained.update(fixed_batch(seed=7))["critic_loss"]).all()
    # The default generators derive from the seed and the update count: reproducible.
    a, b = agent_for(algo, **kw), agent_for(algo, **kw)
    a.reset_networks()
    b.reset_networks()
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters(), strict=True))
    assert not torch.equal(a.critics.out.weight, fresh.critics.out.weight)


# --- CrossQ ---------------------------------------------------------------------------------
def test_crossq_has_no_targets_and_one_joint_forward() -> None:
    """The critics' input Batch Renorm statistics after one update are those of the joint
    batch [(s, a); (s', a')]; the policy step (here in the same update) leaves them alone,
    as its critics run in eval mode."""
    agent = agent_for("crossq", policy_delay=1)
    assert agent.critics_target is None and not any(
        k.startswith("critics_target") for k in agent.state_dict()
    )
    b = fixed_batch()
    noise = agent.draw_noise(B)
    with torch.no_grad():
        z_next = agent.features.state(b.next_obs[None])
        from widerl.agents.base import eval_mode

        with eval_mode(agent.actor):
            a_next, _ = agent.actor.sample(z_next, noise["next"])
    joint = torch.cat([torch.cat([b.obs, b.act], -1), torch.cat([z_next[0], a_next[0]], -1)])
    actor_stats = agent.actor.body.layers[0].running_mean.clone()
    m = agent._update(by_seed(b), noise, actor_step=True)
    norm = agent.critics.body.layers[0]
    for member in range(2):
        torch.testing.assert_close(norm.running_mean[member, 0], 0.01 * joint.mean(0))
        torch.testing.assert_close(
            norm.running_var[member, 0], 0.99 + 0.01 * joint.var(0, unbiased=False)
        )
    assert int(norm.steps[0]) == 1  # one training pass: the joint one
    assert not torch.equal(actor_stats, agent.actor.body.layers[0].running_mean)
    assert torch.isfinite(m["actor_loss"]).all()


def test_crossq_policy_delay_and_config_rules() -> None:
    agent = agent_for("crossq")  # policy delay 3 (ALGO_DEFAULTS)
    actor0 = agent.actor.mean.weight.clone()
    for i in range(2):
        agent.update(fixed_batch(seed=i))
    assert torch.equal(actor0, agent.actor.mean.weight)
    agent.update(fixed_batch(seed=2))
    assert not torch.equal(actor0, agent.actor.mean.weight)
    with pytest.raises(ConfigError, match="--arch mlp"):
        resolve({"algo": "crossq", "arch": "densenet"})
    with pytest.raises(ConfigError, match="Batch Renormalization"):
        resolve({"algo": "crossq", "batchnorm": True})


# --- config ---------------------------------------------------------------------------------
def test_config_rules_of_the_heads() -> None:
    with pytest.raises(ConfigError, match="--v-min 5 must be smaller than --v-max 1"):
        resolve({"critic_head": "c51", "v_min": 5.0, "v_max": 1.0})
    with pytest.raises(ConfigError, match="--atoms must be at least 2"):
        resolve({"critic_head": "hlgauss", "atoms": 1})
    with pytest.raises(ConfigError, match="--critic-loss huber applies to --critic-head"):
        resolve({"critic_head": "c51", "critic_loss": "huber"})
    resolve({"critic_head": "c51"}, "paper-S")  # a preset's huber is not the user's choice


@pytest.mark.parametrize("preset", ["simba", "bro", "crossq"])
def test_presets_build(preset: str) -> None:
    cfg = resolve({"env": "Humanoid-v5"}, preset)
    tables = network_tables(cfg, 348, 17)
    names = [t[0] for t in tables]
    assert any("policy" in n for n in names) and any("critic" in n for n in names)
    critic_rows = tables[-1][1]
    if preset == "simba":
        assert critic_rows[0][1:3] == (365, 512) and len(critic_rows) == 1 + 3 * 2 + 1 + 1
        assert tables[0][1][0][1:3] == (348, 128)
    if preset == "bro":
        assert cfg.critic_head == "hlgauss" and cfg.v_max == 1_200.0
        assert critic_rows[-1][2] == 101
    if preset == "crossq":
        assert cfg.adam_beta1 == 0.5 and cfg.policy_delay == 3 and cfg.lr == 1e-3
        assert critic_rows[2][1:3] == (2048, 2048)


def test_summary_prints_the_new_bodies() -> None:
    from click.testing import CliRunner

    from widerl.cli import app

    for arch, row in (("simba", "block 2 Linear"), ("bronet", "block 1 Linear+LN")):
        res = CliRunner().invoke(
            app, ["summary", "--arch", arch, "--obs-dim", "17", "--act-dim", "6"]
        )
        assert res.exit_code == 0, res.output
        assert row in res.output and "TOTAL" in res.output


# --- the learning step, eagerly, for every new option ---------------------------------------
OPTIONS = [
    ("sac", {"arch": "simba", "actor_units": 8, "actor_layers": 1}),
    ("td3", {"arch": "bronet"}),
    ("sac", {"critic_head": "c51", "atoms": 11, "critics": 3}),
    ("td3", {"critic_head": "hlgauss", "atoms": 11}),
    ("sac", {"weight_decay": 0.01, "obs_norm": True}),
    ("td3", {"obs_norm": True, "ofenet_units": 8, "ofenet_layers": 2}),
    ("crossq", {"renorm_warmup": 1}),
    ("crossq", {"critic_head": "hlgauss", "atoms": 11, "critics": 3, "policy_delay": 1}),
]


@pytest.mark.parametrize(("algo", "kw"), OPTIONS)
def test_learning_step_trains_with_each_new_option(algo: str, kw: dict) -> None:
    from widerl.run.step import LearnStep

    agent = agent_for(algo, prioritized=True, **kw)
    rb = ReplayBuffer(OBS, ACT, 1_000, prioritized=True, seed=3)
    for i in range(4):
        b = fixed_batch(term=float(i % 2), seed=i)
        rb.add(b.obs, b.act, b.rew, b.next_obs, b.term)
    before = {k: v.clone() for k, v in agent.state_dict().items()}
    step = LearnStep(rb, agent.features, agent, 32)
    for i in range(4):
        metrics = step(i, 4)
    assert all(torch.isfinite(v).all() for v in metrics.values())
    moved = [k for k, v in agent.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.startswith("critics.") for k in moved) and any(
        k.startswith("actor.") for k in moved
    )
    assert isinstance(agent.critics.out, EnsembleLinear)


def test_checkpoint_round_trip_with_the_new_state() -> None:
    """CrossQ's repeated policy metrics, Batch Renorm pass counters, observation statistics
    and a categorical head survive a checkpoint: the reloaded agent continues identically."""
    import io

    kw = {"obs_norm": True, "critic_head": "c51", "atoms": 11, "renorm_warmup": 2}
    a = agent_for("crossq", **kw)
    for i in range(4):
        b = fixed_batch(seed=i)
        a.features.update(b.obs, b.act, b.next_obs)
        a.update(b)
    buf = io.BytesIO()
    torch.save(a.checkpoint_state(), buf)
    buf.seek(0)
    b2 = agent_for("crossq", seed=9, **kw)
    b2.load_checkpoint_state(torch.load(buf, weights_only=True))
    for i in range(4, 7):
        batch = fixed_batch(seed=i)
        ma, mb = a.update(batch), b2.update(batch)
        assert all(torch.equal(ma[k], mb[k]) for k in ma), i
    for (k, x), y in zip(a.state_dict().items(), b2.state_dict().values(), strict=True):
        assert torch.equal(x, y), k
