"""The composition root: a Config becomes the parts of a run (DESIGN.md). Everything else
receives its collaborators; only this module decides which feature learner, agent, replay,
sampler and collection source a configuration means."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from widerl.agents import make_agent
from widerl.agents.base import Agent
from widerl.config import Config, compiles
from widerl.device import resolve_device
from widerl.envs import env_dims
from widerl.evaluate import Evaluator
from widerl.intake import HOLDOUT_SIZE, Intake
from widerl.learner import LearnStep
from widerl.nets.feature_learners import make_features
from widerl.nets.features import FeatureLearner
from widerl.probes import Probes
from widerl.replay import ReplayBuffer
from widerl.sources import Source, make_source

SEED_STREAMS = ("torch", "collect", "eval", "replay", "actors", "srank")


def derive_seeds(seed: int) -> dict[str, int]:
    """Independent seeds for each consumer of randomness, from one root (SeedSequence.spawn)."""
    children = np.random.SeedSequence(seed).spawn(len(SEED_STREAMS))
    return {n: int(c.generate_state(1)[0]) for n, c in zip(SEED_STREAMS, children, strict=True)}


@dataclass
class Run:
    """The parts of one training run."""

    cfg: Config
    device: torch.device
    seeds: dict[str, int]
    dims: dict[str, int]
    features: FeatureLearner
    agent: Agent
    replay: ReplayBuffer
    holdout: ReplayBuffer | None
    intake: Intake
    source: Source
    learner: LearnStep
    evaluator: Evaluator
    probes: Probes

    def close(self) -> None:
        self.source.close()
        self.evaluator.close()


def build(cfg: Config) -> Run:
    device = resolve_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seeds = derive_seeds(cfg.seed)
    torch.manual_seed(seeds["torch"])
    obs_dim, act_dim = env_dims(cfg.env)
    features = make_features(cfg, obs_dim, act_dim)
    agent = make_agent(cfg, obs_dim, act_dim, device, features=features, seeds=[seeds["torch"]])
    replay = ReplayBuffer(
        obs_dim,
        act_dim,
        cfg.buffer_size,
        device,
        prioritized=cfg.prioritized,
        alpha=cfg.per_alpha,
        seed=seeds["replay"],
        beta=cfg.per_beta,
    )
    # Held-out transitions for the feature learner's test loss: diverted from the replay,
    # never trained on (OFENet's aux_loss_heldout).
    holdout = None
    if features.has_heldout:
        holdout = ReplayBuffer(obs_dim, act_dim, HOLDOUT_SIZE, device, seed=seeds["replay"] + 1)
    dims = {"obs_dim": obs_dim, "act_dim": act_dim, "z_s_dim": features.s_dim,
            "z_sa_dim": features.sa_dim}  # fmt: skip
    return Run(
        cfg=cfg,
        device=device,
        seeds=seeds,
        dims=dims,
        features=features,
        agent=agent,
        replay=replay,
        holdout=holdout,
        intake=Intake(replay, holdout),
        source=make_source(cfg, seeds, device),
        learner=LearnStep(replay, features, agent, cfg.batch_size, compiled=compiles(cfg)),
        evaluator=Evaluator(cfg.env, seeds["eval"] % 2**31, cfg.eval_episodes),
        probes=Probes(replay, agent, seeds["srank"]),
    )
