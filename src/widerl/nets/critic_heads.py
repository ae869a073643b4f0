"""What a critic's output layer means: a scalar Q, or a categorical distribution over a fixed
support whose expectation is Q (critics trained by classification).

A head is stateless (its support is rebuilt on the output's device, a constant to
torch.compile); the output layer's weights live in CriticEnsemble. Every head answers the
same questions, so the algorithms, priorities, srank and loss landscapes never ask which one
they have:

    value(out)                  Q from the output layer `[..., out_dim] -> [...]`
    target(rew, disc, out', b)  the TD target r + disc * (Z(s', a') - b) in the head's form:
                                a scalar `[K, B]`, or target probabilities `[K, B, atoms]`
    expected(target)            the target's scalar value `[K, B]` (|TD error| for priorities)
    loss(out, target)           per-sample loss of every critic `[K, N, B]`

`disc` is gamma * (1 - terminated) and `b` the entropy bonus alpha log pi(a'|s') (SAC) or
None (TD3). With a distributional head, every atom z of the next state's distribution moves
to r + disc * (z - b).
"""

from __future__ import annotations

import abc
from typing import Any

import torch
import torch.nn.functional as F

from widerl.config import registries


def elementwise_critic_loss(kind: str, q: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample loss: 0.5 * delta^2 (SAC Eq. 2 / paper Eq. 2) or Huber with delta 1 (A.1),
    which equals the former for |delta| < 1 and grows linearly beyond."""
    if kind == "huber":
        return F.huber_loss(q, target.expand_as(q), reduction="none", delta=1.0)
    return 0.5 * (q - target).square()


class ScalarHead:
    """One output, Q itself, regressed on the TD target (MSE or Huber)."""

    out_dim = 1
    name = "scalar"

    @classmethod
    def from_config(cls, cfg: Any) -> ScalarHead:
        return cls(cfg.critic_loss)

    def __init__(self, kind: str = "mse") -> None:
        self.kind = kind

    def value(self, out: torch.Tensor) -> torch.Tensor:
        return out[..., 0]

    def target(
        self,
        rew: torch.Tensor,
        disc: torch.Tensor,
        next_out: torch.Tensor,
        bonus: torch.Tensor | None = None,
    ) -> torch.Tensor:
        v = self.value(next_out)
        return rew + disc * (v if bonus is None else v - bonus)

    def expected(self, target: torch.Tensor) -> torch.Tensor:
        return target

    def loss(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return elementwise_critic_loss(self.kind, self.value(out), target.unsqueeze(1))


class _Categorical(abc.ABC):
    """Logits over `atoms` classes with values `points(device)`; Q is the expectation under
    the softmax, the loss the cross-entropy against target probabilities."""

    name = ""

    def __init__(self, atoms: int, v_min: float, v_max: float) -> None:
        if atoms < 2 or not v_min < v_max:
            raise ValueError(f"need atoms >= 2 and v_min < v_max, got {atoms}, {v_min}, {v_max}")
        self.out_dim, self.v_min, self.v_max = atoms, v_min, v_max

    @abc.abstractmethod
    def points(self, like: torch.Tensor) -> torch.Tensor:
        """The support's values `[atoms]` on `like`'s device and dtype."""

    def value(self, out: torch.Tensor) -> torch.Tensor:
        return (out.softmax(-1) * self.points(out)).sum(-1)

    @abc.abstractmethod
    def probs(self, target: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """The target as probabilities over the classes `[K, B, atoms]`."""

    def loss(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        p = self.probs(target, out).unsqueeze(1)  # the same target for every critic
        return -(p * out.log_softmax(-1)).sum(-1)


class C51Head(_Categorical):
    """C51 (Bellemare et al. 2017, Sec. 4, Algorithm 1): probabilities on `atoms` points
    z_i = v_min + i * dz spanning [v_min, v_max]. The TD target is the next state's
    distribution with its atoms moved to r + disc * (z - b), clipped into [v_min, v_max] and
    projected back onto the support: an atom's mass is split between its two neighbours z_l,
    z_u in proportion to its distance from each. The distribution moved is that of the
    critic whose expected next value is the smaller (clipped double Q; agents/td.py's bootstrap).
    FastTD3 (Seo et al. 2025) uses such a critic with 101 atoms, widerl's default."""

    name = "c51"

    @classmethod
    def from_config(cls, cfg: Any) -> C51Head:
        return cls(cfg.atoms, cfg.v_min, cfg.v_max)

    def points(self, like: torch.Tensor) -> torch.Tensor:
        return torch.linspace(
            self.v_min, self.v_max, self.out_dim, device=like.device, dtype=like.dtype
        )

    def target(
        self,
        rew: torch.Tensor,
        disc: torch.Tensor,
        next_out: torch.Tensor,
        bonus: torch.Tensor | None = None,
    ) -> torch.Tensor:
        z = self.points(next_out)
        shifted = z if bonus is None else z - bonus.unsqueeze(-1)
        atoms = rew.unsqueeze(-1) + disc.unsqueeze(-1) * shifted  # [K, B, atoms]
        return self.project(atoms, next_out.softmax(-1))

    def project(self, atoms: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        """Algorithm 1's projection Phi of masses `p` at `atoms` onto the support: with
        b = (clip(Tz_j) - v_min) / dz, atom j's mass goes to its neighbours l = floor(b) and
        l + 1 in the proportions (l + 1 - b) and (b - l), two scatter-adds of [..., atoms]
        each (no atoms x atoms matrix: the dense form took 0.38x the MLP's update rate,
        issue 24). l is capped at atoms - 2, so an atom on v_max gives all its mass to the
        last point and one exactly on a point all of it to that point, as Algorithm 1."""
        dz = (self.v_max - self.v_min) / (self.out_dim - 1)
        b = (atoms.clamp(self.v_min, self.v_max) - self.v_min) / dz
        lower = b.floor().clamp(max=self.out_dim - 2)
        upper_share = b - lower
        lower_idx = lower.long()
        p = p.to(torch.promote_types(p.dtype, b.dtype))  # bf16 masses under --amp: as the sum
        m = torch.zeros_like(p).scatter_add_(-1, lower_idx, p * (1.0 - upper_share))
        return m.scatter_add_(-1, lower_idx + 1, p * upper_share)

    def expected(self, target: torch.Tensor) -> torch.Tensor:
        return (target * self.points(target)).sum(-1)

    def probs(self, target: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return target


class HLGaussHead(_Categorical):
    """HL-Gauss (Farebrother et al. 2024, "Stop regressing", Sec. 3.1; Imani & White 2018):
    `atoms` bins of width w on [v_min, v_max] with values at their centres. The scalar TD
    target y (clipped into the support) becomes the probabilities of a Gaussian N(y, sigma^2)
    on the bins, p_i = Phi((e_{i+1} - y) / sigma) - Phi((e_i - y) / sigma) over the bin edges
    e, renormalised to the support; sigma = sigma_ratio * w (the paper recommends 0.75).
    The loss is the cross-entropy, Q the expectation over the bin centres."""

    name = "hlgauss"

    @classmethod
    def from_config(cls, cfg: Any) -> HLGaussHead:
        return cls(cfg.atoms, cfg.v_min, cfg.v_max, cfg.hlgauss_sigma)

    def __init__(self, atoms: int, v_min: float, v_max: float, sigma_ratio: float = 0.75):
        super().__init__(atoms, v_min, v_max)
        self.width = (v_max - v_min) / atoms
        self.sigma = sigma_ratio * self.width

    def edges(self, like: torch.Tensor) -> torch.Tensor:
        return torch.linspace(
            self.v_min, self.v_max, self.out_dim + 1, device=like.device, dtype=like.dtype
        )

    def points(self, like: torch.Tensor) -> torch.Tensor:
        e = self.edges(like)
        return 0.5 * (e[1:] + e[:-1])

    # A scalar TD target (y = r + gamma V(s')), turned into a histogram by `probs`.
    target = ScalarHead.target
    expected = ScalarHead.expected

    def probs(self, target: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        y = target.clamp(self.v_min, self.v_max).unsqueeze(-1)
        cdf = torch.special.ndtr((self.edges(like) - y) / self.sigma)  # [K, B, atoms + 1]
        return (cdf[..., 1:] - cdf[..., :-1]) / (cdf[..., -1:] - cdf[..., :1])


CriticHead = ScalarHead | C51Head | HLGaussHead


def make_head(cfg: Any) -> CriticHead:
    """The head named by `cfg.critic_head` (config/registries.py)."""
    return registries.load("critic_head", cfg.critic_head).from_config(cfg)


def select_min(out: torch.Tensor, q: torch.Tensor, pair: torch.Tensor | None) -> torch.Tensor:
    """Clipped double Q for any head: per sample, the output `[K, N, B, D] -> [K, B, D]` of
    the critic with the smallest Q `[K, N, B]` (with N > 2, of the random pair, REDQ). For a
    scalar head this is the minimum Q itself."""
    if pair is not None:
        idx = pair.unsqueeze(-1).expand(-1, -1, q.shape[-1])  # [K, 2, B]
        q = q.gather(1, idx)
        out = out.gather(1, idx.unsqueeze(-1).expand(-1, -1, -1, out.shape[-1]))
    best = q.argmin(1, keepdim=True)  # [K, 1, B]
    return out.gather(1, best.unsqueeze(-1).expand(-1, -1, -1, out.shape[-1])).squeeze(1)
