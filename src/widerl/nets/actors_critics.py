"""Actors and critics: a body (nets/bodies/) plus its output layer, with a members dimension.

Shapes: K seeds share a process; a policy network has K members and maps z_s `[K, B, s_dim]`
to actions `[K, B, A]`; the critics are one ensemble of K x N members (N critics per seed,
the paper's twin critics for N = 2) mapping z_sa `[K, B, sa_dim]` to Q `[K, N, B]` in one pass.
What the critics' output layer holds (Q itself, or logits over a value support) is their
head's business (nets/critic_heads.py).

Actions live in [-1, 1]^|A| everywhere inside widerl; the env wrapper rescales them. The
Gaussian actor's mean head is the "output layer" of Table 2; its log-std head is a second
output layer the table does not count.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from widerl.nets.bodies.base import Body
from widerl.nets.critic_heads import CriticHead, ScalarHead
from widerl.nets.ensemble import EnsembleLinear, constant_prefix

# Bounds on the pre-squash log standard deviation, as in the SAC authors' implementation.
LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_LOG2 = math.log(2.0)

BodyFactory = Callable[[int, int], Body]  # (members, in_dim) -> body


def presquash(mean: torch.Tensor, log_std: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """u = mean + std * eps, the Gaussian sample before tanh (one place, so that acting and
    the losses' samples take the same ops)."""
    return mean + log_std.exp() * eps


def squashed_sample(
    mean: torch.Tensor, log_std: torch.Tensor, eps: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """a = tanh(u), u = mean + std * eps, and log pi(a) (SAC, Appendix C)."""
    u = presquash(mean, log_std, eps)
    # log N(u; mean, std) written with eps = (u - mean) / std, saving a division.
    log_prob = (-0.5 * eps.square() - log_std - _HALF_LOG_2PI).sum(-1)
    # Change of variables for tanh (SAC Eq. 21), in the stable form
    # log(1 - tanh(u)^2) = 2 * (log 2 - u - softplus(-2u)).
    log_prob = log_prob - (2.0 * (_LOG2 - u - F.softplus(-2.0 * u))).sum(-1)
    return torch.tanh(u), log_prob


class GaussianActor(nn.Module):
    """SAC policy: tanh-squashed diagonal Gaussian (Haarnoja et al. 2018, Appendix C)."""

    def __init__(self, body: Body, act_dim: int) -> None:
        super().__init__()
        self.body = body
        self.mean = EnsembleLinear(body.members, body.out_dim, act_dim)
        self.log_std = EnsembleLinear(body.members, body.out_dim, act_dim)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(z)
        return self.mean(h), self.log_std(h).clamp(LOG_STD_MIN, LOG_STD_MAX)

    def sample(self, z: torch.Tensor, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterised action in (-1, 1) for standard normal noise `eps`, and log pi."""
        mean, log_std = self(z)
        return squashed_sample(mean, log_std, eps)

    def act(self, z: torch.Tensor, eps: torch.Tensor | None) -> torch.Tensor:
        """tanh(mean) without noise (deterministic evaluation), else a sample: `sample`'s
        action by the same ops, without its log pi (a dozen small ops an env step never
        reads)."""
        if eps is None:
            return self.deterministic(z)
        return torch.tanh(presquash(*self(z), eps))

    def deterministic(self, z: torch.Tensor) -> torch.Tensor:
        """The evaluation action tanh(mean) (what `widerl eval` and an export run)."""
        return torch.tanh(self(z)[0])


class DeterministicActor(nn.Module):
    """TD3 policy: tanh(Linear(body(z)))."""

    def __init__(self, body: Body, act_dim: int) -> None:
        super().__init__()
        self.body = body
        self.mean = EnsembleLinear(body.members, body.out_dim, act_dim)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.mean(self.body(z)))

    def deterministic(self, z: torch.Tensor) -> torch.Tensor:
        """The evaluation action, without exploration noise (what an export runs)."""
        return self(z)


class CriticEnsemble(nn.Module):
    """N critics per seed, K seeds, as K x N members of one body and one output layer: Q(z_sa)
    of every critic in one pass. The output layer has `head.out_dim` units (1 for a scalar
    head, the atoms of a categorical one)."""

    def __init__(
        self,
        seeds: int,
        critics: int,
        body: BodyFactory,
        sa_dim: int,
        head: CriticHead | None = None,
    ) -> None:
        super().__init__()
        self.seeds, self.n = seeds, critics
        self.head = head if head is not None else ScalarHead()
        self.body = body(seeds * critics, sa_dim)
        self.out = EnsembleLinear(seeds * critics, self.body.out_dim, self.head.out_dim)

    def _critics_per_seed(self, k: int) -> int:
        # Read from the weights, so that a view of some members (`first`) runs the same code.
        return self.out.weight.shape[0] // k

    def _members(self, z_sa: torch.Tensor) -> torch.Tensor:
        """[K, B, D] -> [K * N, B, D]: every critic of a seed sees that seed's input."""
        k, b, d = z_sa.shape
        n = self._critics_per_seed(k)
        return z_sa.unsqueeze(1).expand(k, n, b, d).reshape(k * n, b, d)

    def outputs(self, z_sa: torch.Tensor, frozen: int = 0) -> torch.Tensor:
        """The output layer of every critic `[K, N, B, out_dim]` (what the head reads).
        `frozen`: the leading columns of z_sa without a gradient (the actor's loss: z_s)."""
        k, b = z_sa.shape[0], z_sa.shape[1]
        x = self._members(z_sa)
        if self.body.keeps_input:  # DenseNet: the output layer sees x's columns too
            frozen = constant_prefix(x, frozen)
            h = self.out(self.body(x, frozen), frozen)
        else:
            h = self.out(self.body(x))
        return h.view(k, -1, b, self.head.out_dim)

    def forward(self, z_sa: torch.Tensor, frozen: int = 0) -> torch.Tensor:
        """Q of every critic `[K, N, B]`."""
        return self.head.value(self.outputs(z_sa, frozen))

    def first(self, z_sa: torch.Tensor, frozen: int = 0) -> torch.Tensor:
        """Q_1 of every seed `[K, B]`, computing only the first critic (TD3's actor step
        needs no other): the ensemble run on a view of its first members."""
        k = z_sa.shape[0]
        views = {
            name: t.view(k, self.n, *t.shape[1:])[:, 0]
            for name, t in [*self.named_parameters(), *self.named_buffers()]
        }
        return torch.func.functional_call(self, views, (z_sa, frozen))[:, 0]

    def features(self, z_sa: torch.Tensor) -> torch.Tensor:
        """Penultimate-layer features Phi `[K, N, B, F]`, whose effective rank the paper
        tracks (A.4)."""
        k, b = z_sa.shape[0], z_sa.shape[1]
        return self.body(self._members(z_sa)).view(k, self.n, b, -1)
