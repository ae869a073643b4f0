"""OFENet (Sec. 3.1, A.1, A.2): sizes, the auxiliary task, isolation from RL, target, BN."""

import json
from pathlib import Path

import pytest
import torch

from widerl.agents import make_agent
from widerl.analysis.summary import network_tables
from widerl.cli import main
from widerl.config import resolve
from widerl.nets.ofenet import OFENet
from widerl.replay.buffer import Batch


def random_batch(n: int = 32, obs_dim: int = 5, act_dim: int = 2) -> Batch:
    return Batch(
        torch.randn(n, obs_dim),
        torch.rand(n, act_dim) * 2 - 1,
        torch.randn(n),
        torch.randn(n, obs_dim),
        torch.zeros(n),
        None,
        torch.arange(n),
    )


@pytest.mark.parametrize(("units", "layers"), [(64, 8), (32, 4), (30, 3), (8, 1)])
def test_output_sizes(units: int, layers: int) -> None:
    net = OFENet(11, 3, units=units, layers=layers)
    assert (net.s_dim, net.sa_dim) == (11 + units, 11 + units + 3 + units)
    obs = torch.randn(1, 5, 11)
    z_s = net.state(obs)
    z_sa = net.state_action(z_s, torch.randn(1, 5, 3))
    assert z_s.shape == (1, 5, net.s_dim) and z_sa.shape == (1, 5, net.sa_dim)
    assert torch.equal(z_s[..., :11], obs)  # DenseNet carries the raw state through
    assert [layer.in_dim for layer in net.online.phi_s.layers] == [
        11 + i * units // layers for i in range(layers)
    ]


def test_units_must_split_evenly() -> None:
    with pytest.raises(ValueError, match="split evenly"):
        OFENet(11, 3, units=10, layers=3)
    assert main(["train", "--ofenet-units", "10", "--ofenet-layers", "3"]) == 2


def test_aux_loss_goes_near_zero_on_a_linear_system() -> None:
    """s' = A s + B a is exactly representable through the DenseNet's skip path and the linear
    predictor, so L_aux (Eq. 1) must fall close to zero."""
    torch.manual_seed(0)
    obs_dim, act_dim = 6, 2
    a_mat = torch.randn(obs_dim, obs_dim) * 0.3
    b_mat = torch.randn(act_dim, obs_dim) * 0.3
    net = OFENet(obs_dim, act_dim, units=32, layers=4, lr=3e-3)
    first = None
    for _ in range(1500):
        s, a = torch.randn(128, obs_dim), torch.rand(128, act_dim) * 2 - 1
        loss = net.update(s, a, s @ a_mat + a @ b_mat)
        first = loss if first is None else first
    s, a = torch.randn(1024, obs_dim), torch.rand(1024, act_dim) * 2 - 1
    test = net.eval_loss(s, a, s @ a_mat + a @ b_mat)
    target_var = (s @ a_mat + a @ b_mat).var()
    assert test < 0.01 * target_var and test < 0.05 * first


def test_target_dim_predicts_only_the_first_dims() -> None:
    net = OFENet(10, 2, units=16, layers=2, target_dim=4)
    assert net.online.predictor.out_dim == 4
    s, a, s2 = torch.randn(1, 8, 10), torch.randn(1, 8, 2), torch.randn(1, 8, 10)
    s2_changed = s2.clone()
    s2_changed[..., 4:] += 100.0  # dims beyond target_dim do not enter the loss
    assert torch.equal(net.aux_loss(s, a, s2), net.aux_loss(s, a, s2_changed))


def test_target_moves_by_tau_per_update() -> None:
    torch.manual_seed(0)
    net = OFENet(5, 2, units=8, layers=2, tau=0.1)
    before = [p.clone() for p in net.target.parameters()]
    net.update(torch.randn(16, 5), torch.randn(16, 2), torch.randn(16, 5))
    for t0, t, o in zip(before, net.target.parameters(), net.online.parameters(), strict=True):
        assert torch.allclose(t, t0 + 0.1 * (o - t0), atol=1e-6)


def test_batchnorm_train_for_updates_eval_for_features() -> None:
    net = OFENet(5, 2, units=8, layers=2)
    bn = net.online.phi_s.layers[0].norm
    x = torch.randn(64, 5) * 4 + 2
    stats = bn.running_mean.clone()
    net.update(x, torch.randn(64, 2), torch.randn(64, 5))
    assert not torch.equal(stats, bn.running_mean)  # the update ran in train mode
    assert not net.target.training  # features always from eval-mode BN
    net.train()
    assert not net.target.training
    one = net.state(x[None, :1])
    assert torch.allclose(one, net.state(x[None])[:, :1], atol=1e-6)  # no batch dependence


@pytest.mark.parametrize("algo", ["sac", "td3"])
@pytest.mark.parametrize("arch", ["mlp", "densenet", "resnet", "d2rl"])
def test_rl_losses_never_reach_ofenet(algo: str, arch: str) -> None:
    torch.manual_seed(0)
    cfg = resolve(
        {
            "algo": algo,
            "arch": arch,
            "units": 16,
            "ofenet_units": 16,
            "ofenet_layers": 2,
            "policy_delay": 1,
        }
    )
    agent = make_agent(cfg, 5, 2, torch.device("cpu"))
    assert isinstance(agent.features, OFENet)
    assert agent.actor.body.in_dim == 5 + 16  # the actor sees z_s
    assert agent.critics.body.in_dim == 5 + 16 + 2 + 16  # the critics see z_sa
    of_before = {k: v.clone() for k, v in agent.features.state_dict().items()}
    batch = random_batch()
    actor_before = [p.clone() for p in agent.actor.parameters()]
    for _ in range(3):
        agent.update(batch)
    after = agent.features.state_dict()
    assert all(torch.equal(of_before[k], after[k]) for k in of_before)
    assert all(p.grad is None for p in agent.features.parameters())
    # ...while the actor did learn through phi_sa's dependence on the action.
    assert any(
        not torch.equal(a, b) for a, b in zip(actor_before, agent.actor.parameters(), strict=True)
    )


