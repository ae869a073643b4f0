"""Gradient-update throughput of widerl next to Stable-Baselines3, in one process.

``run_bench`` answers two questions about one network size:

1. How many gradient updates per second does ``agent.update(replay.sample(B))`` run, and how does
   that compare with SB3's SAC/TD3 at the same width, depth, batch size and device? Both run in
   the same process on the same random transitions, interleaved round by round, so that load
   changes on a shared machine hit both sides; the ratio reported is the median of the per-round
   ratios, which cancels slow drifts better than a ratio of two medians.
2. What fraction of the device's matmul peak does our update reach? FLOPs of one update come from
   ``torch.utils.flop_counter.FlopCounterMode`` (matmul-family ops only, forward and backward,
   exactly the matmuls the update runs, by autograd or by the hand-written path of plain MLPs),
   and the peak is measured in the same run with the same
   thread count, on matmul shapes of the network's widest layers and a large square one.

The environment never steps: replay buffers are filled with random transitions, which is all an
update-throughput measurement needs.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from widerl.agents import make_agent
from widerl.agents.base import Agent
from widerl.config import resolve
from widerl.learner import LearnStep
from widerl.nets.ensemble import EnsembleLinear
from widerl.replay import ReplayBuffer

__all__ = ["format_bench", "measure_matmul_peak", "run_bench", "update_flops"]

# Transitions in both replay buffers: enough that a batch of 256 rarely repeats rows, small
# enough that filling costs nothing and both buffers stay cache-comparable.
DEFAULT_FILL = 10_000
# Side of the square matmul added to the peak shapes: large enough for BLAS to reach its best
# rate on a few CPU cores, small enough (17 GFLOP) to take ~0.1 s there.
PEAK_SQUARE = 2048


def _resolve_device(device: str | torch.device) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _synchronizer(device: torch.device) -> Callable[[], None]:
    """A function that waits for queued device work: CUDA kernels are asynchronous, so the clock
    may only be read after the stream has drained."""
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def _load_average() -> float | None:
    """1-minute load average, recorded with the result: other processes on the machine change
    the figures (a lot with 2+ OpenMP threads on a few cores), and this shows whether they ran."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):  # not on every platform
        return None


def _random_transitions(n: int, obs_dim: int, act_dim: int, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "obs": torch.randn(n, obs_dim, generator=g),
        "act": torch.rand(n, act_dim, generator=g) * 2.0 - 1.0,
        "rew": torch.randn(n, generator=g),
        "next_obs": torch.randn(n, obs_dim, generator=g),
        # A few terminations so the (1 - term) mask is not constant.
        "term": (torch.rand(n, generator=g) < 0.01).to(torch.float32),
    }


# --- ours ---------------------------------------------------------------------------------
def _time_ours(step: LearnStep, n: int, sync: Callable[[], None]) -> float:
    """Learning steps per second over ``n`` steps: what `widerl train` runs per update
    (sampling, the feature learner's update, the agent's update, priorities)."""
    sync()
    t0 = time.perf_counter()
    for i in range(n):
        step(i, n)
    sync()
    return n / (time.perf_counter() - t0)


def update_flops(agent: Agent, replay: ReplayBuffer, batch_size: int, n_updates: int = 1) -> float:
    """Matmul FLOPs of one learning step, averaged over ``n_updates`` consecutive steps (run
    eagerly: the counter sees eager ops; a compiled step runs the same products or fewer).

    TD3 runs its actor step only every ``policy_delay`` updates, so one update alone would count
    either with or without it; averaging over a full delay cycle gives the per-update mean.
    """
    step = LearnStep(replay, agent.features, agent, batch_size)
    with FlopCounterMode(display=False) as counter:
        for i in range(n_updates):
            step(i, n_updates)
    return counter.get_total_flops() / n_updates


# --- peak ---------------------------------------------------------------------------------
def _linear_shapes(module: nn.Module) -> list[tuple[int, int]]:
    """(in, out) of every Linear layer, widest (most weights) first, deduplicated."""
    shapes = {(m.in_dim, m.out_dim) for m in module.modules() if isinstance(m, EnsembleLinear)}
    return sorted(shapes, key=lambda s: s[0] * s[1], reverse=True)


