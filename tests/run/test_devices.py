"""The same checks on every device this machine has: CPU always, CUDA where available.

On a CPU-only machine the CUDA cases are skipped and the CPU cases keep the tests themselves
honest; `benchmarks/gpu_check.sh` runs this file on a GPU machine.
"""

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from widerl.agents import make_agent
from widerl.cli import main
from widerl.config import resolve
from widerl.replay.buffer import Batch
from widerl.run.trainer import Trainer

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")
DEVICES = ["cpu", pytest.param("cuda", marks=CUDA)]

# Tiny learner settings; Pendulum-v1 has obs 3, act 1.
# Eager steps: the default --compile auto would compile a (default) 1M-update run.
TINY = {
    "units": 16,
    "layers": 2,
    "batch_size": 32,
    "buffer_size": 2_000,
    "env": "Pendulum-v1",
    "compile": "off",
}
SETUPS = {
    # plain MLP on raw states, uniform replay
    "sac-mlp": {"algo": "sac"},
    # DenseNet, OFENet features and its auxiliary update, prioritized replay
    "td3-densenet-ofenet-per": {
        "algo": "td3",
        "arch": "densenet",
        "ofenet_units": 8,
        "ofenet_layers": 2,
        "prioritized": True,
        "policy_delay": 1,
    },
    # beyond the paper: CrossQ's joint forward through Batch Renormalization past its
    # warm-up, a C51 head, observation normalisation, AdamW
    "crossq-c51-obsnorm": {
        "algo": "crossq",
        "critic_head": "c51",
        "atoms": 11,
        "obs_norm": True,
        "weight_decay": 0.01,
        "renorm_warmup": 1,
        "policy_delay": 1,
    },
    # SimBa body, HL-Gauss head
    "sac-simba-hlgauss": {"algo": "sac", "arch": "simba", "critic_head": "hlgauss"},
}


def test_forbid_host_sync_catches_a_host_read(forbid_host_sync) -> None:  # noqa: ANN001
    """The guard the tests below rely on does fail on a host read."""
    with pytest.raises(AssertionError, match="host synchronisation"), forbid_host_sync("cpu"):
        torch.ones(2).sum().item()


@pytest.mark.parametrize("setup", sorted(SETUPS))
@pytest.mark.parametrize("device", DEVICES)
def test_learn_step_forces_no_host_sync(
    device: str,
    setup: str,
    tmp_path: Path,
    forbid_host_sync,  # noqa: ANN001
) -> None:
    """The learner's whole step (sample, OFENet's update, the agent's update, priorities,
    metric sums) queues device work without reading anything back (issue: "nothing in the
    update step forces a host synchronisation except logging")."""
    cfg = resolve({**TINY, **SETUPS[setup], "device": device})
    trainer = Trainer(cfg, tmp_path)
    dev = torch.device(device)
    g = torch.Generator().manual_seed(0)
    n = 500
    obs, nxt = torch.randn(n, 3, generator=g), torch.randn(n, 3, generator=g)
    act = torch.rand(n, 1, generator=g) * 2 - 1
    rew, term = torch.randn(n, generator=g), torch.zeros(n)
    trainer.replay.add(*(t.to(dev) for t in (obs, act, rew, nxt, term)))
    trainer.learn_step()  # first step: optimizer state is created outside the guard
    with forbid_host_sync(device):
        for _ in range(3):
            trainer.learn_step()
    means = trainer.means.pop()  # the one read, when a row is logged
    assert means["critic_loss"] > 0
    if cfg.ofenet_units:
        assert means["aux_loss"] > 0


@pytest.mark.parametrize("then_on", DEVICES)
@pytest.mark.parametrize("trained_on", DEVICES)
def test_train_on_device_then_eval_load_resume_and_report_on_another(
    trained_on: str, then_on: str, tmp_path: Path
) -> None:
    """The device matrix with real devices (on a GPU machine all four pairs; here cpu, cpu):
    a run trained on `trained_on` evaluates, loads with load_policy, resumes (--device is a
    resume override) and reports on `then_on`."""
    from widerl.policy import load_policy

    out = tmp_path / "run"
    tiny = ["--units", "16", "--layers", "2", "--batch-size", "32", "--no-progress"]
    common = ["--env", "Pendulum-v1", "--eval-episodes", "1", "--checkpoint-replay", *tiny]
    args = ["train", "--out", str(out), "--steps", "40", "--warmup", "50", "--eval-every", "20"]
    assert main([*args, *common, "--device", trained_on]) == 0
    assert main(["eval", str(out), "--episodes", "1", "--device", then_on]) == 0
    assert load_policy(out, device=then_on).act(np.zeros(3)).shape == (1,)
    resume = ["train", "--resume", str(out), "--steps", "60", "--device", then_on]
    assert main([*resume, "--no-progress"]) == 0
    state = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert state["grad_step"] == 60
    assert main(["report", str(out), "--out", str(tmp_path / "report")]) == 0


