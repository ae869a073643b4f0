"""What a row measures on the replay besides returns: the critic's effective rank (A.4) on a
fresh sample of the replay as it is (the paper's reading, after Kumar et al. 2021) and on the
fixed probe drawn right after the random warm-up, and the transitions a checkpoint keeps for
`widerl landscape` (A.3). None of it touches a training random stream."""

from __future__ import annotations

import numpy as np
import torch

from widerl.agents.base import Agent
from widerl.errors import Diverged
from widerl.replay.buffer import TRANSITION_FIELDS, ReplayBuffer

PROBE_SIZE = 2_048  # replay transitions for the critic's srank and loss landscapes


class Probes:
    def __init__(self, replay: ReplayBuffer, agent: Agent, seed: int) -> None:
        self.replay, self.agent, self.seed = replay, agent, seed
        self.probe: dict[str, torch.Tensor] | None = None

    def spread_sample(self) -> dict[str, torch.Tensor] | None:
        """PROBE_SIZE transitions spread evenly over the replay's contents (no RNG used)."""
        if self.replay.size == 0:
            return None
        n = min(PROBE_SIZE, self.replay.size)
        idx = self.replay.slots(torch.linspace(0, self.replay.size - 1, n).long())
        values = self.replay.storage.gather(idx)
        return {k: v.float() for k, v in zip(TRANSITION_FIELDS, values, strict=True)}

    def draw_probe(self) -> None:
        """The fixed batch on which `srank_probe` is tracked, drawn once after the warm-up and
        kept in checkpoints."""
        if self.probe is None:
            self.probe = self.spread_sample()

    def fresh_sample(self, grad_step: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """PROBE_SIZE distinct transitions drawn uniformly from the replay as it is now. The
        generator is seeded from the seed and grad_step alone: measuring never moves the
        training's random streams, and a resumed run draws the same sample."""
        if self.replay.size == 0:
            return None
        seed = np.random.SeedSequence([self.seed, grad_step]).generate_state(1)
        g = torch.Generator().manual_seed(int(seed[0]))
        n = min(PROBE_SIZE, self.replay.size)
        idx = self.replay.slots(torch.randperm(self.replay.size, generator=g)[:n])
        obs, act, *_ = self.replay.storage.gather(idx)
        return obs, act

    def samples(self, grad_step: int) -> dict[str, tuple[torch.Tensor, torch.Tensor] | None]:
        """What `srank` and `srank_probe` are measured on: a fresh sample and the probe."""
        probe = (self.probe["obs"], self.probe["act"]) if self.probe else None
        return {"srank": self.fresh_sample(grad_step), "srank_probe": probe}

    def state_dict(self) -> dict[str, torch.Tensor | None]:
        cpu = None if self.probe is None else {k: v.cpu() for k, v in self.probe.items()}
        sample = self.spread_sample()
        # What the run trained on, for `widerl landscape` (A.3): refreshed at each save.
        return {
            "probe": cpu,
            "sample": None if sample is None else {k: v.cpu() for k, v in sample.items()},
        }

    def load_state_dict(self, probe: dict[str, torch.Tensor] | None) -> None:
        if probe is not None:
            self.probe = {k: v.to(self.replay.device) for k, v in probe.items()}


def sranks(probes: list[Probes], agent: Agent, grad_step: int) -> list[dict[str, int | None]]:
    """`srank` on a fresh replay sample and `srank_probe` on the warm-up probe, per seed:
    seed k's critic on seed k's samples, all seeds in one forward pass when the samples have
    the same size (they do in a run: every seed's replay fills alike)."""
    from widerl.analysis.srank import srank

    per_lane = [p.samples(grad_step) for p in probes]
    out: list[dict[str, int | None]] = [{} for _ in probes]
    for name in ("srank", "srank_probe"):
        samples = [s[name] for s in per_lane]
        phis = _member_features(agent, samples)
        for k, phi in enumerate(phis):
            if phi is not None and not bool(torch.isfinite(phi).all()):  # the SVD would fail
                raise Diverged("the critic's features on replay states", grad_step, by=True)
            out[k][name] = None if phi is None else srank(phi)
    return out


def _member_features(
    agent: Agent, samples: list[tuple[torch.Tensor, torch.Tensor] | None]
) -> list[torch.Tensor | None]:
    """Seed k's first critic's penultimate features on samples[k] (eval mode)."""
    from widerl.analysis.srank import member_penultimate_features

    present = [s for s in samples if s is not None]
    if not present:
        return [None] * len(samples)
    if len(present) == len(samples) and len({s[0].shape for s in present}) == 1:
        obs = torch.stack([s[0] for s in present])
        act = torch.stack([s[1] for s in present])
        return list(member_penultimate_features(agent, obs, act))
    out: list[torch.Tensor | None] = []
    for k, s in enumerate(samples):  # unequal sizes: each seed's sample through every member
        if s is None:
            out.append(None)
            continue
        k_all = agent.k
        phi = member_penultimate_features(
            agent, s[0].expand(k_all, *s[0].shape), s[1].expand(k_all, *s[1].shape)
        )
        out.append(phi[k])
    return out