def peak_shapes(
    agent: Agent, batch_size: int, n_layers: int = 2, square: int = PEAK_SQUARE
) -> list[tuple[int, int, int]]:
    """(m, k, n) matmul shapes whose best rate stands for the device's peak.

    For each of the ``n_layers`` widest Linear layers, the three products an update runs on it:
    forward ``(B x in) @ (in x out)``, input gradient ``(B x out) @ (out x in)`` and weight
    gradient ``(out x B) @ (B x in)``; plus a large square product. Taking the best over several
    shapes makes the peak an upper bound the network could plausibly reach, not a lucky one.
    """
    shapes: list[tuple[int, int, int]] = []
    for k, n in _linear_shapes(agent)[:n_layers]:
        shapes += [(batch_size, k, n), (batch_size, n, k), (n, batch_size, k)]
    shapes.append((square, square, square))
    return list(dict.fromkeys(shapes))


def measure_matmul_peak(
    shapes: list[tuple[int, int, int]],
    device: str | torch.device = "cpu",
    repeats: int = 3,
    min_seconds: float = 0.05,
) -> tuple[float, list[dict[str, Any]]]:
    """Best fp32 matmul rate (FLOP/s) over ``shapes`` and ``repeats``, with per-shape results.

    Each repeat runs enough products to last ``min_seconds``, so that clock resolution and the
    per-call overhead of small shapes do not decide the figure. Runs with the thread count torch
    uses at the time of the call, i.e. the one the updates use.
    """
    device = _resolve_device(device)
    sync = _synchronizer(device)
    per_shape: list[dict[str, Any]] = []
    for m, k, n in shapes:
        a = torch.randn(m, k, device=device)
        b = torch.randn(k, n, device=device)
        out = torch.empty(m, n, device=device)
        flop = 2.0 * m * k * n
        # Warm-up, then calibrate the count from one timed product.
        torch.mm(a, b, out=out)
        sync()
        t0 = time.perf_counter()
        torch.mm(a, b, out=out)
        sync()
        once = max(time.perf_counter() - t0, 1e-7)
        iters = max(1, int(min_seconds / once))
        best = 0.0
        for _ in range(repeats):
            sync()
            t0 = time.perf_counter()
            for _ in range(iters):
                torch.mm(a, b, out=out)
            sync()
            best = max(best, flop * iters / (time.perf_counter() - t0))
        per_shape.append({"m": m, "k": k, "n": n, "flops": best})
    peak = max(s["flops"] for s in per_shape)
    return peak, per_shape


# --- peer: Stable-Baselines3 --------------------------------------------------------------
def _import_sb3() -> Any:
    try:
        import stable_baselines3
    except ImportError as e:  # the peer is an optional extra, not a dependency
        raise ImportError(
            "the SB3 comparison needs stable-baselines3: pip install widerl[bench] "
            "(or pass peer=False / --no-peer)"
        ) from e
    return stable_baselines3


def _box_env(obs_dim: int, act_dim: int) -> Any:
    """A gymnasium env that only declares Box spaces of the requested sizes: SB3 needs an env to
    build its policy and buffer, and the benchmark never steps it."""
    import gymnasium as gym

    class BoxEnv(gym.Env):
        def __init__(self) -> None:
            self.observation_space = gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32)
            self.action_space = gym.spaces.Box(-1.0, 1.0, (act_dim,), np.float32)

        def reset(
            self, *, seed: int | None = None, options: dict | None = None
        ) -> tuple[np.ndarray, dict]:
            super().reset(seed=seed)
            return self.observation_space.sample(), {}

        def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
            return self.observation_space.sample(), 0.0, False, False, {}

    return BoxEnv()


def _make_peer(
    algo: str,
    units: int,
    layers: int,
    obs_dim: int,
    act_dim: int,
    batch_size: int,
    device: torch.device,
    data: dict[str, torch.Tensor],
    seed: int,
) -> Any:
    """SB3 SAC/TD3 with our width and depth, SB3's default hyperparameters otherwise, and its
    replay buffer filled with ``data`` directly (the same transitions our buffer holds)."""
    sb3 = _import_sb3()
    from stable_baselines3.common.logger import Logger

    cls = {"sac": sb3.SAC, "td3": sb3.TD3}[algo]
    n = data["obs"].shape[0]
    model = cls(
        "MlpPolicy",
        _box_env(obs_dim, act_dim),
        learning_starts=0,
        batch_size=batch_size,
        # Only as large as the data: SB3's default 1e6 would allocate obs and next_obs for a
        # million rows (0.8 GB at Ant's 105 dims) and change nothing about an update.
        buffer_size=n,
        policy_kwargs={"net_arch": [units] * layers},
        device=str(device),
        seed=seed,
        verbose=0,
    )
    # train() records to the logger; a Logger without output formats discards the records and,
    # unlike logger.configure(), does not create a folder under /tmp.
    model.set_logger(Logger(folder=None, output_formats=[]))
    rb = model.replay_buffer
    # SB3 stores (buffer_size, n_envs, ...) numpy arrays; one env here.
    rb.observations[:] = data["obs"].numpy()[:, None, :]
    rb.next_observations[:] = data["next_obs"].numpy()[:, None, :]
    rb.actions[:] = data["act"].numpy()[:, None, :]
    rb.rewards[:] = data["rew"].numpy()[:, None]
    rb.dones[:] = data["term"].numpy()[:, None]
    rb.timeouts[:] = 0.0
    rb.pos, rb.full = 0, True
    return model