@CUDA
@pytest.mark.parametrize("algo", ["sac", "td3"])
@pytest.mark.parametrize("arch", ["mlp", "densenet"])
def test_cuda_update_matches_cpu(algo: str, arch: str) -> None:
    """Same weights, same batch, no sampling noise: a few updates on CUDA land where the CPU's
    do (up to float rounding)."""
    # TD3 smooths its targets with noise drawn on the device: zero noise keeps it deterministic.
    kw = {"policy_noise": 0.0} if algo == "td3" else {}
    cfg = resolve({"algo": algo, "arch": arch, "units": 32, "layers": 2, **kw})
    torch.manual_seed(0)
    cpu = make_agent(cfg, 5, 2, torch.device("cpu"))
    gpu = make_agent(cfg, 5, 2, torch.device("cuda"))
    gpu.load_state_dict(cpu.state_dict())
    g = torch.Generator().manual_seed(1)
    batch = Batch(
        obs=torch.randn(64, 5, generator=g),
        act=torch.rand(64, 2, generator=g) * 2 - 1,
        rew=torch.randn(64, generator=g),
        next_obs=torch.randn(64, 5, generator=g),
        term=torch.zeros(64),
        weight=None,
        idx=torch.arange(64),
    )
    on_gpu = Batch(*(t.cuda() if t is not None else None for t in batch))
    for _ in range(3):
        if algo == "td3":
            cpu.update(batch)
            gpu.update(on_gpu)
        else:
            # SAC's update samples actions from device generators that differ between CPU and
            # CUDA; its critic step towards a fixed target is deterministic.
            target = batch.rew * 0.5
            for agent, b, t in ((cpu, batch, target), (gpu, on_gpu, target.cuda())):
                one = Batch(*(x.unsqueeze(0) for x in b[:5]), None, b.idx)  # K = 1 seed
                agent.critic_step(one, one.obs, t.unsqueeze(0))
    on_cpu = cpu.state_dict().items()
    for (name, p_cpu), p_gpu in zip(on_cpu, gpu.state_dict().values(), strict=True):
        torch.testing.assert_close(p_gpu.cpu(), p_cpu, rtol=1e-4, atol=1e-5, msg=name)


@CUDA
def test_reset_on_cuda_draws_what_the_cpu_draws() -> None:
    """Agent.reset_networks draws from the seeds' CPU generators whatever the device (a BRO
    reset of a CUDA agent), so its new weights are the CPU agent's."""
    cfg = resolve({"algo": "td3", "arch": "bronet", "units": 16, "layers": 1})
    cpu = make_agent(cfg, 5, 2, torch.device("cpu"))
    gpu = make_agent(cfg, 5, 2, torch.device("cuda"))
    cpu.reset_networks([torch.Generator().manual_seed(7)])
    gpu.reset_networks([torch.Generator().manual_seed(7)])
    on_cpu = cpu.state_dict().items()
    for (name, p_cpu), p_gpu in zip(on_cpu, gpu.state_dict().values(), strict=True):
        torch.testing.assert_close(p_gpu.cpu(), p_cpu, msg=name)


@CUDA
def test_bench_runs_on_cuda() -> None:
    from widerl.bench.update import run_bench

    res = run_bench(
        "sac",
        16,
        2,
        device="cuda",
        updates=5,
        rounds=1,
        warmup_updates=2,
        fill=500,
        peak_square=256,
    )
    assert res["ours_updates_per_s"] > 0 and res["peer_updates_per_s"] > 0
    assert res["peak_flops_fraction"] > 0


@pytest.mark.parametrize("device", DEVICES)
def test_a_replay_beyond_the_devices_memory_is_refused(device: str, tmp_path: Path, capsys):
    """The memory check compares what lives on the device with its free memory (the GPU's on
    CUDA), before anything is allocated or the run folder exists."""
    import widerl.run.memory as memory

    dev = torch.device(device, 0) if device == "cuda" else torch.device(device)
    free = memory.device_available(dev) if device == "cuda" else memory.host_available()
    assert free and free > 0
    capacity = 2 * free // 33  # Pendulum-v1: 33 bytes a transition in the replay
    out = tmp_path / "run"
    argv = ["train", "--env", "Pendulum-v1", "--device", device, "--out", str(out)]
    assert main([*argv, "--buffer-size", str(capacity)]) == 2
    err = capsys.readouterr().err
    where = "cuda:0 has" if device == "cuda" else "this machine has"
    assert f"--buffer-size {capacity} needs" in err and where in err, err
    assert not out.exists()


