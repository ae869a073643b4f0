"""Analysis tools: effective rank (A.4), filter-normalized loss landscapes (A.3) and
`widerl landscape` on a tiny real run."""

from __future__ import annotations

import csv
import math
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

from widerl.agents import make_agent
from widerl.agents.base import elementwise_critic_loss
from widerl.analysis.critic_landscape import critic_landscape, fixed_td_targets
from widerl.analysis.landscape import filter_normalized_direction, loss_surface
from widerl.analysis.srank import critic_srank, srank
from widerl.cli import main
from widerl.config import resolve
from widerl.nets.norms import EnsembleBatchNorm
from widerl.record.checkpoint import load_checkpoint, save_atomic
from widerl.replay.buffer import Batch, replay_rows


# --- srank ---------------------------------------------------------------------------------
def with_singular_values(s: list[float], n: int, d: int, seed: int = 0) -> torch.Tensor:
    """U diag(s) V^T with orthonormal U (n x r) and V (d x r)."""
    g = torch.Generator().manual_seed(seed)
    r = len(s)
    u, _ = torch.linalg.qr(torch.randn(n, r, generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(d, r, generator=g, dtype=torch.float64))
    return u @ torch.diag(torch.tensor(s, dtype=torch.float64)) @ v.T


# Cumulative ratios 0.5, 0.8, 0.9, 0.95, 0.98, 1.0; no delta below sits on a boundary.
SIGMA = [5.0, 3.0, 1.0, 0.5, 0.3, 0.2]


@pytest.mark.parametrize(
    ("delta", "expected"),
    [(0.6, 1), (0.3, 2), (0.15, 3), (0.07, 4), (0.03, 5), (0.01, 6), (0.001, 6), (0.999, 1)],
)
def test_srank_of_known_singular_values(delta: float, expected: int) -> None:
    phi = with_singular_values(SIGMA, n=64, d=32)
    assert srank(phi, delta) == expected
    assert srank(phi.T, delta) == expected  # same singular values
    assert srank(7.5 * phi.float(), delta) == expected  # scale-free, float32 input


def test_srank_edge_cases() -> None:
    assert srank(torch.zeros(10, 4)) == 0
    assert srank(with_singular_values([2.0], 16, 8), delta=0.0) == 1  # rank one
    eye = torch.eye(10)  # ten equal singular values: k/10 >= 1 - delta
    assert srank(eye, 0.01) == 10
    assert srank(eye, 0.25) == 8
    assert srank(eye, 0.55) == 5
    full = torch.randn(50, 12, generator=torch.Generator().manual_seed(1))
    assert srank(full, 0.0) == 12  # delta 0 counts every nonzero singular value
    with pytest.raises(ValueError, match="delta"):
        srank(eye, 1.0)
    with pytest.raises(ValueError, match="delta"):
        srank(eye, -0.1)
    with pytest.raises(ValueError, match="2-D"):
        srank(torch.ones(3))


def tiny_agent(**overrides: object):  # noqa: ANN201
    cfg = resolve({"units": 16, "layers": 2, **overrides})
    torch.manual_seed(0)
    return make_agent(cfg, 3, 1, torch.device("cpu"))


def test_critic_srank_uses_eval_mode_and_restores_it() -> None:
    agent = tiny_agent(batchnorm=True)
    agent.train()
    g = torch.Generator().manual_seed(0)
    obs, act = torch.randn(200, 3, generator=g), torch.rand(200, 1, generator=g) * 2 - 1
    bn = [m for m in agent.critics.modules() if isinstance(m, EnsembleBatchNorm)]
    assert bn
    stats = [m.running_mean.clone() for m in bn]
    k = critic_srank(agent, obs, act)
    assert all(m.training for m in agent.modules())
    # A train-mode forward would have moved the running statistics.
    assert all(torch.equal(m.running_mean, s) for m, s in zip(bn, stats, strict=True))
    agent.eval()
    with torch.no_grad():
        phi = agent.critics.features(torch.cat([obs, act], -1).unsqueeze(0))[0, 0]
    assert phi.shape == (200, 16)
    assert k == srank(phi) and 1 <= k <= 16


# --- filter normalization and the generic surface ----------------------------------------
def test_filter_normalized_direction_matches_filter_norms() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 3, 3), nn.Flatten(), nn.Linear(12, 8), nn.BatchNorm1d(8))
    params = list(net.parameters())
    d = filter_normalized_direction(params, torch.Generator().manual_seed(3))
    again = filter_normalized_direction(params, torch.Generator().manual_seed(3))
    other = filter_normalized_direction(params, torch.Generator().manual_seed(4))
    for p, u, u2, w in zip(params, d, again, other, strict=True):
        assert u.shape == p.shape
        assert torch.equal(u, u2)
        if p.dim() == 1:  # biases, BatchNorm weight and bias
            assert torch.count_nonzero(u) == 0
        else:
            rows = p.shape[0]
            torch.testing.assert_close(
                u.reshape(rows, -1).norm(dim=1), p.detach().reshape(rows, -1).norm(dim=1)
            )
            assert not torch.allclose(u, w)


