"""One seed's share of a stacked agent's state, and K seeds' states stacked into one.

A run of K seeds keeps its networks stacked along the members dimension (seed k's block of
members at k, nets/ensemble.py); each seed's run folder holds a checkpoint exactly like a
single run's. Which tensors are per seed is read off a single-seed agent of the same
settings (the `template`, built on the meta device: shapes only): a tensor whose first
dimension is K times the template's holds K blocks, one per seed; a tensor of the
template's shape is shared by all seeds (e.g. Adam's step count, which every seed's update
advances alike); a list K times as long (the per-seed random generators) holds one entry
per seed.
"""

from __future__ import annotations

from typing import Any

import torch

from widerl.config import Config, ConfigError


class Layout:
    """Which parts of a K-seed agent's `checkpoint_state` are per seed: the states of a
    single-seed and of a K-seed agent of the same settings, built on the meta device."""

    def __init__(self, cfg: Config, obs_dim: int, act_dim: int, seeds: int) -> None:
        self.seeds = seeds
        self.single = _meta_state(cfg, obs_dim, act_dim, 1)
        self.stacked = _meta_state(cfg, obs_dim, act_dim, seeds)

    def take(self, full: dict[str, Any], k: int) -> dict[str, Any]:
        """Seed k's share of `full` (the stacked agent's `checkpoint_state`)."""
        return _take(full, self.single, k, self.seeds)

    def stack(self, states: list[dict[str, Any]], where: list[str]) -> dict[str, Any]:
        """The seeds' states (in order) as one stacked state; what they share must be equal
        in all of them (`where` names their checkpoints for the error when it is not)."""
        return _stack(states, self.single, self.stacked, where)


def _meta_state(cfg: Config, obs_dim: int, act_dim: int, seeds: int) -> dict[str, Any]:
    from widerl.agents import make_agent

    meta = torch.device("meta")
    with meta:
        agent = make_agent(cfg, obs_dim, act_dim, meta, seeds=list(range(seeds)))
    return agent.checkpoint_state()


def _take(full: Any, single: Any, k: int, seeds: int) -> Any:
    if isinstance(full, dict):
        return {key: _take(v, single[key], k, seeds) for key, v in full.items()}
    if isinstance(full, (list, tuple)):
        if len(full) == len(single):
            return [_take(v, t, k, seeds) for v, t in zip(full, single, strict=True)]
        per = len(single)
        if len(full) != seeds * per:
            raise ValueError(f"a list of {len(full)} does not hold {seeds} seeds of {per}")
        return list(full[k * per : (k + 1) * per])
    if isinstance(full, torch.Tensor):
        if full.shape == single.shape:
            return full.clone()
        per = single.shape[0]
        if full.shape[0] != seeds * per or full.shape[1:] != single.shape[1:]:
            raise ValueError(
                f"shape {tuple(full.shape)} is not {seeds} seeds of {tuple(single.shape)}"
            )
        return full[k * per : (k + 1) * per].clone()
    return full


def _stack(states: list[Any], single: Any, stacked: Any, where: list[str]) -> Any:
    first = states[0]
    if isinstance(first, dict):
        return {key: _stack([s[key] for s in states], single[key], stacked[key], where)
                for key in first}  # fmt: skip
    if isinstance(first, (list, tuple)):
        if len(stacked) != len(single):  # one entry per seed
            return [v for s in states for v in s]
        return [_stack([s[i] for s in states], single[i], stacked[i], where)
                for i in range(len(first))]  # fmt: skip
    if isinstance(first, torch.Tensor) and stacked.shape != single.shape:
        return torch.cat(states)
    _check_equal(states, where)
    return first


def _check_equal(values: list[Any], where: list[str]) -> None:
    for v, w in zip(values[1:], where[1:], strict=True):
        same = torch.equal(v, values[0]) if isinstance(v, torch.Tensor) else v == values[0]
        if not same:
            raise ConfigError(
                f"{w} and {where[0]} were trained apart (a value they share differs), so "
                "they cannot be continued as one run of several seeds: resume each alone"
            )
