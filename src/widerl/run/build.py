"""The composition root: a Config becomes the parts of a run (docs/learning-core.md).
Everything else receives its collaborators; only this module decides which feature learner,
agent, replay, sampler and collection source a configuration means."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from widerl.agents import make_agent
from widerl.agents.base import Agent
from widerl.collect.envs import env_dims
from widerl.collect.intake import HOLDOUT_EVERY, HOLDOUT_SIZE, Intake
from widerl.collect.reward_scale import ReturnScale
from widerl.collect.sources import Source, make_source
from widerl.config import Config, compiles, sampler_of
from widerl.nets.feature_factory import make_features
from widerl.nets.features import FeatureLearner
from widerl.replay.buffer import ReplayBuffer, compact_reserve
from widerl.run.device import resolve_device
from widerl.run.evaluate import Evaluator
from widerl.run.probes import Probes
from widerl.run.step import LearnStep

SEED_STREAMS = ("torch", "collect", "eval", "replay", "actors", "srank")


def derive_seeds(seed: int) -> dict[str, int]:
    """Independent seeds for each consumer of randomness, from one root (SeedSequence.spawn)."""
    children = np.random.SeedSequence(seed).spawn(len(SEED_STREAMS))
    return {n: int(c.generate_state(1)[0]) for n, c in zip(SEED_STREAMS, children, strict=True)}


@dataclass
class Lane:
    """What one seed of a run has for itself: its settings (`cfg.seed` is the seed), random
    streams, replay, held-out buffer, intake and probes. Its networks are member `index` of
    the run's stacked agent."""

    index: int
    cfg: Config
    seeds: dict[str, int]
    replay: ReplayBuffer
    holdout: ReplayBuffer | None
    intake: Intake
    probes: Probes


@dataclass
class Run:
    """The parts of one training run: the stacked agent, feature learner and learning step
    that all its seeds share, the per-seed `lanes`, and the collection source and evaluator
    that serve every seed."""

    cfg: Config
    device: torch.device
    dims: dict[str, int]
    features: FeatureLearner
    agent: Agent
    lanes: list[Lane]
    source: Source
    learner: LearnStep
    evaluator: Evaluator

    # The first seed's parts (a single run's only ones).
    seeds = property(lambda self: self.lanes[0].seeds)
    replay = property(lambda self: self.lanes[0].replay)
    holdout = property(lambda self: self.lanes[0].holdout)
    intake = property(lambda self: self.lanes[0].intake)
    probes = property(lambda self: self.lanes[0].probes)

    def close(self) -> None:
        self.source.close()
        self.evaluator.close()


def _lane(index: int, cfg: Config, obs_dim: int, act_dim: int, device: torch.device,
          features: FeatureLearner, agent: Agent) -> Lane:  # fmt: skip
    seeds = derive_seeds(cfg.seed)
    replay = ReplayBuffer(
        obs_dim,
        act_dim,
        cfg.buffer_size,
        device,
        sampler=sampler_of(cfg),
        alpha=cfg.per_alpha,
        seed=seeds["replay"],
        beta=cfg.per_beta,
        reserve=compact_reserve(cfg.buffer_size, HOLDOUT_EVERY if features.has_heldout else None),
        n_step=cfg.n_step,
        gamma=cfg.gamma,
        horizon=features.horizon,  # the steps a feature learner trains over (MR.Q's encoder)
    )
    # Held-out transitions for the feature learner's test loss: diverted from the replay,
    # never trained on (OFENet's aux_loss_heldout).
    holdout = None
    if features.has_heldout:
        holdout = ReplayBuffer(obs_dim, act_dim, HOLDOUT_SIZE, device, seed=seeds["replay"] + 1)
    return Lane(
        index=index,
        cfg=cfg,
        seeds=seeds,
        replay=replay,
        holdout=holdout,
        intake=Intake(
            replay, holdout, ReturnScale(cfg.reward_g_max) if cfg.reward_scaling else None
        ),
        probes=Probes(replay, agent, seeds["srank"]),
    )


@dataclass
class Learning:
    """What learns, without what collects or evaluates: every seed's random streams, the
    feature learner, the stacked agent, the lanes and the learning step.
    `build` adds collection and evaluation; --compile auto's cache warm-up
    (run/compiling.py) compiles the step of these parts alone, on random transitions."""

    streams: list[dict[str, int]]
    features: FeatureLearner
    agent: Agent
    lanes: list[Lane]
    learner: LearnStep


def build_learning(cfg: Config, seeds: list[int] | None, obs_dim: int, act_dim: int,
                   device: torch.device) -> Learning:  # fmt: skip
    cfgs = [cfg] if seeds is None else [dataclasses.replace(cfg, seed=s) for s in seeds]
    streams = [derive_seeds(c.seed) for c in cfgs]
    # Nothing in training draws from torch's global generator (every consumer has its own);
    # it is seeded for code outside widerl, from the first seed.
    torch.manual_seed(streams[0]["torch"])
    features = make_features(cfg, obs_dim, act_dim, seeds=len(cfgs))
    agent = make_agent(
        cfg, obs_dim, act_dim, device, features=features, seeds=[s["torch"] for s in streams]
    )
    lanes = [_lane(i, c, obs_dim, act_dim, device, features, agent) for i, c in enumerate(cfgs)]
    learner = LearnStep([lane.replay for lane in lanes], features, agent, cfg.batch_size,
                        compiled=compiles(cfg))  # fmt: skip
    return Learning(streams, features, agent, lanes, learner)


def build(cfg: Config, seeds: list[int] | None = None) -> Run:
    """The run of `cfg`, or with `seeds` one independent agent per seed (each seed's config is
    `cfg` with that seed), stacked along the networks' members dimension."""
    device = resolve_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    obs_dim, act_dim = env_dims(cfg.env)
    parts = build_learning(cfg, seeds, obs_dim, act_dim, device)
    features = parts.features
    dims = {"obs_dim": obs_dim, "act_dim": act_dim, "z_s_dim": features.s_dim,
            "z_sa_dim": features.sa_dim}  # fmt: skip
    return Run(
        cfg=cfg,
        device=device,
        dims=dims,
        features=features,
        agent=parts.agent,
        lanes=parts.lanes,
        source=make_source(cfg, parts.streams, device),
        learner=parts.learner,
        evaluator=Evaluator(
            cfg.env, [s["eval"] % 2**31 for s in parts.streams], cfg.eval_episodes
        ),  # fmt: skip
    )
