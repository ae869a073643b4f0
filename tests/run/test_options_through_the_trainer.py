"""The options beyond the paper (bodies, heads, CrossQ, obs-norm, resets) through the whole
trainer, at a tiny size: each bundle of options resumes to the uninterrupted run's rows, runs
compiled (aot_eager, compiling once) to the eager run's rows, and collects on Ray with
--actors (the policy and --obs-norm's statistics reaching the collectors with the weights)."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path
from typing import Any

import pytest
import raytools
import torch

import widerl
from widerl.record.logger import TIMING_COLUMNS

ray_tmp = raytools.ray_tmp

TINY = {
    "env": "Pendulum-v1",
    "units": 16,
    "layers": 1,
    "batch_size": 32,
    "buffer_size": 5_000,
    "warmup": 100,
    "eval_every": 40,
    "eval_episodes": 1,
    "threads": 1,
    "progress": False,
    "seed": 2,
    "checkpoint_replay": True,  # an exact resume needs the replay
}
SUPPORT = {"atoms": 11, "v_min": -50.0, "v_max": 10.0}
V2_SUPPORT = {"atoms": 11, "v_min": -5.0, "v_max": 5.0}  # returns scaled to within +-5
ENCODER = {"encoder_units": 16, "encoder_dim": 8, "encoder_target_every": 10}
# Every new option is in at least one bundle; --reset-every falls inside the runs (before
# updates 61 and 121 of 120: one reset, and the resumed half starts after it).
BUNDLES: dict[str, dict[str, Any]] = {
    "sac-simba-obsnorm-c51-adamw-utd-reset-nstep": {
        "algo": "sac", "arch": "simba", "obs_norm": True, "critic_head": "c51", **SUPPORT,
        "weight_decay": 0.01, "utd": 2, "reset_every": 60, "n_step": 2,
    },
    "td3-bronet-hlgauss-reset-nstep-amp": {
        "algo": "td3", "arch": "bronet", "critic_head": "hlgauss", **SUPPORT, "reset_every": 50,
        "n_step": 3, "amp": "bf16",
    },
    "crossq-obsnorm-hlgauss-lap": {
        "algo": "crossq", "obs_norm": True, "critic_head": "hlgauss", **SUPPORT,
        "renorm_warmup": 30, "utd": 2, "sampler": "lap",
    },
    # The paper's lineage (issue 26): SimbaV2 on scaled rewards, XQC's composition, SALE and
    # MR.Q's encoder (their fixed copies refreshed every 10 updates, so inside the runs).
    "sac-simbav2-obsnorm-c51-rewardscale-reset": {
        "algo": "sac", "arch": "simbav2", "obs_norm": True, "critic_head": "c51", **V2_SUPPORT,
        "reward_scaling": True, "reset_every": 60,
    },
    "crossq-weightprojection-c51-rewardscale": {
        "algo": "crossq", "weight_projection": True, "critic_head": "c51", **V2_SUPPORT,
        "reward_scaling": True, "renorm_warmup": 30,
    },
    "td3-sale-lap-nstep": {
        "algo": "td3", "features": "sale", **ENCODER, "sampler": "lap", "n_step": 2,
    },
    "td3-mrq-obsnorm-nstep": {
        "algo": "td3", "features": "mrq", **ENCODER, "encoder_horizon": 3, "obs_norm": True,
        "n_step": 3,
    },
}  # fmt: skip
LINEAGE = [name for name in BUNDLES if any(k in name for k in ("simbav2", "weightproj", "sale",
                                                                "mrq"))]  # fmt: skip


def rows(run: Path) -> list[dict[str, str]]:
    with (run / "metrics.csv").open() as f:
        return [{k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in csv.DictReader(f)]


def cfg(name: str, **kw: Any) -> widerl.Config:
    return widerl.resolve({**TINY, **BUNDLES[name], **kw})


@pytest.mark.slow
@pytest.mark.parametrize("name", BUNDLES)
def test_a_run_resumed_midway_writes_the_uninterrupted_rows(name: str, tmp_path: Path) -> None:
    """80 updates, then resumed to 120 == 120 at once: every row, every loss, the resets
    column (the second half starts after BRO's reset), the obs statistics and CrossQ's
    Batch Renorm counters all come back from the checkpoint."""
    widerl.train(cfg(name, steps=120, compile="off"), tmp_path / "ref")
    widerl.train(cfg(name, steps=80, compile="off"), tmp_path / "cut")
    result = widerl.train(resume=tmp_path / "cut", steps=120)
    assert result.grad_step == 120
    ref = rows(tmp_path / "ref")
    assert [r["grad_step"] for r in ref] == ["0", "40", "80", "120"]
    assert rows(tmp_path / "cut") == ref
    if BUNDLES[name].get("reset_every"):
        assert int(ref[-1]["resets"]) >= 1


@pytest.mark.slow
# CrossQ's compiled learning step (with C51, --obs-norm, AdamW) is test_agents'
# test_compiled_learning_step_matches_eager: compilation is the cost here.
@pytest.mark.parametrize(
    "name",
    ["sac-simba-obsnorm-c51-adamw-utd-reset-nstep", "td3-bronet-hlgauss-reset-nstep-amp",
     "sac-simbav2-obsnorm-c51-rewardscale-reset", "td3-mrq-obsnorm-nstep"],
)  # fmt: skip
def test_a_compiled_run_compiles_once_and_matches_the_eager_run(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--compile on (aot_eager: inductor's graph capture with eager kernels): after the first
    policy-delay cycle nothing recompiles, across a reset too (it changes every tensor in
    place), and the rows are the eager run's but for float rounding."""
    import widerl.run.step as learner
    from widerl.run.trainer import Trainer

    original = learner.compile_step
    monkeypatch.setattr(learner, "compile_step", lambda fn, dev, backend="inductor", **kw:
        original(fn, dev, "aot_eager", **kw))  # fmt: skip
    step = Trainer.learn_step

    def strict_after_warmup(self: Trainer) -> None:
        if self.grad_step >= 3:  # every variant (policy delay up to 3) exists by now
            with torch.compiler.set_stance("fail_on_recompile"):
                return step(self)
        return step(self)

    monkeypatch.setattr(Trainer, "learn_step", strict_after_warmup)
    widerl.train(cfg(name, steps=120, compile="on"), tmp_path / "compiled")
    widerl.train(cfg(name, steps=120, compile="off"), tmp_path / "eager")
    compiled, eager = rows(tmp_path / "compiled"), rows(tmp_path / "eager")
    assert [r["grad_step"] for r in compiled] == ["0", "40", "80", "120"]
    for a, b in zip(compiled, eager, strict=True):
        assert (a["env_step"], a["episodes"], a["resets"]) == (
            b["env_step"], b["episodes"], b["resets"]
        )  # fmt: skip
        for k in ("critic_loss", "q_mean", "actor_loss"):
            if b[k]:
                assert float(a[k]) == pytest.approx(float(b[k]), rel=1e-3, abs=1e-4), k


def test_utd_calls_of_k_updates_write_the_rows_of_single_updates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, learn_step_sizes: list[int]
) -> None:
    """--utd 3 runs an env step's 3 updates in one call of the learning step, except where
    they would cross an evaluation (every 40), a reset (every 25) or the end (100): the rows
    are exactly those of the same run calling the step once per update."""
    from widerl.run.trainer import Trainer

    sizes = learn_step_sizes
    settings = {"algo": "td3", "utd": 3, "reset_every": 25, "steps": 100, "compile": "off"}
    widerl.train(widerl.resolve({**TINY, **settings}), tmp_path / "calls-of-3")
    # 25 / 3 and 40 / 3 leave remainders: around each boundary some single calls.
    assert sum(sizes) == 100 and set(sizes) == {1, 3} and sizes.count(3) >= 25
    monkeypatch.setattr(Trainer, "updates_now", lambda self: 1)
    widerl.train(widerl.resolve({**TINY, **settings}), tmp_path / "single")
    assert rows(tmp_path / "calls-of-3") == rows(tmp_path / "single")
    assert [r["grad_step"] for r in rows(tmp_path / "single")] == ["0", "40", "80", "100"]


