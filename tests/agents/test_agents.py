import numpy as np
import pytest
import torch

from widerl.agents import make_agent, td
from widerl.collect.collector import Collector
from widerl.collect.envs import make_env
from widerl.config import resolve
from widerl.replay.buffer import Batch, ReplayBuffer

OBS, ACT, B = 5, 2, 64


def fixed_batch(term: float = 0.0, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    return Batch(
        obs=torch.randn(B, OBS, generator=g),
        act=torch.rand(B, ACT, generator=g) * 2 - 1,
        rew=torch.randn(B, generator=g),
        next_obs=torch.randn(B, OBS, generator=g),
        term=torch.full((B,), term),
        weight=None,
        idx=torch.arange(B),
    )


def agent_for(algo: str, **kw: object):  # noqa: ANN201
    torch.manual_seed(0)
    cfg = resolve({"algo": algo, "units": 32, "layers": 2, **kw})
    return make_agent(cfg, OBS, ACT, torch.device("cpu"))


@pytest.mark.parametrize("algo", ["sac", "td3"])
@pytest.mark.parametrize("arch", ["mlp", "densenet"])
def test_critic_update_lowers_its_loss_on_a_fixed_batch(algo: str, arch: str) -> None:
    agent = agent_for(algo, arch=arch, critic_loss="huber", lr=1e-3)
    batch = fixed_batch()
    first = agent.update(batch)["critic_loss"]
    for _ in range(150):
        last = agent.update(batch)["critic_loss"]
    assert last < 0.5 * first


@pytest.mark.parametrize("algo", ["sac", "td3"])
def test_actor_update_lowers_its_loss_against_a_fixed_critic(algo: str) -> None:
    agent = agent_for(algo, lr=1e-3, autotune=False, alpha_init=0.2)
    agent.critic_opt.lr = 0.0  # hold the critics still
    with torch.no_grad():  # a steeper Q landscape, so the actor has something to climb
        agent.critics.out.weight.mul_(20.0)
    batch = fixed_batch()
    losses = [agent.update(batch)["actor_loss"].item() for _ in range(120)]
    assert np.mean(losses[-10:]) < np.mean(losses[2:12]) - 0.05


def constant_target_critics(agent, value: float) -> None:  # noqa: ANN001
    """Every target critic outputs `value` whatever its input."""
    torch.nn.init.zeros_(agent.critics_target.out.weight)
    torch.nn.init.constant_(agent.critics_target.out.bias, value)


def by_seed(batch: Batch) -> Batch:
    return Batch(*(None if t is None else t.unsqueeze(0) for t in batch[:6]), batch.idx)


@pytest.mark.parametrize("algo", ["sac", "td3"])
def test_termination_stops_bootstrapping_truncation_does_not(algo: str) -> None:
    agent = agent_for(algo, gamma=0.9, alpha_init=1e-12)  # SAC: no entropy bonus
    constant_target_critics(agent, 7.0)
    terminal, going_on = by_seed(fixed_batch(term=1.0)), by_seed(fixed_batch(term=0.0))
    noise = agent.draw_noise(B)
    y_term = agent.td_target(terminal, terminal.next_obs, noise)
    y_cont = agent.td_target(going_on, going_on.next_obs, noise)
    assert torch.allclose(y_term, terminal.rew)
    assert torch.allclose(y_cont, going_on.rew + 0.9 * 7.0, atol=1e-5)


def test_sac_target_includes_entropy_bonus() -> None:
    agent = agent_for("sac", gamma=1.0, alpha_init=0.5)
    constant_target_critics(agent, 0.0)
    batch = by_seed(fixed_batch())
    noise = agent.draw_noise(B)
    y = agent.td_target(batch, batch.next_obs, noise)
    _, logp = agent.actor.sample(batch.next_obs, noise["next"])
    assert torch.allclose(y, batch.rew - 0.5 * logp)


def test_tanh_gaussian_log_prob_matches_torch_distributions() -> None:
    agent = agent_for("sac")
    z = torch.randn(1, 10, OBS)
    eps = torch.randn(1, 10, ACT, generator=torch.Generator().manual_seed(5))
    a, logp = agent.actor.sample(z, eps)
    mean, log_std = agent.actor(z)
    dist = torch.distributions.TransformedDistribution(
        torch.distributions.Normal(mean, log_std.exp()),
        [torch.distributions.TanhTransform(cache_size=1)],
    )
    ref = dist.log_prob(a.clamp(-1 + 1e-6, 1 - 1e-6)).sum(-1)
    assert torch.allclose(logp, ref, atol=1e-3)
    assert torch.equal(agent.actor.act(z, eps), a)  # acting: the same action, no log pi


def test_td3_policy_delay_and_target_tau() -> None:
    agent = agent_for("td3", tau=0.25)
    actor0 = [p.clone() for p in agent.actor.parameters()]
    target0 = [p.clone() for p in agent.actor_target.parameters()]
    batch = fixed_batch()
    agent.update(batch)  # update 1: critic only
    assert all(torch.equal(a, b) for a, b in zip(actor0, agent.actor.parameters(), strict=True))
    agent.update(batch)  # update 2: actor, then targets move by tau towards the online nets
    online = list(agent.actor.parameters())
    for t0, t, o in zip(target0, agent.actor_target.parameters(), online, strict=True):
        assert torch.allclose(t, t0 + 0.25 * (o - t0), atol=1e-6)


def test_sac_alpha_tunes_and_targets_track() -> None:
    agent = agent_for("sac", tau=0.5)
    t0 = [p.clone() for p in agent.critics_target.parameters()]
    a0 = agent.log_alpha.item()
    agent.update(fixed_batch())
    assert agent.log_alpha.item() != a0
    for t_old, t, o in zip(
        t0, agent.critics_target.parameters(), agent.critics.parameters(), strict=True
    ):
        assert torch.allclose(t, t_old + 0.5 * (o - t_old), atol=1e-6)


def test_update_with_importance_weights_and_td_abs() -> None:
    agent = agent_for("sac")
    b = fixed_batch()._replace(weight=torch.zeros(B))
    before = [p.clone() for p in agent.critics.parameters()]
    m = agent.update(b)
    assert m["td_abs"].shape == (B,) and (m["td_abs"] >= 0).all()
    # Zero importance weights: zero critic gradient, and Adam's step is then zero too.
    assert all(torch.equal(x, y) for x, y in zip(before, agent.critics.parameters(), strict=True))


def test_batchnorm_eval_when_acting_train_when_updating() -> None:
    agent = agent_for("sac", batchnorm=True)
    obs = torch.randn(4, OBS)
    a1 = agent.act(obs, deterministic=True)
    assert agent.training  # act() restores train mode
    a2 = agent.act(obs[:1], deterministic=True)
    assert torch.allclose(a1[:1], a2, atol=1e-6)  # eval mode: no batch statistics
    agent.update(fixed_batch())


def test_act_gives_every_module_its_own_mode_back() -> None:
    """act() keeps its list of modules and sets their flags directly (agents/base.py): each
    module's own mode comes back as it was, also one set to eval after the first act."""
    agent = agent_for("sac", batchnorm=True)
    obs = torch.randn(4, OBS)
    agent.act(obs)
    agent.critics.body.layers[0].eval()
    modes = {n: m.training for n, m in agent.named_modules()}
    assert not all(modes.values()) and any(modes.values())
    seen: list[bool] = []
    hook = agent.actor.register_forward_pre_hook(lambda m, _: seen.append(m.training))
    agent.act(obs)
    hook.remove()
    assert seen == [False]  # the actor ran in eval mode
    assert {n: m.training for n, m in agent.named_modules()} == modes


def _collect(env_id: str, steps: int) -> tuple[ReplayBuffer, int]:
    import gymnasium as gym

    envs = gym.vector.SyncVectorEnv(
        [lambda: make_env(env_id)], autoreset_mode=gym.vector.AutoresetMode.SAME_STEP
    )
    rb = ReplayBuffer(
        envs.single_observation_space.shape[0], envs.single_action_space.shape[0], 10_000
    )
    col = Collector(envs, seed=0, device=torch.device("cpu"))
    episodes = 0
    for _ in range(steps):
        c = col.step(None)
        rb.add(c.obs, c.act, c.rew, c.next_obs, c.term)
        episodes += len(c.returns)
    envs.close()
    return rb, episodes


def test_truncation_is_stored_as_not_terminal_with_true_next_state() -> None:
    rb, episodes = _collect("Pendulum-v1", 201)  # Pendulum never terminates; truncates at 200
    obs, nxt = rb.storage.obs[:201], rb.storage.next_obs[:201]
    assert not rb.storage.term[:201].any()
    assert episodes == 1
    # Within an episode next_obs[t] == obs[t+1]; at the time limit the stored next state is the
    # episode's final state, not the first state of the next episode.
    assert torch.allclose(nxt[:199], obs[1:200])
    assert not torch.allclose(nxt[199], obs[200])


def test_termination_is_stored_as_terminal() -> None:
    rb, episodes = _collect("InvertedPendulum-v5", 200)  # random actions drop the pole quickly
    n = rb.size
    terms = rb.storage.term[:n].bool()
    assert episodes > 0 and terms.sum().item() == episodes
    ends = np.flatnonzero(terms.numpy())
    assert all(
        not torch.allclose(rb.storage.next_obs[i], rb.storage.obs[i + 1]) for i in ends if i + 1 < n
    )


@pytest.mark.parametrize("algo", ["sac", "td3"])
@pytest.mark.parametrize("arch", ["densenet", "mlp"])
def test_update_forces_no_host_sync(algo: str, arch: str, forbid_host_sync) -> None:  # noqa: ANN001
    """CPU stand-in for CUDA's sync debug mode: every way of reading a tensor's value on the
    host raises while `update` runs (a GPU would stall on each of them)."""
    agent = agent_for(algo, arch=arch, prioritized=True, policy_delay=1, critics=3)
    rb = ReplayBuffer(OBS, ACT, 1_000, prioritized=True)
    b = fixed_batch()
    rb.add(b.obs, b.act, b.rew, b.next_obs, b.term)
    with forbid_host_sync("cpu"):
        for _ in range(3):
            batch = rb.sample(32, beta=0.5)
            metrics = agent.update(batch)
            rb.update_priorities(batch.idx, metrics["td_abs"])
    assert metrics["critic_loss"].item() > 0


def test_device_cuda_without_cuda_is_a_user_error() -> None:
    from widerl.config import ConfigError
    from widerl.run.device import resolve_device

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ConfigError, match="--device cuda"):
        resolve_device("cuda")


