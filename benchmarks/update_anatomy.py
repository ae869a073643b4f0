"""Where one gradient update's time goes, ours and Stable-Baselines3's, in one process.

    python benchmarks/update_anatomy.py --algo td3 --units 256 --layers 2 --threads 1

For each side: updates/s timed plainly (as `widerl bench` does: ours `agent.update(sample)`,
SB3 `model.train(gradient_steps=N)`), then the same number of updates again with every ATen op
timed (a `TorchDispatchMode` that reads the clock around each kernel). It splits an update into
matmul-family kernels (mm, addmm, linear, ...), the other kernels, and what is left (Python,
dispatch, autograd engine), and counts the ops.

The figure that matters is **ceiling**: SB3's time per update divided by ours spent in matmuls.
It is the speed-up over SB3 that ours would reach if everything but its matmuls cost nothing,
with the matmuls the algorithm needs running at the speed they run now (their operands mostly
come from L3 here, not L2: a 256 x 256 product costs about 10-15 % more than in a tight loop).
Kernel times measured under the mode are somewhat inflated by it (its Python runs between
kernels and evicts some cache), so "outside kernels" (plain total minus kernel times) is a
lower bound and the ceiling a conservative one.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from widerl.agents import make_agent
from widerl.bench.peers import make_sb3_model
from widerl.bench.update import _random_transitions, _torch_threads
from widerl.config import resolve
from widerl.replay.buffer import ReplayBuffer

_aten = torch.ops.aten
MATMUL_OPS = {
    _aten.mm.default,
    _aten.addmm.default,
    _aten.linear.default,
    _aten.bmm.default,
    _aten.baddbmm.default,
    _aten.matmul.default,
    _aten.mv.default,
    _aten.addmv.default,
    # widerl's products through oneDNN (nets/onednn.py), one call per member
    torch.ops.mkldnn._linear_pointwise.default,
}


class OpTimer(TorchDispatchMode):
    """Wall time and count of every ATen op run while active, matmuls apart from the rest."""

    def __init__(self) -> None:
        super().__init__()
        self.matmul_s = 0.0
        self.other_s = 0.0
        self.n_matmul = 0
        self.n_other = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        t0 = time.perf_counter()
        out = func(*args, **(kwargs or {}))
        dt = time.perf_counter() - t0
        if func in MATMUL_OPS:
            self.matmul_s += dt
            self.n_matmul += 1
        else:
            self.other_s += dt
            self.n_other += 1
        return out


def _split(run: Callable[[int], None], n: int) -> dict[str, float]:
    """ms per update in total (plain run), in matmul kernels and in other kernels (timed run),
    the rest of the plain time (Python, dispatch, autograd's engine), and ops per update. The
    timed run's own total is not used: the mode's Python per op would count as "rest"."""
    t0 = time.perf_counter()
    run(n)
    total = (time.perf_counter() - t0) / n
    timer = OpTimer()
    with timer:
        run(n)
    matmul, other = timer.matmul_s / n, timer.other_s / n
    return {
        "ms_per_update": 1e3 * total,
        "matmul_ms": 1e3 * matmul,
        "other_kernels_ms": 1e3 * other,
        "outside_kernels_ms": 1e3 * max(total - matmul - other, 0.0),
        "matmul_ops": timer.n_matmul / n,
        "other_ops": timer.n_other / n,
    }


def anatomy(
    algo: str,
    units: int,
    layers: int,
    obs_dim: int = 11,
    act_dim: int = 3,
    batch_size: int = 256,
    updates: int = 100,
    rounds: int = 3,
    threads: int | None = 1,
    seed: int = 0,
) -> dict[str, Any]:
    """Per-side medians over ``rounds`` alternating rounds of ``updates`` updates, on CPU."""
    with _torch_threads(threads):
        torch.manual_seed(seed)
        cfg = resolve({"algo": algo, "units": units, "layers": layers, "batch_size": batch_size})
        dev = torch.device("cpu")
        data = _random_transitions(10_000, obs_dim, act_dim, seed)
        agent = make_agent(cfg, obs_dim, act_dim, dev)
        replay = ReplayBuffer(obs_dim, act_dim, 10_000, dev, seed=seed)
        replay.add(data["obs"], data["act"], data["rew"], data["next_obs"], data["term"])
        peer = make_sb3_model(algo, units, layers, obs_dim, act_dim, batch_size, dev, data, seed)

        def ours(n: int) -> None:
            for _ in range(n):
                agent.update(replay.sample(batch_size))

        def sb3(n: int) -> None:
            peer.train(gradient_steps=n, batch_size=batch_size)

        sides = {"ours": ours, "sb3": sb3}
        for run in sides.values():
            run(max(updates // 5, 2))  # warm-up: first-step state, allocator, caches
        per_round: dict[str, list[dict[str, float]]] = {k: [] for k in sides}
        for r in range(rounds):
            order = list(sides) if r % 2 == 0 else list(reversed(sides))
            for name in order:
                per_round[name].append(_split(sides[name], updates))
    result: dict[str, Any] = {
        "algo": algo,
        "units": units,
        "layers": layers,
        "threads": threads,
        "updates": updates,
        "rounds": rounds,
    }
    for name, rows in per_round.items():
        result[name] = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    result["ratio"] = result["sb3"]["ms_per_update"] / result["ours"]["ms_per_update"]
    result["ceiling"] = result["sb3"]["ms_per_update"] / result["ours"]["matmul_ms"]
    return result


def format_anatomy(res: dict[str, Any]) -> str:
    keys = [
        "ms_per_update",
        "matmul_ms",
        "other_kernels_ms",
        "outside_kernels_ms",
        "matmul_ops",
        "other_ops",
    ]
    lines = [
        f"{res['algo']} {res['units']}x{res['layers']}, {res['threads']} thread(s), "
        f"median of {res['rounds']} rounds x {res['updates']} updates",
        f"{'':22s}{'ours':>10s}{'sb3':>10s}",
    ]
    lines += [f"{k:22s}{res['ours'][k]:10.2f}{res['sb3'][k]:10.2f}" for k in keys]
    lines.append(f"ratio (sb3 ms / ours ms)          {res['ratio']:.2f}")
    lines.append(f"ceiling (sb3 ms / ours matmul ms) {res['ceiling']:.2f}")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--algo", choices=["sac", "td3"], default="td3")
    p.add_argument("--units", type=int, default=256)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--obs-dim", type=int, default=11)
    p.add_argument("--act-dim", type=int, default=3)
    p.add_argument("--updates", type=int, default=200)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    a = p.parse_args()
    res = anatomy(
        a.algo,
        a.units,
        a.layers,
        a.obs_dim,
        a.act_dim,
        updates=a.updates,
        rounds=a.rounds,
        threads=a.threads,
    )
    print(json.dumps(res) if a.json else format_anatomy(res))


if __name__ == "__main__":
    main()
