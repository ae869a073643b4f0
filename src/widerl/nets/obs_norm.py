"""Running-statistics observation normalisation (SimBa's RSNorm, Lee et al. 2024, Sec. 4.1),
as a feature learner that wraps another (raw features or OFENet):

    z_s = inner.state((s - mu) / sqrt(var + eps)),   z_sa = inner.state_action(z_s, a)

mu and var are the running mean and (population) variance of every observation the learner
has trained on, per dimension and seed, combined batch by batch with the parallel update of
Chan et al. (the same statistics a single pass over all those observations would give):

    n' = n + m,   mu' = mu + (mu_b - mu) m / n',
    var' = (n var + m var_b + (mu_b - mu)^2 n m / n') / n'

Where they come from (a decision): SimBa updates them from every observation the agent
collects; here `update` moves them from each sampled batch, inside the learning step. That
keeps them where the learning happens (compiled with it, no host round trip, identical with
inline or Ray collectors: the statistics are buffers of the agent, so they are checkpointed
and travel to the collectors with the weights), at the price of weighting states by how often
they are sampled (uniform replay: roughly equally; prioritized: towards high |TD error|).
Acting and evaluation use the statistics as they are (frozen; only `update` moves them). Before
the first update they are mean 0, variance 1: the identity.

Combined with OFENet (--obs-norm with --ofenet-units), OFENet sees normalised observations
and still predicts the raw next state (its target must not move with the statistics).
"""

from __future__ import annotations

from typing import Any

import torch

from widerl.nets.features import FeatureLearner


class ObsNorm(FeatureLearner):
    """Normalised observations into `inner` (see the module docstring)."""

    def __init__(self, inner: FeatureLearner, obs_dim: int, seeds: int = 1, eps: float = 1e-8):
        super().__init__()
        self.inner, self.eps = inner, eps
        self.s_dim, self.sa_dim = inner.s_dim, inner.sa_dim
        self.pretrain_updates = inner.pretrain_updates
        self.metric_name = inner.metric_name
        self.horizon = inner.horizon
        self.register_buffer("mean", torch.zeros(seeds, 1, obs_dim))
        self.register_buffer("var", torch.ones(seeds, 1, obs_dim))
        self.register_buffer("count", torch.zeros(seeds, 1, 1))

    def normalize(self, obs: torch.Tensor) -> torch.Tensor:
        """(s - mu) / sqrt(var + eps); obs `[K, B, obs_dim]` or single-seed `[B, obs_dim]`."""
        mean, var = (self.mean, self.var) if obs.dim() == 3 else (self.mean[0], self.var[0])
        return (obs - mean) * torch.rsqrt(var + self.eps)

    @torch.no_grad()
    def observe(self, obs: torch.Tensor) -> None:
        """Fold a batch `[K, B, obs_dim]` into the running statistics (in place)."""
        m = obs.shape[1]
        batch_mean = obs.mean(1, keepdim=True)
        batch_var = obs.var(1, unbiased=False, keepdim=True)
        total = self.count + m
        delta = batch_mean - self.mean
        m2 = self.var * self.count + batch_var * m + delta.square() * self.count * m / total
        self.mean.add_(delta * m / total)
        self.var.copy_(m2 / total)
        self.count.copy_(total)

    # --- the FeatureLearner interface -------------------------------------------------------
    def state(self, obs: torch.Tensor) -> torch.Tensor:
        return self.inner.state(self.normalize(obs))

    def state_action(self, z_s: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        return self.inner.state_action(z_s, act)

    def update(
        self, obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor
    ) -> torch.Tensor | None:
        """Move the statistics with this batch (train mode only), then the inner learner's
        own step on normalised observations and the raw next state."""
        if self.training:
            self.observe(obs if obs.dim() == 3 else obs.unsqueeze(0))
        return self.inner.update(self.normalize(obs), act, self._target(next_obs))

    def _target(self, next_obs: torch.Tensor) -> torch.Tensor:
        """s' as the inner learner's loss wants it: raw for a prediction of the state itself
        (OFENet), normalised for one that encodes it (SALE, MR.Q)."""
        return next_obs if self.inner.raw_target else self.normalize(next_obs)

    def _normalized(self, batch: Any) -> Any:
        seq = batch.seq
        if seq is not None:
            seq = seq._replace(next_obs=self._target(seq.next_obs))
        return batch._replace(
            obs=self.normalize(batch.obs), next_obs=self._target(batch.next_obs), seq=seq
        )

    def learn(self, batch: Any) -> torch.Tensor | None:
        """As `update`, for the whole batch (the inner learner may read more than s, a, s')."""
        if self.training:
            self.observe(batch.obs)
        return self.inner.learn(self._normalized(batch))

    def heldout_loss(
        self, obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor
    ) -> torch.Tensor | None:
        return self.inner.heldout_loss(self.normalize(obs), act, self._target(next_obs))

    def heldout(self, batch: Any) -> torch.Tensor | None:
        return self.inner.heldout(self._normalized(batch))

    eval_loss = heldout_loss  # the trainer's name for OFENet's held-out loss

    def optimizers(self) -> dict[str, object]:
        return self.inner.optimizers()

    def reset_parameters(self, generators: list[torch.Generator]) -> None:
        """The inner learner's networks only: the statistics describe the data, not weights."""
        self.inner.reset_parameters(generators)

    def build_optimizer(self) -> None:
        self.inner.build_optimizer()
