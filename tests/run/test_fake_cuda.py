"""widerl's GPU path on fake CUDA (tests/fake_cuda.py says how and what it cannot check).

For every algorithm and option family a run is built for device "cuda" through the composition
root, fills its replay through the real intake from real envs, pre-trains OFENet, learns a few
eager steps (no host read and no CPU tensor allowed inside them), acts for collection and
evaluation, writes metrics rows and checkpoints, resumes from its folder on cuda (with
`--checkpoint-replay`: the replay, intake, collector and env states come back), and its learning
step compiles as one graph (`fullgraph=True`, backend aot_eager) that runs without a host read.
The run's checkpoint then evaluates and loads on the CPU. The `check_*` functions run in a fresh
interpreter (`fake_cuda.run_checks`); the `test_*` functions start them.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import fake_cuda
import pytest
import torch

# Tiny runs on Pendulum-v1 (obs 3, act 1): every family's structure at a few units.
COMMON: dict[str, Any] = {
    "env": "Pendulum-v1",
    "device": "cuda",
    "batch_size": 16,
    "buffer_size": 600,
    "warmup": 40,
    "steps": 6,
    "eval_every": 3,
    "eval_episodes": 1,
    "checkpoint_replay": True,
    "compile": "off",  # the compiled step is traced below, with aot_eager
    "progress": False,
    "units": 16,
    "threads": 1,
}
CASES: dict[str, tuple[str | None, dict[str, Any]]] = {
    "sac-paper-original": ("paper-original", {}),
    # DenseNet with BatchNorm, OFENet (its BatchNorm, pre-training, held-out loss)
    "sac-paper-S-ofenet-batchnorm": (
        "paper-S",
        {"ofenet_units": 8, "ofenet_layers": 2, "ofenet_pretrain": 3, "batchnorm": True},
    ),
    "td3-prioritized-nstep": (
        None,
        {"algo": "td3", "prioritized": True, "policy_delay": 2, "n_step": 3},
    ),
    # Batch Renormalization past its warm-up, the joint forward of s and s'
    "crossq": ("crossq", {"actor_units": 16, "renorm_warmup": 2}),
    "simba-obsnorm-c51-amp": (
        "simba",
        {"critic_head": "c51", "atoms": 11, "actor_units": 8, "amp": "bf16"},
    ),
    "bronet-hlgauss": ("bro", {"atoms": 11, "actor_units": 8, "utd": 1, "reset_every": 0}),
    "critics-3-lap": (None, {"critics": 3, "sampler": "lap", "critic_loss": "huber"}),
    # The lineage: the hypersphere and its projection, reward scaling (the scale a device
    # tensor the intake's host statistics set), SALE and MR.Q's encoder (their refresh
    # counters, the replay's step sequences), XQC's composition
    "simbav2-rewardscale": (
        "simbav2",
        {"atoms": 11, "actor_units": 8, "utd": 1, "warmup": 40},
    ),
    "td7-sale-lap": (
        "td7",
        {
            "encoder_units": 8,
            "encoder_dim": 8,
            "encoder_target_every": 2,
            "warmup": 40,
            "actor_units": 16,
        },
    ),
    "mrq-encoder-nstep": (
        "mrq",
        {
            "encoder_units": 8,
            "encoder_dim": 8,
            "encoder_horizon": 2,
            "encoder_target_every": 2,
            "warmup": 40,
            "actor_units": 16,
        },
    ),
    "xqc": ("xqc", {"atoms": 11, "actor_units": 16, "renorm_warmup": 2, "warmup": 40}),
    "seeds-2": (None, {}),  # run with seeds [0, 1]
    "utd-2": (None, {"utd": 2, "steps": 8, "eval_every": 4}),
    "reset-every": (None, {"reset_every": 2}),
}
SEEDS = {"seeds-2": [0, 1]}


# --- what runs in the fake-CUDA interpreter ----------------------------------------------------
def _tensors(obj: Any) -> list[tuple[str, torch.Tensor]]:
    """The tensors an object keeps in its attributes (one level of lists and dicts)."""
    out = []
    for name, v in vars(obj).items():
        items = v.items() if isinstance(v, dict) else enumerate(v) if isinstance(v, list) else []
        if isinstance(v, torch.Tensor):
            out.append((name, v))
        out += [(f"{name}[{k}]", x) for k, x in items if isinstance(x, torch.Tensor)]
    return out


def _assert_on_cuda(trainer: Any) -> None:
    """Every tensor and generator the learner keeps is on cuda."""
    p = trainer.parts
    where = [(f"agent.{n}", t) for n, t in [*p.agent.named_parameters(), *p.agent.named_buffers()]]
    for lane in p.lanes:
        for buf in (lane.replay, lane.holdout):
            if buf is not None:
                parts = (buf.storage, buf.sampler, getattr(buf.sampler, "tree", None))
                where += [(f"replay.{n}", t) for part in parts if part for n, t in _tensors(part)]
    off = [(n, t.device) for n, t in where if t.device.type != "cuda"]
    assert not off, f"tensors of the learner off the device: {off[:5]}"
    gens = [*p.agent.update_gens, *p.agent.act_gens, *(lane.replay.generator for lane in p.lanes)]
    assert all(g.device.type == "cuda" for g in gens), [g.device for g in gens]


def _guard(trainer: Any, mode: fake_cuda.FakeCuda) -> None:
    """The trainer's learning step (sampling, the update, priorities, the metric sums) runs
    under `no_host_reads`. The divergence check runs, but its verdict is dropped: a fake
    tensor's placeholder values say nothing about finiteness."""
    learn_step, check = trainer.learn_step, trainer.check_finite

    def guarded() -> None:
        with mode.no_host_reads():
            learn_step()

    trainer.learn_step = guarded
    trainer.check_finite = lambda windows, grad_step: check.failures(windows, grad_step)