def test_loss_surface_of_a_quadratic_matches_the_analytic_grid() -> None:
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    params = list(model.parameters())
    centre = [torch.randn_like(p) for p in params]
    before = [p.detach().clone() for p in params]

    def loss() -> torch.Tensor:
        return sum(((p - c) ** 2).sum() for p, c in zip(params, centre, strict=True))

    g = torch.Generator().manual_seed(1)
    d1 = [torch.randn(p.shape, generator=g) for p in params]
    d2 = [torch.randn(p.shape, generator=g) for p in params]
    alphas, betas, losses = loss_surface(params, loss, d1, d2, span=0.8, grid=7)

    assert all(torch.equal(p, b) for p, b in zip(params, before, strict=True))
    torch.testing.assert_close(alphas, torch.linspace(-0.8, 0.8, 7, dtype=torch.float64))
    assert torch.equal(alphas, betas) and losses.shape == (7, 7)

    # ||r + a u + b v||^2 with r = theta - c, expanded through inner products.
    def dot(x: list[torch.Tensor], y: list[torch.Tensor]) -> float:
        return sum(float((a.double() * b.double()).sum()) for a, b in zip(x, y, strict=True))

    r = [b - c for b, c in zip(before, centre, strict=True)]
    rr, uu, vv = dot(r, r), dot(d1, d1), dot(d2, d2)
    ru, rv, uv = dot(r, d1), dot(r, d2), dot(d1, d2)
    a = alphas[:, None]
    b = betas[None, :]
    expected = rr + a * a * uu + b * b * vv + 2 * a * ru + 2 * b * rv + 2 * a * b * uv
    torch.testing.assert_close(losses, expected, rtol=1e-5, atol=1e-5)
    assert losses[3, 3] == pytest.approx(rr, rel=1e-6)  # the centre is the trained point


def test_loss_surface_restores_parameters_when_the_loss_fails() -> None:
    model = nn.Linear(2, 2)
    params = list(model.parameters())
    before = [p.detach().clone() for p in params]
    calls = []

    def loss() -> torch.Tensor:
        calls.append(1)
        if len(calls) == 4:
            raise RuntimeError("boom")
        return model.weight.sum()

    ones = [torch.ones_like(p) for p in params]
    with pytest.raises(RuntimeError, match="boom"):
        loss_surface(params, loss, ones, ones, span=1.0, grid=3)
    assert all(torch.equal(p, b) for p, b in zip(params, before, strict=True))


# --- the critics' TD loss -------------------------------------------------------------------
def random_batch(n: int = 64) -> Batch:
    g = torch.Generator().manual_seed(5)
    term = (torch.rand(n, generator=g) < 0.1).float()
    obs, nxt = torch.randn(n, 3, generator=g), torch.randn(n, 3, generator=g)
    act = torch.rand(n, 1, generator=g) * 2 - 1
    return Batch(obs, act, torch.randn(n, generator=g), nxt, term, None, torch.arange(n))


@pytest.mark.parametrize(("algo", "loss"), [("sac", "huber"), ("td3", "mse")])
def test_critic_landscape_centre_is_the_td_loss_of_the_trained_critics(
    algo: str, loss: str
) -> None:
    agent = tiny_agent(algo=algo, critic_loss=loss)
    batch = random_batch()
    before = [p.detach().clone() for p in agent.parameters()]
    rng = torch.get_rng_state()
    streams = [g.get_state() for g in agent.update_gens]
    _, _, losses = critic_landscape(agent, batch, span=0.5, grid=3, seed=2)
    assert torch.equal(torch.get_rng_state(), rng)  # targets drawn from generators of their own
    assert all(
        torch.equal(g.get_state(), s) for g, s in zip(agent.update_gens, streams, strict=True)
    )
    assert all(torch.equal(p, b) for p, b in zip(agent.parameters(), before, strict=True))

    y = fixed_td_targets(agent, batch, seed=2)
    torch.testing.assert_close(y, fixed_td_targets(agent, batch, seed=2))
    with torch.no_grad():
        z_sa = torch.cat([batch.obs, batch.act], -1).unsqueeze(0)
        q1, q2 = agent.critics(z_sa)[0]
        want = (elementwise_critic_loss(loss, q1, y) + elementwise_critic_loss(loss, q2, y)).mean()
    assert float(losses[1, 1]) == pytest.approx(float(want), rel=1e-5)
    _, _, again = critic_landscape(agent, batch, span=0.5, grid=3, seed=2)
    assert torch.equal(losses, again)
    assert not torch.equal(losses[0], losses[1])  # moving the weights changes the loss