@pytest.mark.parametrize("algo", ["sac", "td3"])
def test_targets_stay_plain_leaves_after_soft_updates(algo: str) -> None:
    """Soft updates must not be recorded by autograd: a recorded in-place lerp turns each
    target tensor into a node with an ever-growing history (a leak, and a path for gradients)."""
    agent = agent_for(algo, policy_delay=1)
    for _ in range(3):
        agent.update(fixed_batch())
    targets = list(agent.critics_target.parameters())
    if algo == "td3":
        targets += list(agent.actor_target.parameters())
    assert all(t.grad_fn is None and not t.requires_grad for t in targets)


# --- the critic ensemble ----------------------------------------------------------------------
def test_critic_ensemble_equals_separate_critics() -> None:
    """The N critics of one ensemble are N independent networks evaluated in one pass."""
    agent = agent_for("sac", critics=3)
    z_sa = torch.randn(1, B, OBS + ACT)
    q = agent.critics(z_sa)
    assert q.shape == (1, 3, B)
    c = agent.critics
    for n in range(3):
        h = z_sa[0]
        for layer in c.body.layers:
            h = torch.relu(h @ layer.linear.weight[n] + layer.linear.bias[n])
        torch.testing.assert_close(q[0, n], (h @ c.out.weight[n] + c.out.bias[n]).squeeze(-1))