def check_run(case: str, out: str) -> None:
    """One family's run on fake cuda, its resume there, its compiled step; then its checkpoint
    on the CPU."""
    from widerl.cli import main
    from widerl.config import resolve
    from widerl.policy import load_policy
    from widerl.run.step import LearnStep
    from widerl.run.trainer import Trainer

    preset, over = CASES[case]
    seeds = SEEDS.get(case)
    run_dir = Path(out)
    run_dir.mkdir(parents=True)
    folders = [run_dir] if seeds is None else [run_dir / f"s{s}" for s in seeds]
    with fake_cuda.fake_cuda() as mode:
        cfg = resolve({**COMMON, **over}, preset)
        trainer = Trainer(cfg, run_dir, seeds)
        _assert_on_cuda(trainer)
        _guard(trainer, mode)
        result = trainer.run()
        assert result.grad_step == cfg.steps and not result.interrupted
        assert trainer.progress.pretrain_steps == trainer.parts.features.pretrain_updates
        for d in folders:
            rows = (d / "metrics.csv").read_text().splitlines()
            assert len(rows) == 1 + 1 + cfg.steps // cfg.eval_every, rows  # header, update 0
            ckpt = torch.load(d / "checkpoint.pt", weights_only=True)
            gens = ckpt["agent"]["generators"]
            assert {g["device"] for g in gens["update"] + gens["act"]} == {"cuda"}, gens
            assert ckpt["replay"]["rng_device"] == "cuda" and ckpt["replay"]["size"] > 0
        # Resumed from its folders (Trainer.restore loads the checkpoints itself).
        more = dataclasses.replace(cfg, steps=cfg.steps + cfg.eval_every)
        again = Trainer(more, run_dir, seeds)
        _guard(again, mode)
        assert again.run(resume=True).grad_step == more.steps
        # The learning step as one compiled graph, run without a host read.
        p = again.parts
        compiled = LearnStep([lane.replay for lane in p.lanes], p.features, p.agent,
                             cfg.batch_size, compiled="aot_eager")  # fmt: skip
        with mode.no_host_reads():
            for g in range(2):
                metrics = compiled(more.steps + g, more.steps + 2)
        assert all(v.device.type == "cuda" for v in metrics.values()), metrics
        assert mode.host_reads > 0  # acting, rows and checkpoints did read, outside the step
    # On the CPU, the checkpoint the fake CUDA run wrote: evaluation and load_policy.
    for d in folders:
        assert main(["eval", str(d), "--episodes", "1", "--device", "cpu"]) == 0
        act = load_policy(d).act(torch.zeros(3).numpy())
        assert act.shape == (1,)