@pytest.mark.parametrize(
    "name",
    ["sac-simba-obsnorm-c51-adamw-utd-reset-nstep", "crossq-obsnorm-hlgauss-lap",
     "td3-sale-lap-nstep"],
)  # fmt: skip
def test_a_collector_acts_with_the_learners_policy_and_obs_statistics(name: str) -> None:
    """In process: the weights a collector receives carry --obs-norm's running statistics;
    after loading them it normalises and acts exactly as the learner's agent does."""
    from widerl.agents import make_agent
    from widerl.collect.ray_collectors import CollectorWorker, export_weights, weight_keys

    c = cfg(name, actors=1, envs_per_actor=2, steps=100)
    learner = make_agent(c, 3, 1, torch.device("cpu"))
    obs = torch.randn(64, 3) * 5 + 2
    for _ in range(3):  # moves the statistics away from their initial values
        learner.features.update(obs, torch.rand(64, 1), obs)
    keys = weight_keys(learner, with_critics=False)
    stats = [k for k in keys if k.startswith("features.")]
    assert stats, keys
    w = CollectorWorker(dataclasses.asdict(c), index=0, seed=0)
    w.collect(random=False, box=[export_weights(learner, keys)], version=1)
    mine, theirs = learner.state_dict(), w.agent.state_dict()
    for k in keys:
        assert torch.equal(theirs[k], mine[k]), k
    probe = torch.randn(5, 3)
    torch.testing.assert_close(
        w.agent.act(probe, deterministic=True), learner.act(probe, deterministic=True)
    )
    w.close()