def test_table2_paper_l_rows() -> None:
    cfg = resolve({}, "paper-L")
    tables = {name: (rows, total) for name, rows, total, _ in network_tables(cfg, 111, 8)}
    rows, total = tables["OFENet z_s = phi_s(s)"]
    assert [(r[1], r[3]) for r in rows] == [
        (111, 29_696),
        (367, 95_232),
        (623, 160_768),
        (879, 226_304),
        (1_135, 291_840),
        (1_391, 357_376),
        (1_647, 422_912),
        (1_903, 488_448),
    ]
    assert total == 2_072_576
    rows, total = tables["SAC policy"]
    assert [(r[1], r[2], r[3]) for r in rows] == [
        (2_159, 2_048, 4_423_680),
        (4_207, 2_048, 8_617_984),
        (6_255, 8, 50_048),
    ]
    assert total == 13_091_712


def test_summary_command_paper_l(capsys) -> None:
    assert main(["summary", "--obs-dim", "111", "--act-dim", "8", "--preset", "paper-L"]) == 0
    out = capsys.readouterr().out
    for figure in (
        "29,696",
        "488,448",
        "2,072,576",
        "4,423,680",
        "8,617,984",
        "50,048",
        "13,091,712",
    ):
        assert figure in out


def test_train_and_resume_with_ofenet(tmp_path: Path) -> None:
    out = tmp_path / "of"
    args = [
        "train",
        "--out",
        str(out),
        "--env",
        "Pendulum-v1",
        "--preset",
        "paper-S",
        "--units",
        "16",
        "--ofenet-units",
        "16",
        "--ofenet-layers",
        "2",
        "--ofenet-pretrain",
        "20",
        "--batch-size",
        "32",
        "--warmup",
        "250",
        "--eval-every",
        "20",
        "--eval-episodes",
        "1",
        "--steps",
        "40",
        "--no-progress",
        "--checkpoint-replay",
    ]
    assert main(args) == 0
    import csv

    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert rows[-1]["aux_loss"] and rows[-1]["aux_loss_heldout"]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["dims"] == {"obs_dim": 3, "act_dim": 1, "z_s_dim": 19, "z_sa_dim": 36}
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    keys = ckpt["agent"]["modules"].keys()
    assert any(k.startswith("features.online.") for k in keys)
    assert any(k.startswith("features.target.") for k in keys)
    assert "ofenet" in ckpt["agent"]["optimizers"] and ckpt["pretrained"]
    assert main(["train", "--resume", str(out), "--steps", "60", "--no-progress"]) == 0
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [int(r["grad_step"]) for r in rows] == [0, 20, 40, 60]
    assert main(["eval", str(out), "--episodes", "1"]) == 0


def test_rl_gradients_never_reach_ofenet_while_it_trains() -> None:
    """Interleave OFENet's own updates with RL updates, as the trainer does: the target copy
    stays a set of plain leaves and the RL backward puts nothing into OFENet's gradients."""
    torch.manual_seed(0)
    cfg = resolve({"units": 16, "ofenet_units": 16, "ofenet_layers": 2})
    agent = make_agent(cfg, 5, 2, torch.device("cpu"))
    of = agent.features
    batch = random_batch()
    for _ in range(3):
        of.update(batch.obs, batch.act, batch.next_obs)
        agent.update(batch)
        assert all(p.grad is None for p in of.online.parameters())
    assert all(t.grad_fn is None and not t.requires_grad for t in of.target.parameters())


def test_paper_ofenet_preset_follows_the_ofenet_paper_per_task() -> None:
    from widerl.config import resolve

    hopper = resolve({"env": "Hopper-v5"}, "paper-ofenet")
    assert (hopper.arch, hopper.units, hopper.layers, hopper.activation) == ("mlp", 256, 2, "relu")
    assert (hopper.ofenet_units, hopper.ofenet_layers, hopper.ofenet_target_dim) == (240, 6, 0)
    human = resolve({"env": "Humanoid-v5"}, "paper-ofenet")
    assert (human.ofenet_layers, human.ofenet_target_dim) == (8, 270)  # no contact forces
    assert resolve({"env": "Ant-v5"}, "paper-L").ofenet_target_dim == 27
    # An explicit flag still wins over the per-task value.
    assert resolve({"env": "Ant-v5", "ofenet_target_dim": 5}, "paper-L").ofenet_target_dim == 5


def test_collectors_get_only_ofenets_acting_copy() -> None:
    """What acts elsewhere is one explicit state (Agent.acting_state): the actor and OFENet's
    target copy, not its online copy; a copy loaded with it acts as the learner does."""
    cfg = resolve({"units": 16, "ofenet_units": 16, "ofenet_layers": 2})
    learner = make_agent(cfg, 5, 2, torch.device("cpu"))
    state = learner.acting_state()
    assert any(k.startswith("features.target.") for k in state)
    assert not any(k.startswith(("features.online.", "critics")) for k in state)
    with_critics = learner.acting_state(with_critics=True)
    assert any(k.startswith("critics.") for k in with_critics) and "log_alpha" in with_critics
    copy = make_agent(resolve({**vars(cfg), "seed": 7}), 5, 2, torch.device("cpu"))
    copy.load_state_dict(state, strict=False)
    obs = torch.randn(4, 5)
    assert torch.equal(copy.act(obs, deterministic=True), learner.act(obs, deterministic=True))
