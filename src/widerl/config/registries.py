"""Every pluggable family, in one shape: a name -> "module:attribute" table per family, the one
list of names there is (the settings' choices are read from it, torch-free), and `load`, which
imports the implementation only when a run needs it.

Adding a body, an algorithm, a critic head, a feature learner, a sampler or a collection
source is one file (or class) plus one line here. Each family's factory lives beside its
implementations: `agents.make_agent`, `nets.bodies.make_body`, `nets.critic_heads.make_head`,
`nets.feature_learners.make_features`, `replay.buffer.ReplayBuffer` (samplers),
`collect.sources.make_source`.
"""

from __future__ import annotations

import importlib
from typing import Any

REGISTRIES: dict[str, dict[str, str]] = {
    # --algo: one file per algorithm in agents/, an Agent subclass
    "algo": {
        "sac": "widerl.agents.sac:SAC",
        "td3": "widerl.agents.td3:TD3",
        "crossq": "widerl.agents.crossq:CrossQ",  # beyond the paper (Bhatt et al. 2024)
    },
    # --arch: one file per body in nets/bodies/; the connectivities the paper compares (Sec.
    # 3.3, 4.2) first, then the residual bodies with LayerNorm (docs/paper.md)
    "arch": {
        "mlp": "widerl.nets.bodies.mlp:MLP",
        "resnet": "widerl.nets.bodies.resnet:ResNet",
        "d2rl": "widerl.nets.bodies.d2rl:D2RL",
        "densenet": "widerl.nets.bodies.densenet:DenseNet",
        "simba": "widerl.nets.bodies.simba:SimBa",
        "bronet": "widerl.nets.bodies.bronet:BroNet",
        "simbav2": "widerl.nets.bodies.simbav2:SimbaV2",  # on the hypersphere (Lee et al. 2025)
        "funnel": "widerl.nets.bodies.funnel:Funnel",  # widths halving (FastTD3)
    },
    # --critic-head: what the critics' output layer means (nets/critic_heads.py)
    "critic_head": {
        "scalar": "widerl.nets.critic_heads:ScalarHead",
        "c51": "widerl.nets.critic_heads:C51Head",
        "hlgauss": "widerl.nets.critic_heads:HLGaussHead",
    },
    # --features: the feature learner that feeds the agent (auto: OFENet with --ofenet-units > 0,
    # raw otherwise)
    # (either behind --obs-norm's running statistics)
    "features": {
        "raw": "widerl.nets.features:RawFeatures",
        "ofenet": "widerl.nets.ofenet:OFENet",
        "sale": "widerl.nets.sale:SALE",  # TD7's (Fujimoto et al. 2023)
        "mrq": "widerl.nets.mrq:MRQEncoder",  # MR.Q's (Fujimoto et al. 2025)
    },
    # --sampler: the replay's sampler (--prioritized: the short form of --sampler prioritized)
    "sampler": {
        "uniform": "widerl.replay.buffer:UniformSampler",
        "prioritized": "widerl.replay.buffer:PrioritizedSampler",
        "lap": "widerl.replay.buffer:LAPSampler",  # TD7's (Fujimoto et al. 2020)
    },
    # where transitions come from: the learner's own envs, or Ray collectors with --actors > 0
    "source": {
        "inline": "widerl.collect.sources:InlineSource",
        "ray": "widerl.collect.sources:RaySource",
    },
}


def names(family: str) -> tuple[str, ...]:
    """The names of `family`, in the registry's order."""
    return tuple(REGISTRIES[family])


def load(family: str, name: str) -> Any:
    """The implementation registered as `name` in `family` (imported now)."""
    table = REGISTRIES[family]
    if name not in table:
        raise ValueError(f"unknown {family} {name!r}; choose from {', '.join(table)}")
    module, attr = table[name].split(":")
    return getattr(importlib.import_module(module), attr)
