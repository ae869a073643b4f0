"""`widerl bench --stacked-seeds K`: seed-updates/s of K seeds stacked in one process (`widerl train
--seeds`) against K single-seed runs, each side as `widerl experiment --jobs 2` runs its
processes: two processes of one thread each, side by side.

Four worker processes are built once (two with K stacked seeds, two with one seed each) on
random transitions (updates do not need an env); each round one pair times its learning
steps while the other pair waits idle, and the pairs alternate, reversing the order every
other round, so that load from elsewhere on the machine hits both alike. A side's rate is the
sum over its two processes of learning steps/s times the seeds per step; the ratio is the
median of the per-round ratios. The fraction of the matmul peak is per process: matmul FLOPs
of one step (FlopCounterMode) times steps/s, over the one-thread peak measured in the same run.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import statistics
import time
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

JOBS = 2  # processes per side, one thread each (widerl experiment --jobs 2)
FILL = 10_000  # random transitions per seed's replay


def _worker(conn: Any, cfg_json: str, seeds: int, obs_dim: int, act_dim: int,
            compiled: bool, warmup: int) -> None:  # fmt: skip
    """One process: a learning step of `seeds` stacked seeds; times `n` steps on request."""
    torch.set_num_threads(1)
    import json

    from widerl.agents import make_agent
    from widerl.bench.update import random_replay
    from widerl.config import from_dict
    from widerl.run.step import LearnStep

    cfg = from_dict(json.loads(cfg_json))
    dev = torch.device("cpu")
    agent = make_agent(cfg, obs_dim, act_dim, dev, seeds=list(range(seeds)))
    replays = [
        random_replay(obs_dim, act_dim, FILL, k, dev, prioritized=cfg.prioritized)
        for k in range(seeds)
    ]
    # Matmul FLOPs per step, over a full TD3 delay cycle (eager: the counter sees eager ops).
    cycle = cfg.policy_delay if cfg.algo == "td3" else 1
    eager = LearnStep(replays, agent.features, agent, cfg.batch_size)
    with FlopCounterMode(display=False) as counter:
        for i in range(cycle):
            eager(i, cycle)
    flops = counter.get_total_flops() / cycle
    step = LearnStep(replays, agent.features, agent, cfg.batch_size, compiled=compiled)
    for i in range(max(warmup, cycle)):  # allocators, BLAS paths; compilation
        step(i, warmup)
    conn.send(flops)
    while (n := conn.recv()) is not None:
        t0 = time.perf_counter()
        for i in range(n):
            step(i, n)
        conn.send(n / (time.perf_counter() - t0))


def run_seeds_bench(
    cfg: Any,
    seeds: int,
    obs_dim: int,
    act_dim: int,
    updates: int = 200,
    rounds: int = 5,
    compiled: bool = False,
    warmup: int = 20,
) -> dict[str, Any]:
    """Seed-updates/s of `seeds` stacked seeds against single-seed runs, both as two
    one-thread processes side by side (module docstring), and the fraction of the one-thread
    matmul peak each process reaches. `updates`: single-seed steps per process and round (the
    stacked processes run updates / seeds steps, about as long)."""
    from widerl.agents import make_agent
    from widerl.bench.update import _load_average, measure_matmul_peak, peak_shapes

    load_before = _load_average()
    ctx = mp.get_context("spawn")
    sides = {"stacked": seeds, "single": 1}
    steps = {"stacked": max(1, round(updates / seeds)), "single": updates}
    workers: dict[str, list[tuple[Any, Any]]] = {}
    for side, k in sides.items():
        workers[side] = []
        for _ in range(JOBS):
            here, there = ctx.Pipe()
            args = (there, cfg.to_json(), k, obs_dim, act_dim, compiled, warmup)
            proc = ctx.Process(target=_worker, args=args, daemon=True)
            proc.start()
            workers[side].append((proc, here))
    try:
        flops = {side: [conn.recv() for _, conn in ws][0] for side, ws in workers.items()}
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            agent = make_agent(cfg, obs_dim, act_dim, torch.device("cpu"))
            shapes = peak_shapes(agent, cfg.batch_size)
            peak = measure_matmul_peak(shapes)[0]
            per_round: dict[str, list[float]] = {s: [] for s in sides}
            per_process: dict[str, list[float]] = {s: [] for s in sides}
            for r in range(rounds):
                for side in list(sides) if r % 2 == 0 else list(sides)[::-1]:
                    for _, conn in workers[side]:
                        conn.send(steps[side])
                    rates = [conn.recv() for _, conn in workers[side]]
                    per_process[side] += rates
                    per_round[side].append(sum(rates) * sides[side])
            peak = max(peak, measure_matmul_peak(shapes)[0])
        finally:
            torch.set_num_threads(before)
    finally:
        for ws in workers.values():
            for proc, conn in ws:
                with contextlib.suppress(OSError):  # a worker that died
                    conn.send(None)
                proc.join(timeout=30)
                if proc.is_alive():
                    proc.kill()
    result: dict[str, Any] = {
        "algo": cfg.algo,
        "arch": cfg.arch,
        "units": cfg.units,
        "layers": cfg.layers,
        "ofenet_units": cfg.ofenet_units,
        "batch_size": cfg.batch_size,
        "obs_dim": obs_dim,
        "act_dim": act_dim,
        "compiled": compiled,
        "seeds": seeds,
        "processes_per_side": JOBS,
        "threads_per_process": 1,
        "rounds": rounds,
        "peak_flops_1_thread": peak,
    }
    for side in sides:
        rate = statistics.median(per_round[side])
        step_rate = statistics.median(per_process[side])
        result[f"{side}_seed_updates_per_s"] = rate
        result[f"{side}_per_round"] = per_round[side]
        result[f"{side}_flops_per_step"] = flops[side]
        result[f"{side}_peak_fraction"] = flops[side] * step_rate / peak
    result["ratio"] = statistics.median(
        a / b for a, b in zip(per_round["stacked"], per_round["single"], strict=True)
    )
    result["load_average"] = [load_before, _load_average()]
    return result


def format_seeds_bench(r: dict[str, Any]) -> str:
    w = 34
    ofenet = f" + OFENet {r['ofenet_units']}" if r.get("ofenet_units") else ""
    k = r["seeds"]
    lines = [
        f"{r['algo']} {r['arch']} {r['units']}x{r['layers']}{ofenet}  obs {r['obs_dim']} act "
        f"{r['act_dim']}  batch {r['batch_size']}  {'compiled' if r['compiled'] else 'eager'}  "
        f"{r['rounds']} rounds; each side {r['processes_per_side']} processes x 1 thread",
        f"  {f'{k} seeds stacked, seed-updates/s':<{w}}{r['stacked_seed_updates_per_s']:>10.1f}"
        f"   rounds: {', '.join(f'{x:.3g}' for x in r['stacked_per_round'])}",
        f"  {'single-seed runs, seed-updates/s':<{w}}{r['single_seed_updates_per_s']:>10.1f}"
        f"   rounds: {', '.join(f'{x:.3g}' for x in r['single_per_round'])}",
        f"  {'ratio stacked/single':<{w}}{r['ratio']:>10.2f}   (median of per-round ratios)",
        f"  {'fraction of 1-thread peak':<{w}}{r['stacked_peak_fraction']:>10.3f}   stacked; "
        f"{r['single_peak_fraction']:.3f} single (peak {r['peak_flops_1_thread'] / 1e9:.1f} "
        "GFLOP/s)",
    ]
    load = r.get("load_average")
    if load and None not in load:
        lines.append(f"  {'load average (1 min)':<{w}}{load[0]:>10.2f}   -> {load[1]:.2f} after")
    return "\n".join(lines)