def test_redq_target_takes_the_minimum_of_a_random_pair() -> None:
    """N > 2 critics: min over a pair drawn per update and seed (REDQ); N = 2: over both."""
    q = torch.tensor([[[1.0, 5.0], [3.0, 2.0], [0.0, 9.0], [4.0, 4.0]]])  # [K=1, N=4, B=2]
    pair = torch.tensor([[1, 3]])

    assert torch.equal(td.target_min(q, pair), torch.tensor([[3.0, 2.0]]))
    assert torch.equal(td.target_min(q, None), torch.tensor([[0.0, 2.0]]))
    agent = agent_for("td3", critics=5)
    pairs = {
        tuple(td.random_pair(agent.cfg.critics, agent.update_gens)[0].tolist()) for _ in range(30)
    }
    assert len(pairs) > 3 and all(a != b and min(a, b) >= 0 for a, b in pairs)
    assert td.random_pair(agent_for("td3").cfg.critics, agent.update_gens) is None


# --- one learning step, eager or compiled ----------------------------------------------------
def _run_steps(
    algo: str, compiled: bool | str, n: int = 4, **kw: object
) -> tuple[list[dict], dict]:
    """n learning steps (sample, OFENet, agent, priorities) on a fixed prioritized replay."""
    from widerl.run.step import LearnStep

    agent = agent_for(algo, policy_delay=2, **kw)
    rb = ReplayBuffer(OBS, ACT, 1_000, prioritized=True, seed=3)
    for i in range(4):
        b = fixed_batch(term=float(i % 2), seed=i)
        rb.add(b.obs, b.act, b.rew, b.next_obs, b.term)
    step = LearnStep(rb, agent.features, agent, 32, compiled=compiled)
    metrics = [step(i, n) for i in range(n)]
    return metrics, {**agent.checkpoint_state(), "replay": rb.state_dict()}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("backend", "algo", "kw", "moment_atol"),
    [
        # Inductor's C++ code, what --compile runs: one case, as it compiles for about a
        # minute on a cold cache here. The others capture the same one graph (dynamo,
        # torch.func, functionalised mutations) and run it with eager kernels ("aot_eager").
        ("inductor", "sac", {"critics": 3, "arch": "d2rl", "ofenet_units": 8,
                             "ofenet_layers": 2}, 1e-9),
        ("aot_eager", "td3", {"activation": "swish", "critic_loss": "huber", "arch": "densenet",
                              "batchnorm": True}, 1e-9),
        # Beyond the paper, in one case (compilation is the cost): CrossQ's joint forward
        # through Batch Renormalization past its warm-up, a C51 head, --obs-norm, AdamW.
        # Batch norms in every layer of both networks: first moments near zero differ by
        # float rounding up to ~5e-7 (of moments up to ~1), so they get an absolute 1e-6.
        ("aot_eager", "crossq", {"critic_head": "c51", "atoms": 11, "v_min": -5.0, "v_max": 5.0,
                    "obs_norm": True, "weight_decay": 0.01, "renorm_warmup": 2}, 1e-6),
    ],
)  # fmt: skip
def test_compiled_learning_step_matches_eager(
    backend: str, algo: str, kw: dict, moment_atol: float
) -> None:
    """torch.compile of the whole learning step (one graph: sampling, OFENet's update, the
    agent's forward, backward, Adam and targets, priorities) gives the eager step's
    parameters, targets, optimizer moments, priorities and metrics to 1e-5 after 4 steps (2
    actor steps for TD3), with importance weights and terminations. (BatchNorm after DenseNet
    features that OFENet's own BatchNorm already normalised is ill-conditioned enough for
    float rounding to grow past 1e-5 in Adam's first steps, so no case combines the two.)"""
    kw = {**kw, "lr": 1e-3}
    m_ref, s_ref = _run_steps(algo, compiled=False, **kw)
    m_c, s_c = _run_steps(algo, compiled=backend, **kw)
    for k, v in s_ref["modules"].items():
        torch.testing.assert_close(s_c["modules"][k], v, rtol=1e-5, atol=1e-5, msg=k)
    for name, opt in s_ref["optimizers"].items():
        got = s_c["optimizers"][name]
        assert torch.equal(got["step"], opt["step"])
        for key in ("exp_avg", "exp_avg_sq"):
            for x, y in zip(got[key], opt[key], strict=True):
                torch.testing.assert_close(x, y, rtol=1e-4, atol=moment_atol, msg=(name, key))
    torch.testing.assert_close(s_c["replay"]["priorities"], s_ref["replay"]["priorities"])
    for ref, got in zip(m_ref, m_c, strict=True):
        assert ref.keys() == got.keys()
        for k in ref:
            assert not got[k].requires_grad
            torch.testing.assert_close(got[k], ref[k], rtol=1e-5, atol=1e-5, msg=k)
    # Parameters moved: the comparison above is not between two untouched networks.
    agent = agent_for(algo, **kw)
    assert not torch.allclose(s_c["modules"]["actor.mean.weight"], agent.actor.mean.weight)