@pytest.mark.slow
@pytest.mark.parametrize(
    "name",
    ["sac-simba-obsnorm-c51-adamw-utd-reset-nstep", "sac-simbav2-obsnorm-c51-rewardscale-reset"],
)  # fmt: skip
def test_collectors_on_ray_with_the_new_options(name: str, tmp_path: Path, ray_tmp: str) -> None:
    """--actors 1 with SimBa (or SimbaV2 on scaled rewards: the collector sends each row's
    discounted return), --obs-norm, a C51 head, AdamW, --utd 2 and a reset inside the run:
    the run completes with the collector's transitions, a reset counted, and the checkpoint
    resumes on Ray."""
    settings = {"actors": 1, "envs_per_actor": 2, "sync_every": 10, "compile": "off"}
    run = tmp_path / "ray"
    result = widerl.train(cfg(name, steps=80, **settings), run)
    assert not result.interrupted and result.grad_step == 80
    last = rows(run)[-1]
    assert int(last["resets"]) == 1 and int(last["replay_size"]) > 0
    assert len(last["collector_returns"].split(";")) == 1
    if BUNDLES[name].get("reward_scaling"):  # the collector's returns reached the learner
        state = torch.load(run / "checkpoint.pt", weights_only=True)
        returns = state["collector"]["returns"]
        assert returns["count"] == int(last["env_step"]) and returns["var"] > 0
    result = widerl.train(resume=run, steps=120)
    assert result.grad_step == 120 and int(rows(run)[-1]["resets"]) == 1


@pytest.mark.slow
@pytest.mark.parametrize("name", LINEAGE)
def test_stacked_seeds_of_the_lineage_write_their_single_runs_rows(
    name: str, tmp_path: Path
) -> None:
    """Seed 1's rows in a `--seeds 1,2` run are the `--seed 1` run's: each seed keeps its own
    encoder, fixed copy, refresh counter and reward scale (members never mix)."""
    settings = cfg(name, steps=40, compile="off")
    widerl.train(settings, tmp_path / "many", seeds=[1, 2])
    widerl.train(dataclasses.replace(settings, seed=1), tmp_path / "one")
    many, one = rows(tmp_path / "many" / "s1"), rows(tmp_path / "one")
    assert len(one) == 2
    for m, o in zip(many, one, strict=True):
        for k, v in o.items():
            try:
                assert float(m[k]) == pytest.approx(float(v), rel=1e-4, abs=1e-4), k
            except ValueError:  # a text column (per-collector lists)
                assert m[k] == v, k
