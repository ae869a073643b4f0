"""Config -> the FeatureLearner that feeds the agent: raw states or OFENet (registered as
`features` in config/registries.py), either behind --obs-norm's running statistics."""

from __future__ import annotations

from typing import Any

from widerl.config import registries
from widerl.nets.features import FeatureLearner
from widerl.nets.obs_norm import ObsNorm


def feature_learner_name(cfg: Any) -> str:
    """--features; with `auto`, OFENet when `cfg.ofenet_units` > 0, the raw state and
    state-action pair otherwise (validate.py refuses a --features that contradicts it)."""
    if cfg.features != "auto":
        return cfg.features
    return "ofenet" if cfg.ofenet_units else "raw"


def make_features(cfg: Any, obs_dim: int, act_dim: int, seeds: int = 1) -> FeatureLearner:
    """The feature learner of `cfg`, behind observation normalisation with `cfg.obs_norm`."""
    learner = registries.load("features", feature_learner_name(cfg))
    inner: FeatureLearner = learner.from_config(cfg, obs_dim, act_dim, seeds)
    if getattr(cfg, "obs_norm", False):
        return ObsNorm(inner, obs_dim, seeds)
    return inner