@pytest.mark.parametrize("backend", [False, "aot_eager"])
def test_many_updates_per_call_are_the_single_calls(backend: bool | str) -> None:
    """--utd K's call of K updates (one graph when compiled) draws the same batches and noise
    and gives the same metrics, parameters, moments and priorities as K single calls: eager
    exactly, captured to float rounding. TD3 with a policy delay of 2 and calls of 3 updates,
    so the calls' actor-step patterns differ (two graphs); prioritized, so every update's
    importance exponent (beta) matters."""
    from widerl.run.step import LearnStep

    def run(per_call: int, compiled: bool | str) -> tuple[list[dict], dict]:
        agent = agent_for("td3", policy_delay=2, lr=1e-3)
        rb = ReplayBuffer(OBS, ACT, 1_000, prioritized=True, seed=3)
        for i in range(4):
            b = fixed_batch(term=float(i % 2), seed=i)
            rb.add(b.obs, b.act, b.rew, b.next_obs, b.term)
        step = LearnStep(rb, agent.features, agent, 32, compiled=compiled)
        metrics = []
        for g in range(0, 6, per_call):
            m = step(g, 6, per_call)
            if per_call == 1:
                metrics.append(m)
            else:
                assert all(v.shape[0] == per_call for v in m.values())
                metrics += [{k: v[j] for k, v in m.items()} for j in range(per_call)]
        assert agent.n_updates == 6
        return metrics, {**agent.checkpoint_state(), "replay": rb.state_dict()}

    m_ref, s_ref = run(1, False)
    m, s = run(3, backend)
    close = torch.equal if not backend else (
        lambda a, b: torch.allclose(a, b, rtol=1e-5, atol=1e-6))  # fmt: skip
    for ref, got in zip(m_ref, m, strict=True):
        assert ref.keys() == got.keys() and all(close(got[k], ref[k]) for k in ref), ref.keys()
    for k, v in s_ref["modules"].items():
        assert close(s["modules"][k], v), k
    for name, opt in s_ref["optimizers"].items():
        for key in ("exp_avg", "exp_avg_sq"):
            for x, y in zip(s["optimizers"][name][key], opt[key], strict=True):
                assert close(x, y), (name, key)
    assert close(s["replay"]["priorities"], s_ref["replay"]["priorities"])
    assert m_ref[0]["actor_loss"] != m_ref[1]["actor_loss"]  # the delay's phases differ


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_adam_matches_torch_optim(weight_decay: float) -> None:
    """widerl.nets.optim.Adam is torch.optim.Adam (and AdamW with weight decay) step for step."""
    from widerl.nets.optim import Adam

    torch.manual_seed(0)
    w1 = torch.randn(6, 4, requires_grad=True)
    w2 = w1.detach().clone()
    cls = torch.optim.AdamW if weight_decay else torch.optim.Adam
    ref = cls([w1], lr=1e-2, weight_decay=weight_decay)
    ours = Adam([w2], 1e-2, weight_decay=weight_decay)
    for _ in range(5):
        g = torch.randn(6, 4)
        w1.grad = g.clone()
        ref.step()
        ours.step([g])
        torch.testing.assert_close(w2, w1.detach(), rtol=1e-5, atol=1e-6)  # float32 rounding
    assert int(ours.step_count) == 5


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_adam_foreach_and_traced_forms_agree_bit_for_bit(
    weight_decay: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Adam.step and soft_update run foreach ops eagerly and a loop over the tensors when
    torch.compile traces them (nets/optim.py): the same arithmetic, so the same bits."""
    from widerl.nets.optim import Adam, soft_update

    torch.manual_seed(0)
    shapes = [(2, 4, 3), (5,), (2, 1, 3)]
    params = [[torch.randn(s) for s in shapes] for _ in range(2)]
    params[1] = [p.clone() for p in params[0]]
    targets = [[p.clone() for p in params[0]] for _ in range(2)]
    opts = [Adam(ps, 1e-2, betas=(0.5, 0.999), weight_decay=weight_decay) for ps in params]
    for _ in range(4):
        grads = [torch.randn(s) for s in shapes]
        for traced, opt, ps, ts in zip((False, True), opts, params, targets, strict=True):
            monkeypatch.setattr(torch.compiler, "is_compiling", lambda t=traced: t)
            opt.step(grads)
            soft_update(ts, ps, 0.3)
    monkeypatch.undo()
    for a, b in zip(params[0] + targets[0], params[1] + targets[1], strict=True):
        assert torch.equal(a, b)
    assert not torch.equal(params[0][0], targets[0][0])  # both moved, differently


@pytest.mark.parametrize("algo", ["sac", "td3"])
def test_checkpoint_round_trip_continues_identically(algo: str) -> None:
    """Saved and reloaded mid-run (optimizer moments, step counts and the agent's random
    streams included), an agent's next updates equal the original's."""
    import io

    a = agent_for(algo)
    for i in range(3):
        a.update(fixed_batch(seed=i))
    buf = io.BytesIO()
    torch.save(a.checkpoint_state(), buf)
    buf.seek(0)
    b = agent_for(algo, seed=99)  # other initial weights and streams, all replaced by the load
    b.load_checkpoint_state(torch.load(buf, weights_only=True))
    for i in range(3, 6):
        ma = a.update(fixed_batch(seed=i))
        mb = b.update(fixed_batch(seed=i))
        assert all(torch.equal(ma[k], mb[k]) for k in ma)
    for (k, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y), k
    assert torch.equal(a.actor_opt.step_count, b.actor_opt.step_count)
    obs = torch.randn(3, OBS)
    assert torch.equal(a.act(obs), b.act(obs))  # the acting stream continues too


@pytest.mark.parametrize("arch", ["mlp", "densenet"])
def test_td_abs_outside_the_update_equals_what_the_update_writes_back(arch: str) -> None:
    """Ape-X collectors' initial priorities (Agent.td_abs) are the learner's quantity: with a
    deterministic target (TD3 without smoothing noise), exactly the update's `td_abs`."""
    agent = agent_for("td3", arch=arch, policy_noise=0.0)
    batch = fixed_batch()
    before = agent.td_abs(batch)
    assert torch.allclose(before, agent.update(batch)["td_abs"], atol=1e-5)
    assert not torch.allclose(agent.td_abs(batch), before)  # the critics moved


def test_each_learning_step_compiles_its_own_graphs() -> None:
    """torch.compile caches graphs per code object, up to a recompile limit (8). Steps built
    one after another in one process (a test session, a notebook, runs of an experiment) over
    replays of different sizes must each get their own graph, not share the method's cache:
    with the limit at 1 graph, three compiled steps over three capacities all run."""
    import torch._dynamo

    from widerl.run.step import LearnStep

    with torch._dynamo.config.patch(recompile_limit=1):
        for capacity in (100, 200, 300):
            agent = agent_for("sac")
            rb = ReplayBuffer(OBS, ACT, capacity, seed=3)
            b = fixed_batch(seed=capacity)
            rb.add(b.obs, b.act, b.rew, b.next_obs, b.term)
            step = LearnStep(rb, agent.features, agent, 8, compiled="eager")
            assert torch.isfinite(step(0, 2)["critic_loss"])


@pytest.mark.parametrize("algo", ["sac", "td3"])
@pytest.mark.parametrize("features", ["raw", "ofenet", "obs_norm"])
def test_skipping_the_constant_columns_gradient_changes_no_update(
    algo: str, features: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The DenseNet agents skip the input gradient of the columns that carry none (z_s inside
    z_sa in the actor's loss, z_sa inside the critics' later layers: nets/ensemble.py). That
    relies on every feature learner's z_sa beginning with z_s; with it, three updates give
    the parameters of the plain product to float rounding, for fewer FLOPs."""
    from torch.utils.flop_counter import FlopCounterMode

    from widerl.nets.ensemble import EnsembleLinear

    kw = {"arch": "densenet", "activation": "swish", "lr": 1e-3, "policy_delay": 1}
    if features != "raw":
        kw.update(ofenet_units=16, ofenet_layers=2)
    if features == "obs_norm":
        kw["obs_norm"] = True

    def run() -> tuple[dict[str, torch.Tensor], float]:
        agent = agent_for(algo, **kw)
        z_s = agent.features.state(fixed_batch().obs.unsqueeze(0))
        act = torch.rand(1, B, ACT)
        assert torch.equal(agent.features.state_action(z_s, act)[..., : z_s.shape[-1]], z_s)
        with FlopCounterMode(display=False) as flops:
            for seed in range(3):
                agent.update(fixed_batch(seed=seed))
        return {k: v.clone() for k, v in agent.state_dict().items()}, flops.get_total_flops()

    ours, skipped = run()
    monkeypatch.setattr(EnsembleLinear, "forward", EnsembleLinear.product)
    ref, full = run()
    for k, v in ref.items():
        torch.testing.assert_close(ours[k], v, rtol=1e-5, atol=1e-6, msg=k)
    assert skipped < full
