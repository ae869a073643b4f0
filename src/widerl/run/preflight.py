"""Checks of a resolved Config that need the env or this machine, run before a run folder is
created or changed (config.validate checks the settings on their own)."""

from __future__ import annotations

import os
from functools import cache

from widerl.config import Config, ConfigError


@cache
def _checked_dims(env_id: str) -> tuple[int, int]:
    from widerl.collect.envs import check_env_id, env_dims

    check_env_id(env_id)
    return env_dims(env_id)


def check_env_settings(cfg: Config, obs_dim: int, source: str | None = None) -> None:
    """Settings whose allowed range depends on the env's sizes (`source`: where obs_dim came
    from, default the env)."""
    if cfg.ofenet_units and cfg.ofenet_target_dim > obs_dim:
        raise ConfigError(
            f"--ofenet-target-dim {cfg.ofenet_target_dim} is larger than the observation of "
            f"{source or cfg.env} ({obs_dim} dims); use 1..{obs_dim}, or 0 for all of them"
        )


def check_threads(threads: int) -> None:
    cpus = os.cpu_count()
    if cpus is not None and threads > cpus:
        # Far beyond the cores, OpenMP fails to create its threads and the process segfaults.
        raise ConfigError(
            f"--threads {threads} is more than this machine's {cpus} CPUs; use 0..{cpus}"
        )


def preflight(cfg: Config, seeds: int = 1) -> tuple[int, int]:
    """Everything about `cfg` that can be checked here before training: the env id, settings
    bounded by the env's sizes, --threads, the device and the memory the run (of `seeds`
    seeds) allocates. Returns the env's (obs_dim, act_dim)."""
    from widerl.run.device import resolve_device
    from widerl.run.memory import check_memory

    obs_dim, act_dim = _checked_dims(cfg.env)
    if cfg.wandb:
        from widerl.record.tracking import check_installed

        check_installed()
    check_env_settings(cfg, obs_dim)
    check_threads(cfg.threads)
    device = resolve_device(cfg.device)
    if cfg.amp == "bf16" and device.type == "cuda":
        _check_bf16(device)
    check_memory(cfg, obs_dim, act_dim, device, seeds)
    return obs_dim, act_dim


def _check_bf16(device: object) -> None:
    import torch

    if not torch.cuda.is_bf16_supported():
        raise ConfigError(
            f"--amp bf16: this GPU ({torch.cuda.get_device_name(device)}) has no bfloat16 "
            "support (torch.cuda.is_bf16_supported() is False); use --amp off"
        )
