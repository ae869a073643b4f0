"""Feature learners: what the agent sees (z_s for the actor, z_sa for the critics).

The agent never knows which feature learner feeds it: it receives an object with
`s_dim`, `sa_dim`, `state(obs)` and `state_action(z_s, act)`. The trainer drives the learner's
own training through the same interface, without naming OFENet: `learn` (one auxiliary step
on a sampled batch, returning its loss per seed or None; by default `update` on the batch's
(s, a, s')), `pretrain_updates` (steps on the warm-up data before RL starts), `heldout` (the
loss on held-out transitions) and `optimizers`. A learner trained over a horizon of H steps
(MR.Q's encoder) sets `horizon`, and its batches then carry those steps (`Batch.seq`). Without
representation learning (`RawFeatures`) these are the raw state and the concatenated
state-action pair.

The learners: raw (here), ofenet (nets/ofenet.py), sale (TD7, nets/sale.py), mrq (MR.Q's
encoder, nets/mrq.py); registered as `features` in config/registries.py.

Shapes carry the seeds dimension: obs `[K, B, obs_dim]` -> z_s `[K, B, s_dim]`.
"""

from __future__ import annotations

import abc
from typing import Any

import torch
from torch import nn


class FeatureLearner(nn.Module, abc.ABC):
    """The interface; `RawFeatures` is the trivial implementation."""

    s_dim: int
    sa_dim: int
    pretrain_updates: int = 0  # auxiliary updates on the warm-up data before RL starts
    metric_name: str | None = None  # the auxiliary loss's column in metrics.csv, if any
    has_heldout: bool = False  # measures `heldout_loss` on transitions kept out of the replay
    horizon: int = 0  # steps of each sampled transition's stream the learner trains on (0: none)
    # Whether the loss's target is the raw next state (OFENet's), which observation
    # normalisation must leave as it is; a learner that encodes s' wants it normalised.
    raw_target: bool = True

    @abc.abstractmethod
    def state(self, obs: torch.Tensor) -> torch.Tensor:
        """z_s, what the actor sees."""

    @abc.abstractmethod
    def state_action(self, z_s: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """z_sa, what the critics see. It begins with z_s itself (its first s_dim columns),
        which lets the actor's gradient skip those columns (the actor losses of agents/sac.py,
        agents/td3.py)."""

    def update(
        self, obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor
    ) -> torch.Tensor | None:
        """One auxiliary training step; its loss per seed `[K]`, or None without one."""
        return None

    def learn(self, batch: Any) -> torch.Tensor | None:
        """One auxiliary step on a sampled batch `[K, B, ...]` (a replay/buffer.py `Batch`:
        nets/ does not import replay/), its loss per seed or None."""
        return self.update(batch.obs, batch.act, batch.next_obs)

    def heldout_loss(
        self, obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor
    ) -> torch.Tensor | None:
        return None

    def heldout(self, batch: Any) -> torch.Tensor | None:
        """The loss on a batch of held-out transitions `[K, B, ...]` (single steps: the
        held-out buffer keeps no streams), per seed, without training."""
        return self.heldout_loss(batch.obs, batch.act, batch.next_obs)

    def optimizers(self) -> dict[str, object]:
        return {}

    def acting_state(self) -> dict[str, torch.Tensor]:
        """The tensors that produce the agent's features when acting elsewhere (Ray
        collectors); keys as in `state_dict`."""
        return self.state_dict()

    def reset_parameters(self, generators: list[torch.Generator]) -> None:
        """Initialise the trained networks, seed k's from generators[k]."""

    def build_optimizer(self) -> None:
        """Create optimizers once the parameters live on their device."""


class RawFeatures(FeatureLearner):
    """No representation learning: z_s = s, z_sa = [s, a]."""

    @classmethod
    def from_config(cls, cfg: Any, obs_dim: int, act_dim: int, seeds: int = 1) -> RawFeatures:
        return cls(obs_dim, act_dim)

    def __init__(self, obs_dim: int, act_dim: int) -> None:
        super().__init__()
        self.s_dim = obs_dim
        self.sa_dim = obs_dim + act_dim

    def state(self, obs: torch.Tensor) -> torch.Tensor:
        return obs

    def state_action(self, z_s: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        return torch.cat([z_s, act], dim=-1)
