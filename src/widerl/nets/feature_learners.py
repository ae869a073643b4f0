"""The registry of feature learners: Config -> the FeatureLearner that feeds the agent."""

from __future__ import annotations

from typing import Any

from widerl.nets.features import FeatureLearner, RawFeatures
from widerl.nets.obs_norm import ObsNorm
from widerl.nets.ofenet import OFENet


def make_features(cfg: Any, obs_dim: int, act_dim: int, seeds: int = 1) -> FeatureLearner:
    """OFENet when `cfg.ofenet_units` > 0, the raw state and state-action pair otherwise;
    either behind running-statistics observation normalisation with `cfg.obs_norm`."""
    inner: FeatureLearner
    if not cfg.ofenet_units:
        inner = RawFeatures(obs_dim, act_dim)
    else:
        inner = OFENet(
            obs_dim,
            act_dim,
            units=cfg.ofenet_units,
            layers=cfg.ofenet_layers,
            target_dim=cfg.ofenet_target_dim,
            pretrain_updates=cfg.ofenet_pretrain,
            seeds=seeds,
        )
    if getattr(cfg, "obs_norm", False):
        return ObsNorm(inner, obs_dim, seeds)
    return inner
