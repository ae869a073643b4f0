"""What fake CUDA cannot check (tests/fake_cuda.py), on a real GPU: one preset's learning step
on the device against the same step on the CPU, and its speed and memory per compile mode.

    python benchmarks/cuda_step.py --preset paper-S --env Ant-v5 --out gpu-check-results

1. Numerics: the device's step and the CPU's, from the same weights, on the same replay, with
   the same sampler draws and noise (drawn on the CPU, then moved), for `--check-steps` steps
   at full float32 precision (TF32 off): every parameter must agree to rtol 1e-4 (atol 1e-5).
2. Speed and memory per mode, updates/s over `--updates` steps after a warm-up (compilation
   excluded, its seconds reported): eager; compiled with CUDA graphs (`reduce-overhead`, what
   `--compile on` runs on a GPU); compiled without them (`max-autotune-no-cudagraphs`, which
   some projects report faster since torch 2.8); each at float32 matmul precision "highest"
   and "high" (TF32). Peak memory is `torch.cuda.max_memory_allocated` over the timed steps.
   bf16 autocast is not measured: widerl has no `--amp` yet.

Each measurement is one JSON line on stdout and in `--out`/cuda-step-<preset>.jsonl. With
`--device cpu` the script runs its own checks on a CPU (to try it; the modes are eager and
inductor's default there).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from widerl.agents import make_agent
from widerl.bench.update import random_replay
from widerl.collect.envs import env_dims
from widerl.config import resolve
from widerl.run.step import LearnStep, _own_code

FILL = 10_000


def build(cfg: Any, dims: tuple[int, int], device: torch.device) -> LearnStep:
    """The preset's learning step on `device`, on the benchmarks' random replay (seed 0)."""
    torch.manual_seed(0)
    agent = make_agent(cfg, *dims, device)
    replay = random_replay(*dims, FILL, seed=0, device=device, prioritized=cfg.prioritized)
    return LearnStep(replay, agent.features, agent, cfg.batch_size)


def numerics(cfg: Any, dims: tuple[int, int], device: torch.device, steps: int) -> dict:
    """The largest difference of any parameter after `steps` identical steps, CPU vs device."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    cpu, dev = build(cfg, dims, torch.device("cpu")), build(cfg, dims, device)
    dev.agent.load_state_dict(cpu.agent.state_dict())
    for g in range(steps):
        u = [r.draw(cfg.batch_size) for r in cpu.replays]
        beta = cpu.beta.fill_(cpu.replay.beta(g / steps))
        noise = cpu.agent.draw_noise(cfg.batch_size)
        due = cpu.agent.actor_step_due()
        cpu._step(u, beta, noise, due)
        moved = {k: v.to(device) for k, v in noise.items()}
        dev._step([x.to(device) for x in u], beta.to(device), moved, due)
        for a in (cpu.agent, dev.agent):
            a.n_updates += 1
    worst: dict[str, float] = {"abs": 0.0, "rel": 0.0}
    failed = []
    mine = dict(dev.agent.state_dict())
    for name, want in cpu.agent.state_dict().items():
        got = mine[name].cpu()
        if not want.is_floating_point():
            continue
        diff = (got - want).abs()
        worst["abs"] = max(worst["abs"], float(diff.max()))
        worst["rel"] = max(worst["rel"], float((diff / want.abs().clamp_min(1e-6)).max()))
        if not torch.allclose(got, want, rtol=1e-4, atol=1e-5):
            failed.append(name)
    return {"check": "numerics", "steps": steps, "max_abs": worst["abs"],
            "max_rel": worst["rel"], "ok": not failed, "failed": failed[:5]}  # fmt: skip


def speed(cfg: Any, dims: tuple[int, int], device: torch.device, mode: str | None,
          precision: str, updates: int) -> dict:  # fmt: skip
    """updates/s of one compile mode (None: eager) at one matmul precision."""
    torch.set_float32_matmul_precision(precision)
    step = build(cfg, dims, device)
    t0 = time.perf_counter()
    if mode is not None:
        kw = {} if mode == "default" else {"mode": mode}
        step._fn = torch.compile(_own_code(step._step), fullgraph=True, dynamic=False, **kw)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for g in range(5):  # compilation (and CUDA-graph capture), caches, allocator
        step(g, updates)
    sync()
    compile_s = time.perf_counter() - t0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    for g in range(updates):
        step(g, updates)
    sync()
    rate = updates / (time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    return {"check": "speed", "mode": mode or "eager", "precision": precision,
            "updates_per_s": rate, "warmup_s": compile_s, "peak_bytes": peak}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="paper-S")
    p.add_argument("--env", default="Hopper-v5")
    p.add_argument("--algo", default="sac")
    p.add_argument("--device", default="cuda")
    p.add_argument("--updates", type=int, default=300)
    p.add_argument("--check-steps", type=int, default=3)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    device = torch.device(args.device)
    cfg = resolve({"env": args.env, "algo": args.algo, "device": args.device}, args.preset)
    dims = env_dims(args.env)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    head = {"preset": args.preset, "env": args.env, "algo": args.algo, "device": str(device),
            "torch": torch.__version__, "cuda": torch.version.cuda, "gpu": gpu}  # fmt: skip
    lines = [numerics(cfg, dims, device, args.check_steps)]
    cuda = device.type == "cuda"
    modes = [None, "reduce-overhead", "max-autotune-no-cudagraphs"] if cuda else [None, "default"]
    for precision in ("highest", "high") if cuda else ("highest",):
        for mode in modes:
            lines.append(speed(cfg, dims, device, mode, precision, args.updates))
    out = None
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        out = (args.out / f"cuda-step-{args.algo}-{args.preset}.jsonl").open("w")
    for line in lines:
        text = json.dumps({**head, **line})
        print(text, flush=True)
        if out is not None:
            out.write(text + "\n")


if __name__ == "__main__":
    main()
