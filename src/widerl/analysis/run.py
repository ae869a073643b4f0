"""A finished run folder as the analysis tools need it: the trained agent and a fixed batch
of the transitions it was trained on."""

from __future__ import annotations

from pathlib import Path

import torch

from widerl.agents.base import Agent
from widerl.config import Config, ConfigError
from widerl.replay.buffer import TRANSITION_FIELDS as _FIELDS
from widerl.replay.buffer import Batch, replay_rows

# Transitions drawn from a stored replay buffer when the checkpoint has no probe batch.
REPLAY_SAMPLES = 4096


def load_run(
    run_dir: Path, device: torch.device, arg: str = "RUN_DIR"
) -> tuple[Config, Agent, dict]:
    """Config, trained agent and the raw checkpoint of `run_dir` (`widerl eval` and
    `widerl landscape`); `arg` names the folder in messages as the user typed it."""
    from widerl.agents import make_agent
    from widerl.collect.envs import check_stored_env, env_dims
    from widerl.record.checkpoint import load_checkpoint
    from widerl.record.folder import load_config
    from widerl.record.names import CHECKPOINT

    run_dir = Path(run_dir)
    cfg = load_config(run_dir, arg)
    state = load_checkpoint(run_dir, map_location=device)
    check_stored_env(cfg.env, run_dir, arg)
    obs_dim, act_dim = env_dims(cfg.env)
    agent = make_agent(cfg, obs_dim, act_dim, device)
    agent.load_checkpoint_state(state["agent"], where=f"{CHECKPOINT} in {str(run_dir)!r}")
    return cfg, agent, state


def stored_transitions(state: dict, run_dir: Path, seed: int, device: torch.device) -> Batch:
    """Transitions the run trained on (A.3): the checkpoint's `sample` (spread evenly over the
    whole replay when the checkpoint was written); failing that, REPLAY_SAMPLES transitions
    drawn without replacement from a stored replay buffer (seeded); failing that, the probe
    batch drawn after warm-up; failing that, a ConfigError."""
    rows = state.get("sample")
    if rows is None and state.get("replay") is not None:
        replay = state["replay"]
        size = int(replay["size"])
        if size > 0:
            g = torch.Generator(device="cpu").manual_seed(seed)
            idx = torch.randperm(size, generator=g)[: min(size, REPLAY_SAMPLES)]
            stored = replay_rows(replay)
            rows = {k: stored[k].cpu()[idx] for k in _FIELDS}
    if rows is None:
        rows = state.get("probe")
    if rows is None:
        raise ConfigError(
            f"run {str(run_dir)!r} has no stored transitions (its checkpoint holds neither a "
            "probe batch nor a replay buffer)"
        )
    missing = [k for k in _FIELDS if k not in rows]
    if missing:
        raise ConfigError(f"the probe batch of {str(run_dir)!r} lacks {', '.join(missing)}")
    t = {k: rows[k].to(device=device, dtype=torch.float32) for k in _FIELDS}
    n = t["obs"].shape[0]
    return Batch(
        t["obs"], t["act"], t["rew"], t["next_obs"], t["term"], None, torch.arange(n, device=device)
    )
