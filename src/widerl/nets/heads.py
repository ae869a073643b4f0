"""Actors and critics: a Body (nets/blocks.py) plus its output layer.

Actions live in [-1, 1]^|A| everywhere inside widerl; the env wrapper rescales them to the
task's bounds. The Gaussian actor's mean head is the "output layer" of Table 2; its log-std
head is a second output layer the table does not count.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from widerl.nets.blocks import Body

# Bounds on the pre-squash log standard deviation, as in the SAC authors' implementation.
LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_LOG2 = math.log(2.0)


def squashed_sample(
    mean: torch.Tensor, log_std: torch.Tensor, eps: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """a = tanh(u), u = mean + std * eps, its log-probability, and std (the hand-written
    backward of agents/sac.py reuses it)."""
    std = log_std.exp()
    u = mean + std * eps
    # log N(u; mean, std) written with eps = (u - mean) / std, saving a division.
    log_prob = (-0.5 * eps.square() - log_std - _HALF_LOG_2PI).sum(-1)
    # Change of variables for tanh (SAC Eq. 21), in the stable form
    # log(1 - tanh(u)^2) = 2 * (log 2 - u - softplus(-2u)).
    log_prob = log_prob - (2.0 * (_LOG2 - u - F.softplus(-2.0 * u))).sum(-1)
    return torch.tanh(u), log_prob, std


class GaussianActor(nn.Module):
    """SAC policy: tanh-squashed diagonal Gaussian (Haarnoja et al. 2018, Appendix C)."""

    def __init__(self, body: Body, act_dim: int) -> None:
        super().__init__()
        self.body = body
        self.mean = nn.Linear(body.out_dim, act_dim)
        self.log_std = nn.Linear(body.out_dim, act_dim)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(z)
        return self.mean(h), self.log_std(h).clamp(LOG_STD_MIN, LOG_STD_MAX)

    def sample(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterised action in (-1, 1) and its log-probability under the squashed policy."""
        mean, log_std = self(z)
        a, log_prob, _ = squashed_sample(mean, log_std, torch.randn_like(mean))
        return a, log_prob

    def act(self, z: torch.Tensor, deterministic: bool) -> torch.Tensor:
        if deterministic:
            return torch.tanh(self(z)[0])
        return self.sample(z)[0]


class DeterministicActor(nn.Module):
    """TD3 policy: tanh(Linear(body(z)))."""

    def __init__(self, body: Body, act_dim: int) -> None:
        super().__init__()
        self.body = body
        self.mean = nn.Linear(body.out_dim, act_dim)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.mean(self.body(z)))


class Critic(nn.Module):
    """Q(z_sa): a body over state-action features and a scalar output layer."""

    def __init__(self, body: Body) -> None:
        super().__init__()
        self.body = body
        self.out = nn.Linear(body.out_dim, 1)

    def forward(self, z_sa: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(z_sa)).squeeze(-1)

    def features(self, z_sa: torch.Tensor) -> torch.Tensor:
        """Penultimate-layer features Phi, whose effective rank the paper tracks (A.4)."""
        return self.body(z_sa)