def _time_peer(model: Any, batch_size: int, n: int, sync: Callable[[], None]) -> float:
    sync()
    t0 = time.perf_counter()
    model.train(gradient_steps=n, batch_size=batch_size)
    sync()
    return n / (time.perf_counter() - t0)


# --- the benchmark ------------------------------------------------------------------------
@contextlib.contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    """Run the block with ``threads`` intra-op threads (None: unchanged), then restore."""
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_bench(
    algo: str,
    units: int,
    layers: int,
    arch: str = "mlp",
    obs_dim: int = 11,
    act_dim: int = 3,
    batch_size: int = 256,
    device: str = "cpu",
    updates: int = 200,
    rounds: int = 5,
    peer: bool = True,
    warmup_updates: int = 20,
    fill: int = DEFAULT_FILL,
    seed: int = 0,
    threads: int | None = None,
    peak_square: int = PEAK_SQUARE,
    compiled: bool = False,
    preset: str | None = None,
    settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Measure update throughput (ours and SB3's), FLOPs per update and the matmul peak.

    Each of ``rounds`` rounds times ``updates`` updates of ours and of SB3, alternating which goes
    first. ``ratio`` is the median over rounds of ours/SB3 per round. The peer is always an SB3
    MLP of the same width and depth, whatever ``arch`` is.

    ``threads`` sets torch's intra-op thread count for the whole run (both sides and the peak
    share one process, so they share it) and restores it afterwards; None keeps torch's setting.
    ``peak_square`` is the side of the square matmul among the peak shapes (tests shrink it).
    ``preset`` and ``settings`` (Config fields, e.g. OFENet's) shape our side beyond the
    network size; ``compiled`` times the torch.compile'd learning step (after its compilation).
    """
    if updates < 1 or rounds < 1 or warmup_updates < 0 or fill < 1:
        raise ValueError(
            f"need updates >= 1, rounds >= 1, warmup_updates >= 0, fill >= 1; got {updates}, "
            f"{rounds}, {warmup_updates}, {fill}"
        )
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    load_before = _load_average()
    with _torch_threads(threads):
        dev = _resolve_device(device)
        sync = _synchronizer(dev)
        torch.manual_seed(seed)
        cfg = resolve(
            {
                "algo": algo,
                "units": units,
                "layers": layers,
                "arch": arch,
                "batch_size": batch_size,
                "buffer_size": max(batch_size, fill),  # unused here: the bench has its own
                "seed": seed,
                **(settings or {}),
            },
            preset,
        )
        units, layers = cfg.units, cfg.layers  # a preset may set them; the peer follows
        data = _random_transitions(fill, obs_dim, act_dim, seed)

        agent = make_agent(cfg, obs_dim, act_dim, dev)
        replay = ReplayBuffer(obs_dim, act_dim, fill, dev, seed=seed)
        replay.add(data["obs"], data["act"], data["rew"], data["next_obs"], data["term"])
        step = LearnStep(replay, agent.features, agent, batch_size, compiled=compiled)
        model = (
            _make_peer(algo, units, layers, obs_dim, act_dim, batch_size, dev, data, seed)
            if peer
            else None
        )

        shapes = peak_shapes(agent, batch_size, square=peak_square)
        peak_before = measure_matmul_peak(shapes, dev)

        # Burn-in: first calls allocate optimizer state and warm allocators and BLAS code paths.
        if warmup_updates:
            _time_ours(step, warmup_updates, sync)
            if model is not None:
                _time_peer(model, batch_size, warmup_updates, sync)

        ours_rounds: list[float] = []
        peer_rounds: list[float] = []
        for r in range(rounds):
            # Alternate the order so that neither side always runs right after the other's
            # (possibly cache- or frequency-affecting) burst.
            if model is not None and r % 2 == 1:
                peer_rounds.append(_time_peer(model, batch_size, updates, sync))
                ours_rounds.append(_time_ours(step, updates, sync))
            else:
                ours_rounds.append(_time_ours(step, updates, sync))
                if model is not None:
                    peer_rounds.append(_time_peer(model, batch_size, updates, sync))

        # The peak is measured before and after the rounds and the better one kept: load from
        # other processes varies over a run, and the fraction must not be flattered by a peak
        # that happened to be measured in a slow moment.
        peak, per_shape = max(peak_before, measure_matmul_peak(shapes, dev), key=lambda x: x[0])
        n_count = cfg.policy_delay if algo == "td3" else 1
        flops = update_flops(agent, replay, batch_size, n_count)
        ours = statistics.median(ours_rounds)
        achieved = flops * ours

        result: dict[str, Any] = {
            "algo": cfg.algo,
            "arch": cfg.arch,
            "units": units,
            "layers": layers,
            "preset": preset,
            "ofenet_units": cfg.ofenet_units,
            "compiled": compiled,
            "obs_dim": obs_dim,
            "act_dim": act_dim,
            "batch_size": batch_size,
            "device": str(dev),
            "updates": updates,
            "rounds": rounds,
            "warmup_updates": warmup_updates,
            "fill": fill,
            "torch_threads": torch.get_num_threads(),
            "torch_version": torch.__version__,
            "ours_updates_per_s": ours,
            "ours_per_round": ours_rounds,
            "peer": "stable-baselines3" if model is not None else None,
            "peer_version": _import_sb3().__version__ if model is not None else None,
            "peer_updates_per_s": statistics.median(peer_rounds) if model is not None else None,
            "peer_per_round": peer_rounds if model is not None else None,
            "ratio": (
                statistics.median(o / p for o, p in zip(ours_rounds, peer_rounds, strict=True))
                if model is not None
                else None
            ),
            "flops_per_update": flops,
            "achieved_flops": achieved,
            "peak_flops": peak,
            "peak_shapes": per_shape,
            "peak_flops_fraction": achieved / peak,
            "load_average": [load_before, _load_average()],
        }
        return result


def format_bench(result: dict[str, Any]) -> str:
    """A short plain-text table of a ``run_bench`` result."""
    r = result
    g = 1e9

    def rounds(xs: list[float] | None) -> str:
        # Three significant digits read well from 2 updates/s (2048 units) to 2000 (tiny nets).
        return ", ".join(f"{x:.3g}" for x in xs) if xs else ""

    ofenet = f" + OFENet {r['ofenet_units']}" if r.get("ofenet_units") else ""
    lines = [
        f"{r['algo']} {r['arch']} {r['units']}x{r['layers']}{ofenet}  obs {r['obs_dim']} act "
        f"{r['act_dim']}  batch {r['batch_size']}  {r['device']} ({r['torch_threads']} threads)  "
        f"{'compiled' if r.get('compiled') else 'eager'}  "
        f"{r['rounds']} rounds x {r['updates']} updates",
        f"  {'widerl updates/s':<22}{r['ours_updates_per_s']:>12.1f}   "
        f"rounds: {rounds(r['ours_per_round'])}",
    ]
    if r.get("peer_updates_per_s") is not None:
        lines += [
            f"  {'SB3 updates/s':<22}{r['peer_updates_per_s']:>12.1f}   "
            f"rounds: {rounds(r['peer_per_round'])}",
            f"  {'ratio widerl/SB3':<22}{r['ratio']:>12.2f}   (median of per-round ratios)",
        ]
    lines += [
        f"  {'GFLOP per update':<22}{r['flops_per_update'] / g:>12.4f}   (matmuls, fwd + bwd)",
        f"  {'achieved GFLOP/s':<22}{r['achieved_flops'] / g:>12.2f}",
        f"  {'peak GFLOP/s':<22}{r['peak_flops'] / g:>12.2f}   "
        f"(best fp32 matmul of {len(r['peak_shapes'])} shapes, same run)",
        f"  {'fraction of peak':<22}{r['peak_flops_fraction']:>12.3f}",
    ]
    load = r.get("load_average")
    if load and None not in load:
        lines.append(f"  {'load average (1 min)':<22}{load[0]:>12.2f}   -> {load[1]:.2f} after")
    return "\n".join(lines)