# --- crossing devices: trained on one, evaluated, loaded, resumed and reported on another ------
def _philox(seed: int) -> torch.Tensor:
    """A CUDA generator's state: 16 bytes, the Philox seed and offset."""
    return torch.tensor([seed, 0], dtype=torch.int64).view(torch.uint8)


def cuda_format(run: Path, bare: bool = False) -> None:
    """Rewrite a CPU run's checkpoint as a CUDA run writes it: every generator state in CUDA's
    format, saved from a CUDA device, and the global CUDA RNG state beside the CPU's. `bare`:
    the generator states as widerl wrote them before each carried its device (tensors alone)."""
    path = run / "checkpoint.pt"
    state = torch.load(path, weights_only=True)
    gens = state["agent"]["generators"]
    for name in ("update", "act"):
        states = [_philox(100 + i) for i in range(len(gens[name]))]
        gens[name] = states if bare else [{"device": "cuda", "state": s} for s in states]
    state["rng"]["cuda"] = _philox(7)
    for buffer in ("replay", "holdout"):
        if state.get(buffer) is not None:
            state[buffer]["rng_device"], state[buffer]["rng_state"] = "cuda", _philox(9)
    torch.save(state, path)


CROSS_TRAIN = ["--env", "Pendulum-v1", "--units", "16", "--layers", "2", "--batch-size", "32",
               "--warmup", "50", "--eval-every", "20", "--eval-episodes", "1", "--no-progress",
               "--checkpoint-replay", "--ofenet-units", "8", "--ofenet-layers", "2",
               "--ofenet-pretrain", "5"]  # fmt: skip


def trained_run(out: Path, trained_on: str) -> Path:
    """A 40-update run with OFENet and its replay in the checkpoint, as trained on `cpu`, or
    in CUDA's checkpoint format (`cuda-format`; `cuda-format-bare`: an older checkpoint's)."""
    assert main(["train", "--out", str(out), "--steps", "40", *CROSS_TRAIN]) == 0
    if trained_on != "cpu":
        cuda_format(out, bare=trained_on.endswith("bare"))
    return out


@pytest.mark.parametrize("trained_on", ["cpu", "cuda-format", "cuda-format-bare"])
def test_a_run_trained_on_either_device_evaluates_loads_resumes_and_reports_on_the_cpu(
    trained_on: str, tmp_path: Path
) -> None:
    """The CPU side of the device matrix (tests/run/test_fake_cuda.py has the cuda side). A CUDA
    run's generator states cannot be set on CPU generators: they seed them, the same way every
    time, so two resumes of one checkpoint write the same rows."""
    from widerl.policy import load_policy

    run = trained_run(tmp_path / "run", trained_on)
    assert main(["eval", str(run), "--episodes", "1", "--device", "cpu"]) == 0
    assert load_policy(run).act(np.zeros(3)).shape == (1,)
    twin = tmp_path / "twin"
    shutil.copytree(run, twin)
    for d in (run, twin):
        assert main(["train", "--resume", str(d), "--device", "cpu", "--steps", "60"]) == 0
        state = torch.load(d / "checkpoint.pt", weights_only=True)
        assert state["grad_step"] == 60
    kept = ("grad_step", "eval_return_mean", "critic_loss", "actor_loss")
    assert rows(run, kept) == rows(twin, kept)
    assert main(["report", str(run), "--out", str(tmp_path / "report")]) == 0
    assert (tmp_path / "report" / "report.md").is_file()


@pytest.mark.slow
def test_runs_trained_on_either_device_evaluate_load_and_resume_on_fake_cuda(
    tmp_path: Path,
) -> None:
    """The cuda side of the device matrix, on fake CUDA: a CPU run (whose generator states a
    CUDA generator refuses: "RNG state is wrong size") and a CUDA-format one."""
    import fake_cuda

    runs = [trained_run(tmp_path / t, t) for t in ("cpu", "cuda-format")]
    fake_cuda.check("test_fake_cuda:check_crossing", runs=[str(r) for r in runs])


def rows(run: Path, columns: tuple[str, ...]) -> list[tuple[str, ...]]:
    with (run / "metrics.csv").open() as f:
        return [tuple(r[c] for c in columns) for r in csv.DictReader(f)]
