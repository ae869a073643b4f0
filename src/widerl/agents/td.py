"""The TD machinery every algorithm shares, as functions of the critics' outputs: the random
pair of REDQ, clipped double Q, the bootstrapped target in the critic head's form, the critic
loss. Shapes: K seeds, N critics per seed, batch B (agents/base.py)."""

from __future__ import annotations

import torch

from widerl.nets.critic_heads import CriticHead, select_min
from widerl.replay.buffer import Batch


def random_pair(critics: int, gens: list[torch.Generator]) -> torch.Tensor | None:
    """With N > 2 critics, the two whose minimum forms the TD target, drawn anew per update
    and seed from that seed's generator (REDQ, Chen et al. 2021: M = 2 of N); None for N <= 2."""
    if critics <= 2:
        return None
    return torch.stack([torch.randperm(critics, generator=g, device=g.device)[:2] for g in gens])


def target_min(q: torch.Tensor, pair: torch.Tensor | None) -> torch.Tensor:
    """Clipped double Q: the minimum over the critics `[K, N, B] -> [K, B]`; with N > 2 over
    the random pair (REDQ's in-target minimisation)."""
    if pair is not None:
        q = q.gather(1, pair.unsqueeze(-1).expand(-1, -1, q.shape[-1]))
    return q.amin(1)


def policy_value(q: torch.Tensor) -> torch.Tensor:
    """The Q the actor climbs `[K, N, B] -> [K, B]`: the minimum of the twin critics (SAC),
    or with N > 2 their mean (REDQ)."""
    return q.amin(1) if q.shape[1] <= 2 else q.mean(1)


def bootstrap(
    head: CriticHead,
    gamma: float,
    batch: Batch,
    next_out: torch.Tensor,
    pair: torch.Tensor | None,
    bonus: torch.Tensor | None = None,
) -> torch.Tensor:
    """The TD target r + gamma * (1 - terminated) * (Z(s', a') - bonus) in the critic head's
    form, from the critics' outputs on (s', a') `[K, N, B, D]`: Z is the output of the critic
    with the smaller Q (clipped double Q; the random pair's with N > 2). With --n-step K the
    batch holds the discounted sum of up to K rewards, the state after them as s' and its
    gamma^k as `discount` (replay/storage.multi_step): the same formula, gamma^k for gamma.
    (SAC's entropy bonus then enters at s_{t+k} only; the steps between count their rewards
    alone.)"""
    chosen = select_min(next_out, head.value(next_out), pair)
    discount = gamma if batch.discount is None else batch.discount
    return head.target(batch.rew, discount * (1.0 - batch.term), chosen, bonus)


def critic_loss(
    head: CriticHead, batch: Batch, out: torch.Tensor, target: torch.Tensor
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """J_Q (paper Eq. 2; Huber with --critic-loss huber, A.1; the cross-entropy of a
    categorical head): every critic learns the same target; importance weights under
    prioritized replay. Summed over critics and seeds, so each member's gradient is its own
    loss's. Also |TD error| of the expected values, max over the critics."""
    per_sample = head.loss(out, target)  # [K, N, B]
    if batch.weight is not None:
        per_sample = per_sample * batch.weight.unsqueeze(1)
    per_seed = per_sample.mean(-1).sum(1)  # [K]: sum over critics of their mean loss
    q = head.value(out)  # [K, N, B]
    td_abs = (q - head.expected(target).unsqueeze(1)).abs().amax(1)  # [K, B]
    return per_seed.sum(), (per_seed.detach(), q[:, 0].mean(-1).detach(), td_abs.detach())
