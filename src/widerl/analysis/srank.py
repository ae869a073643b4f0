"""Effective rank srank_delta of the critics' penultimate-layer features (A.4; Kumar et al.
2021, "Implicit Under-Parameterization").

srank_delta(Phi) = min{k : sum_{i<=k} sigma_i / sum_i sigma_i >= 1 - delta}, singular values
sorted in decreasing order; delta = 0.01 as in the paper.
"""

from __future__ import annotations

import torch

from widerl.agents.base import Agent


def srank(features: torch.Tensor, delta: float = 0.01) -> int:
    """Effective rank of a (batch x features) matrix; 0 for an all-zero matrix."""
    if features.dim() != 2:
        raise ValueError(
            f"features must be a 2-D (batch x features) matrix, got {features.dim()}-D"
        )
    if not 0.0 <= delta < 1.0:
        raise ValueError(f"delta must be in [0, 1), got {delta}")
    # float64: the cumulative ratio is compared against 1 - delta, and in float32 the tail of
    # a wide matrix's spectrum sums to visible rounding error.
    sigma = torch.linalg.svdvals(features.detach().to(torch.float64))
    # Singular values below the numerical-rank tolerance (as torch.linalg.matrix_rank uses)
    # are rounding noise of zeros; left in, they keep delta = 0 from ever counting a rank-one
    # matrix as rank one, depending on the BLAS.
    if sigma.numel():
        tol = sigma[0] * max(features.shape) * torch.finfo(torch.float64).eps
        sigma = torch.where(sigma > tol, sigma, torch.zeros_like(sigma))
    cumulative = torch.cumsum(sigma, 0)
    total = cumulative[-1]
    if total <= 0:
        return 0
    # The last ratio is exactly 1, so some k always qualifies.
    reached = (cumulative / total) >= 1.0 - delta
    return int(torch.nonzero(reached)[0, 0].item()) + 1


def critic_penultimate_features(agent: Agent, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
    """Phi of the first critic (of the first seed) on a batch `[B, obs_dim]`: its body's
    output on z_sa (A.4), with every network in eval mode."""
    return member_penultimate_features(agent, obs.unsqueeze(0), act.unsqueeze(0))[0]


def member_penultimate_features(agent: Agent, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
    """Phi of each seed's first critic on that seed's batch: `[K, B, obs_dim] -> [K, B, F]`."""
    with torch.no_grad(), agent.evaluating():
        z_s = agent.features.state(obs)
        z_sa = agent.features.state_action(z_s, act)
        return agent.critics.features(z_sa)[:, 0]


def critic_srank(agent: Agent, obs: torch.Tensor, act: torch.Tensor, delta: float = 0.01) -> int:
    """srank_delta of the first critic's penultimate features on a fixed batch (Fig. 5b, 6b)."""
    return srank(critic_penultimate_features(agent, obs, act), delta)
