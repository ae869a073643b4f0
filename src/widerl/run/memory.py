"""The memory a run allocates when it starts, against what this machine (or GPU) has free.

The replay is preallocated in full (`torch.zeros` touches every page), so a capacity that
does not fit fails only after seconds of allocating, or gets the process killed. This module
adds up what the Trainer allocates, from the sizes alone and without allocating anything:
the replay as replay/buffer.py lays it out, OFENet's held-out buffer, the weight-version column,
the networks with their gradients and Adam moments and, with --checkpoint-replay, the host
copy of the replay a checkpoint write holds.
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from widerl.config import Config, ConfigError, sampler_of
from widerl.replay.buffer import compact_reserve, replay_nbytes

VERSION_BYTES = 4  # int32 weight version of each replay slot (Trainer.versions), on the host
_CG = Path("/sys/fs/cgroup")
_CGROUP_FILES = (  # (limit, usage) of cgroup v2, then v1
    (_CG / "memory.max", _CG / "memory.current"),
    (_CG / "memory" / "memory.limit_in_bytes", _CG / "memory" / "memory.usage_in_bytes"),
)


@dataclass
class Part:
    name: str
    nbytes: int
    on_device: bool  # on the training device (the host when that is the CPU)


def network_nbytes(cfg: Config, obs_dim: int, act_dim: int, seeds: int = 1) -> int:
    """Parameters and buffers of every network (targets included), plus one gradient and two
    Adam moments per trainable parameter, for `seeds` seeds stacked (`meta_agent`: nothing is
    allocated)."""
    from widerl.agents import meta_agent

    agent = meta_agent(cfg, obs_dim, act_dim, seeds)
    tensors = [*agent.parameters(), *agent.buffers()]
    stored = sum(t.numel() * t.element_size() for t in tensors)
    trainable = sum(p.numel() * p.element_size() for p in agent.trained_parameters())
    return stored + 3 * trainable


def run_parts(cfg: Config, obs_dim: int, act_dim: int, seeds: int = 1) -> list[Part]:
    """What a run of `seeds` seeds allocates: every seed has its own replay."""
    from widerl.collect.intake import HOLDOUT_EVERY, HOLDOUT_SIZE

    # As build.py sizes the pool: OFENet's held-out split takes rows of its own.
    pool = compact_reserve(cfg.buffer_size, HOLDOUT_EVERY if cfg.ofenet_units else None)
    replay = replay_nbytes(obs_dim, act_dim, cfg.buffer_size, sampler_of(cfg) != "uniform", pool)
    parts = [
        Part("replay", seeds * replay, True),
        Part("weight versions", seeds * VERSION_BYTES * cfg.buffer_size, False),
        Part("networks and Adam", network_nbytes(cfg, obs_dim, act_dim, seeds), True),
        Part("a learning step's batch", seeds * step_nbytes(cfg), True),
    ]
    if cfg.ofenet_units:
        holdout = seeds * replay_nbytes(obs_dim, act_dim, HOLDOUT_SIZE, False)
        parts.append(Part("OFENet held-out buffer", holdout, True))
    if cfg.checkpoint_replay:  # the seeds' checkpoints are written one after another
        parts.append(Part("checkpoint copy of the replay", replay, False))
    return parts


def step_nbytes(cfg: Config) -> int:
    """A rough bound on what one seed's learning step holds at once for its batch: each
    network's hidden activations and their gradients (a few float32 copies per unit; the
    critics see s and s', CrossQ both in one pass), a categorical head's outputs, and C51's
    projection, which is dense over atoms x atoms (critic_heads.py)."""
    b = cfg.batch_size * (2 if cfg.algo == "crossq" else 1)
    hidden = cfg.units * cfg.layers * (cfg.layers + 1) // 2 if cfg.arch == "densenet" else (
        cfg.units * cfg.layers)  # fmt: skip
    floats = 6 * b * hidden * (cfg.critics + 2)  # critics, their targets, the policy
    if cfg.critic_head != "scalar":
        floats += 4 * b * cfg.critics * cfg.atoms
    if cfg.critic_head == "c51":
        floats += 2 * b * cfg.atoms * cfg.atoms
    return 4 * floats


# The settings that size the networks, with the value that makes each smallest among the
# usual ones: the one whose change saves the most memory is the one a refusal names.
_NETWORK_KNOBS = (("units", 256), ("layers", 2), ("critics", 2), ("atoms", 101),
                  ("batch_size", 256), ("actor_units", 0), ("ofenet_units", 0))  # fmt: skip


def _culprit(cfg: Config, obs_dim: int, act_dim: int, seeds: int) -> tuple[str, str]:
    """What to name in a refusal for networks that do not fit: the flag whose usual value
    (or one seed instead of --seeds' many) would save the most memory, and the hint."""
    import dataclasses

    def sized(c: Config, k: int) -> int:
        return network_nbytes(c, obs_dim, act_dim, k) + k * step_nbytes(c)

    base = sized(cfg, seeds)
    options: list[tuple[int, str, str]] = []
    if seeds > 1:
        saved = base - sized(cfg, 1)
        options.append((saved, f"--seeds of {seeds} seeds", "; train fewer seeds per process"))
    for name, usual in _NETWORK_KNOBS:
        value = getattr(cfg, name)
        if name == "atoms" and cfg.critic_head == "scalar" or value <= usual:
            continue
        try:
            smaller = sized(dataclasses.replace(cfg, **{name: usual}), seeds)
        except ConfigError:
            continue
        flag = "--" + name.replace("_", "-")
        hint = f"; use a smaller {flag}" if name == "batch_size" else (
            f"; use smaller networks (a smaller {flag})")  # fmt: skip
        options.append((base - smaller, f"{flag} {value}", hint))
    if not options:
        return (f"--units {cfg.units} x --layers {cfg.layers}",
                "; use smaller networks (--units, --layers, --ofenet-units)")  # fmt: skip
    _, head, hint = max(options)
    if not head.startswith(("--units", "--layers")):
        head += f" (with --units {cfg.units} x --layers {cfg.layers})"
    return head, hint


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def host_available() -> int | None:
    """Bytes this process can still allocate: MemAvailable, lowered by a cgroup memory limit
    (containers); None where neither can be read."""
    avail = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                avail = int(line.split()[1]) * 1024
    except OSError:
        pass
    if avail is None and hasattr(os, "sysconf"):
        with contextlib.suppress(ValueError, OSError):
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    for limit_file, usage_file in _CGROUP_FILES:
        limit, usage = _read_int(limit_file), _read_int(usage_file)
        if limit is not None and usage is not None and limit < 2**60:
            left = max(limit - usage, 0)
            avail = left if avail is None else min(avail, left)
    return avail


def device_available(device: torch.device) -> int | None:
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    return None


def fmt_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def _round_down(n: float) -> int:
    """Two significant digits, rounded down: a capacity hint that still fits."""
    if n < 100:
        return max(int(n), 0)
    scale = 10 ** (int(math.log10(n)) - 1)
    return int(n // scale * scale)


def check_memory(
    cfg: Config, obs_dim: int, act_dim: int, device: torch.device, seeds: int = 1
) -> None:
    """Raise ConfigError naming the figure a run (of `seeds` seeds) would need when it does
    not fit."""
    if device.type == "cuda" and device.index is None:  # "cuda" means the current one
        device = torch.device("cuda", torch.cuda.current_device())
    parts = run_parts(cfg, obs_dim, act_dim, seeds)
    pools = [("host", False, host_available())]
    if device.type != "cpu":
        pools.insert(0, (str(device), True, device_available(device)))
    else:
        parts = [Part(p.name, p.nbytes, False) for p in parts]
    for where, on_device, avail in pools:
        mine = [p for p in parts if p.on_device == on_device]
        need = sum(p.nbytes for p in mine)
        if avail is None or need <= avail:
            continue
        listed = ", ".join(f"{p.name} {fmt_bytes(p.nbytes)}" for p in mine if p.nbytes)
        place = "this machine" if where == "host" else where
        scales = {"replay", "weight versions", "checkpoint copy of the replay"}
        per_slot = sum(p.nbytes for p in mine if p.name in scales) / cfg.buffer_size
        fixed = need - per_slot * cfg.buffer_size
        if per_slot and fixed < avail:
            hint = f"; use --buffer-size <= {_round_down((avail - fixed) / per_slot):,}"
            head = f"--buffer-size {cfg.buffer_size}"
        else:
            head, hint = _culprit(cfg, obs_dim, act_dim, seeds)
        raise ConfigError(
            f"{head} needs {fmt_bytes(need)} of memory ({listed}) but {place} has "
            f"{fmt_bytes(avail)} available{hint}"
        )
