"""The registry of feature learners: Config -> the FeatureLearner that feeds the agent."""

from __future__ import annotations

from typing import Any

from widerl.nets.features import FeatureLearner, RawFeatures
from widerl.nets.ofenet import OFENet


def make_features(cfg: Any, obs_dim: int, act_dim: int, seeds: int = 1) -> FeatureLearner:
    """OFENet when `cfg.ofenet_units` > 0, the raw state and state-action pair otherwise."""
    if not cfg.ofenet_units:
        return RawFeatures(obs_dim, act_dim)
    return OFENet(
        obs_dim,
        act_dim,
        units=cfg.ofenet_units,
        layers=cfg.ofenet_layers,
        target_dim=cfg.ofenet_target_dim,
        pretrain_updates=cfg.ofenet_pretrain,
        seeds=seeds,
    )