def check_harness(out: str) -> None:
    """The fake-CUDA check fails where a real GPU would, and on host reads inside the step."""
    import widerl.replay.generators as generators
    from widerl.config import resolve
    from widerl.run.trainer import Trainer

    def fails(fn: Any, *errors: type[BaseException], match: str = "") -> None:
        with pytest.raises(errors or (Exception,), match=match):
            fn()

    with fake_cuda.fake_cuda() as mode:
        x = torch.ones(4, device="cuda")
        fails(lambda: x + torch.ones(4), match="found at least two devices")
        with mode.no_host_reads():
            fails(lambda: x.sum().item(), fake_cuda.HostRead, match="host synchronisation")
            fails(lambda: x.cpu(), fake_cuda.HostRead, match="host synchronisation")
            fails(lambda: x * torch.tensor(2.0), fake_cuda.HostRead, match="CPU tensor")
        assert x.sum().item() == 0.0  # outside the step: a placeholder
        fails(lambda: torch.randn(3, generator=torch.Generator(), device="cuda"),
              match="expected a 'cuda' device type for generator")  # fmt: skip
        fails(
            lambda: torch.Generator("cuda")
        )  # only widerl.replay.generators makes cuda generators
        g = generators.device_generator("cuda", 0)  # the stand-in, as widerl gets it
        fails(lambda: g.set_state(torch.Generator().get_state()), match="wrong size")
        generators.restore_generator(g, {"device": "cpu", "state": torch.Generator().get_state()})
        fails(lambda: torch.save({"w": x}, "/dev/null"), AssertionError, match="on cuda:0")

        # A host read slipped into the learning step fails the run.
        cfg = resolve({**COMMON, "steps": 2, "eval_every": 2})
        Path(out).mkdir(parents=True)
        trainer = Trainer(cfg, Path(out))
        _guard(trainer, mode)
        update = type(trainer.parts.agent)._update

        def reads(self: Any, *args: Any) -> dict[str, torch.Tensor]:
            metrics = update(self, *args)
            float(metrics["critic_loss"].sum())  # what logging inside the step would do
            return metrics

        type(trainer.parts.agent)._update = reads
        try:
            fails(trainer.run, fake_cuda.HostRead, match="inside the learning step")
        finally:
            type(trainer.parts.agent)._update = update


def check_acting_state() -> None:
    """Ray collectors run on CPU nodes: what a CUDA learner publishes (`export_weights`) is CPU
    numpy, and a collector (built in-process, as on a node) acts with it."""
    import numpy as np

    from widerl.agents import make_agent
    from widerl.collect.ray_collectors import CollectorWorker, export_weights, weight_keys
    from widerl.config import resolve

    cfg = resolve({**COMMON, "actors": 1, "prioritized": True, "initial_priority": "td"})
    with fake_cuda.fake_cuda():
        agent = make_agent(cfg, 3, 1, torch.device("cuda"))
        keys = weight_keys(agent, with_critics=True)
        weights = export_weights(agent, keys)
    assert keys and all(isinstance(v, np.ndarray) for v in weights.values()), weights
    worker = CollectorWorker(dataclasses.asdict(dataclasses.replace(cfg, device="cpu")), 0, 1)
    chunk = worker.collect(False, [weights], version=1)
    assert len(chunk) > 0 and chunk.priority is not None
    held = worker.agent.state_dict()
    for k, v in weights.items():  # every published tensor landed in the collector's copy
        assert torch.equal(held[k], torch.from_numpy(v)), k


def check_crossing(runs: list[str]) -> None:
    """Runs trained elsewhere (a CPU run, a CUDA-format one) evaluate, load and resume on cuda."""
    import numpy as np

    from widerl.cli import main
    from widerl.policy import load_policy
    from widerl.run.divergence import FiniteCheck

    # The divergence check runs, its verdict on placeholder values is dropped (see _guard).
    FiniteCheck.__call__ = lambda self, windows, grad_step: self.failures(windows, grad_step)
    with fake_cuda.fake_cuda():
        for run in runs:
            assert main(["eval", run, "--episodes", "1", "--device", "cuda"]) == 0
            assert load_policy(run, device="cuda").act(np.zeros(3)).shape == (1,)
            steps = json.loads((Path(run) / "config.json").read_text())["steps"]
            resume = ["train", "--resume", run, "--device", "cuda", "--steps", str(steps + 2)]
            assert main([*resume, "--no-progress"]) == 0


# --- the tests: each starts its check in a fresh interpreter -----------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_run_on_fake_cuda(case: str, tmp_path: Path) -> None:
    fake_cuda.check("test_fake_cuda:check_run", case=case, out=str(tmp_path / "run"))


def test_the_fake_cuda_check_fails_where_cuda_would(tmp_path: Path) -> None:
    fake_cuda.check("test_fake_cuda:check_harness", out=str(tmp_path / "run"))


def test_collectors_get_cpu_weights_from_a_cuda_learner() -> None:
    fake_cuda.check("test_fake_cuda:check_acting_state")


def test_without_a_compiler_the_checks_skip_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fake_cuda, "SHIM_CACHE", tmp_path)  # nothing built yet
    monkeypatch.setenv("CXX", "no-such-compiler")
    with pytest.raises(fake_cuda.Unavailable, match=r"^no C\+\+ compiler \(no-such-compiler\)"):
        fake_cuda.build_shim()