# --- `widerl landscape` on a tiny real run ----------------------------------------------------
TINY = ["--units", "16", "--layers", "2", "--batch-size", "32", "--eval-episodes", "1"]
TINY += ["--no-progress", "--threads", "1", "--env", "Pendulum-v1", "--warmup", "50"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("landscape") / "run"
    args = ["train", "--out", str(out), *TINY, "--steps", "40", "--eval-every", "40"]
    assert main([*args, "--checkpoint-replay"]) == 0
    return out


def copy_run(run: Path, dest: Path) -> Path:
    shutil.copytree(run, dest)
    return dest


def read_grid(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def test_landscape_cli_writes_plots_and_grid(finished_run: Path, tmp_path: Path, capsys) -> None:
    run = copy_run(finished_run, tmp_path / "run")
    state = load_checkpoint(run)
    # The trainer stores transitions spread over the whole replay at each save (A.3).
    sample_size = state["sample"]["obs"].shape[0]
    assert sample_size == min(state["replay"]["size"], 2048)
    assert main(["landscape", str(run), "--grid", "3", "--span", "0.5"]) == 0
    printed = capsys.readouterr().out
    assert f"over {sample_size} transitions" in printed
    for name in ("landscape_contour.png", "landscape_surface.png", "landscape.csv"):
        assert (run / name).stat().st_size > 0
        assert str(run / name) in printed
    rows = read_grid(run / "landscape.csv")
    assert [(float(r["alpha"]), float(r["beta"])) for r in rows] == [
        (a, b) for a in (-0.5, 0.0, 0.5) for b in (-0.5, 0.0, 0.5)
    ]
    assert all(math.isfinite(float(r["loss"])) and float(r["loss"]) >= 0 for r in rows)

    # Existing outputs are kept unless --force; --force replaces them.
    assert main(["landscape", str(run), "--grid", "3"]) == 2
    err = capsys.readouterr().err
    assert "--force" in err and "landscape" in err and len(err.strip().splitlines()) == 1
    assert main(["landscape", str(run), "--grid", "3", "--span", "0.5", "--force"]) == 0
    assert read_grid(run / "landscape.csv") == rows  # same seed, same grid


def test_landscape_falls_back_to_the_probe_batch(
    finished_run: Path, tmp_path: Path, capsys
) -> None:
    run = copy_run(finished_run, tmp_path / "run")
    state = load_checkpoint(run)
    state.pop("sample")
    replay = state["replay"]
    rows = replay_rows(replay)
    state["probe"] = {k: rows[k][:24].float() for k in ("obs", "act", "rew", "next_obs", "term")}
    state["replay"] = None
    save_atomic(state, run / "checkpoint.pt")
    out = tmp_path / "elsewhere" / "plots"
    assert main(["landscape", str(run), "--grid", "3", "--out", str(out)]) == 0
    assert "over 24 transitions" in capsys.readouterr().out
    assert len(read_grid(out / "landscape.csv")) == 9
    assert not (run / "landscape.csv").exists()


def test_landscape_falls_back_to_the_stored_replay(
    finished_run: Path, tmp_path: Path, capsys
) -> None:
    run = copy_run(finished_run, tmp_path / "run")
    state = load_checkpoint(run)
    state.pop("probe", None)
    state.pop("sample", None)
    size = int(state["replay"]["size"])
    save_atomic(state, run / "checkpoint.pt")
    assert main(["landscape", str(run), "--grid", "3"]) == 0
    assert f"over {size} transitions" in capsys.readouterr().out  # all of them: < 4096
    assert len(read_grid(run / "landscape.csv")) == 9


def test_landscape_refuses_a_run_without_transitions(
    finished_run: Path, tmp_path: Path, capsys
) -> None:
    run = copy_run(finished_run, tmp_path / "run")
    state = load_checkpoint(run)
    state.pop("probe", None)
    state.pop("sample", None)
    state["replay"] = None
    save_atomic(state, run / "checkpoint.pt")
    assert main(["landscape", str(run), "--grid", "3"]) == 2
    err = capsys.readouterr().err
    assert "no stored transitions" in err and str(run) in err
    assert not (run / "landscape.csv").exists()


def test_landscape_bad_inputs(finished_run: Path, tmp_path: Path, capsys) -> None:
    no_ckpt = tmp_path / "no_ckpt"
    no_ckpt.mkdir()
    shutil.copy(finished_run / "config.json", no_ckpt)
    empty = tmp_path / "empty"
    empty.mkdir()
    a_file = tmp_path / "file"
    a_file.write_text("x")
    cases = [
        ([str(tmp_path / "missing")], "is not a folder"),
        ([str(empty)], "no config.json"),
        ([str(no_ckpt)], "no checkpoint"),
        ([str(finished_run), "--grid", "2"], "--grid 2"),
        ([str(finished_run), "--span", "0"], "--span 0"),
        ([str(finished_run), "--span", "-1"], "--span -1"),
        ([str(finished_run), "--span", "nan"], "--span nan"),
        ([str(finished_run), "--out", str(a_file)], "not a folder"),
    ]
    for args, message in cases:
        assert main(["landscape", *args]) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("widerl: error:") and message in err, (args, err)
        assert len(err.strip().splitlines()) == 1
    assert not (finished_run / "landscape.csv").exists()
