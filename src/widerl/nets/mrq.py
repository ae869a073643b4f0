"""MR.Q's encoder (Fujimoto et al. 2025, ICLR, "Towards general-purpose model-free RL",
Sec. 4.1): state and state-action embeddings trained with model-based losses over a short
horizon, on which value and policy then learn model-free.

    z_s   = ELU(LN(f(s)))                         f: (Linear -> LN -> ELU) x 2 -> Linear
    z_a   = ELU(W_a a)
    z_sa  = g([z_s, z_a])                         g: the same shape as f
    [d, z_s', r] = W_m z_sa                       done, next embedding, reward logits

Unrolled from the sampled state over H steps (H = 5) of its env's stream, feeding each step's
predicted z_s' back in (Eq. 5-8):

    L = sum_h m_h ( ||z_s'_h - z~_s(s_{h+1})||^2 + 0.1 CE(r_h, twohot(r_{t+h}))
                    + 0.1 (d_h - terminated_{t+h})^2 )

with z~_s the fixed encoder (nets/latent.py, refreshed every 250 updates), m_h masking the
steps after a termination or an episode's end (replay/storage.sequence), and the rewards
encoded two-hot on 65 bins spaced evenly in symlog space over [-10, 10] (`TwoHot`).

The agent sees z_s (the policy's input in MR.Q) and z_sa = [z_s, z_sa] (MR.Q's value sees
z_sa alone; widerl's seam begins every z_sa with z_s, nets/features.py).

What differs (decisions): MR.Q trains the encoder in bursts of 250 updates at each target
refresh; here one encoder update joins every learning step (the same number of updates). The
termination loss is always on (MR.Q skips it on envs that never terminate, where its target is
always 0). LayerNorm has an affine map here (MR.Q's has none). MR.Q's value and policy heads,
its reward scale (mean |r|), target networks refreshed every 250 updates and value gradient
clipping are not part of the encoder: widerl's TD3 learns on the features (README table).
Published values (the Hyperparameters class of the authors' release, facebookresearch/MRQ):
zs_dim 512, zsa_dim 512, za_dim 256, enc_hdim 512, enc_lr 1e-4, enc_wd 1e-4, enc_horizon 5,
dyn/reward/done weights 1/0.1/0.1, num_bins 65 on [-10, 10], target_update_freq 250.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from widerl.nets.ensemble import EnsembleLinear
from widerl.nets.latent import EncoderMLP, LatentLearner, encoder_settings
from widerl.nets.norms import EnsembleLayerNorm

# Used where the --encoder-* flags are left at 0 (the module docstring's sources).
MRQ_ENCODER = {"units": 512, "dim": 512, "lr": 1e-4, "refresh_every": 250, "horizon": 5}
ZA_DIM = 256
WEIGHT_DECAY = 1e-4
DYN_WEIGHT, REWARD_WEIGHT, DONE_WEIGHT = 1.0, 0.1, 0.1
REWARD_BINS, REWARD_LOW, REWARD_HIGH = 65, -10.0, 10.0


def symexp(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(x) * torch.expm1(x.abs())


class TwoHot(nn.Module):
    """Rewards as two-hot targets on bins spaced evenly in symlog space: a value between two
    bins puts weight on both, in proportion to its closeness, so the weights' expectation over
    the bins is the value itself (clipped to the outer bins)."""

    def __init__(self, bins: int = REWARD_BINS, low: float = REWARD_LOW, high: float = REWARD_HIGH):
        super().__init__()
        self.register_buffer("bins", symexp(torch.linspace(low, high, bins)), persistent=False)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """`[...]` -> `[..., bins]`."""
        b = self.bins
        x = x.clamp(b[0], b[-1])
        lower = (torch.searchsorted(b, x.contiguous(), right=True) - 1).clamp(0, len(b) - 2)
        lo, hi = b[lower], b[lower + 1]
        w = ((x - lo) / (hi - lo)).unsqueeze(-1)
        one = F.one_hot(lower, len(b)).to(x.dtype)
        return one * (1 - w) + F.one_hot(lower + 1, len(b)).to(x.dtype) * w

    def decode(self, logits: torch.Tensor) -> torch.Tensor:
        """The expectation of the softmax of `logits` over the bins."""
        return (logits.softmax(-1) * self.bins).sum(-1)

    def cross_entropy(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return -(self.encode(x) * logits.log_softmax(-1)).sum(-1)


class MRQNets(nn.Module):
    def __init__(self, members: int, obs_dim: int, act_dim: int, hidden: int, dim: int) -> None:
        super().__init__()
        self.f = EncoderMLP(members, obs_dim, hidden, dim, layernorm=True)
        self.f_norm = EnsembleLayerNorm(members, dim)
        self.za = EnsembleLinear(members, act_dim, ZA_DIM)
        self.g = EncoderMLP(members, dim + ZA_DIM, hidden, dim, layernorm=True)
        self.model = EnsembleLinear(members, dim, 1 + dim + REWARD_BINS)
        self.dim = dim

    def zs(self, obs: torch.Tensor) -> torch.Tensor:
        return F.elu(self.f_norm(self.f(obs)))

    def zsa(self, zs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        return self.g(torch.cat([zs, F.elu(self.za(act))], dim=-1))

    def predict(
        self, zs: torch.Tensor, act: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Termination logit `[..]`, next z_s `[.., dim]`, reward logits `[.., bins]`."""
        out = self.model(self.zsa(zs, act))
        return out[..., 0], out[..., 1 : 1 + self.dim], out[..., 1 + self.dim :]


class MRQEncoder(LatentLearner):
    @classmethod
    def from_config(cls, cfg: Any, obs_dim: int, act_dim: int, seeds: int = 1) -> MRQEncoder:
        return cls(obs_dim, act_dim, **encoder_settings(cfg, MRQ_ENCODER), seeds=seeds)

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        units: int = 512,
        dim: int = 512,
        lr: float = 1e-4,
        refresh_every: int = 250,
        horizon: int = 5,
        seeds: int = 1,
    ) -> None:
        super().__init__()
        self.horizon = horizon
        self.s_dim, self.sa_dim = dim, 2 * dim
        self.two_hot = TwoHot()
        self.setup(MRQNets(seeds, obs_dim, act_dim, units, dim), lr, WEIGHT_DECAY, refresh_every)

    # --- features for the agent (the fixed copy) -------------------------------------------
    def state(self, obs: torch.Tensor) -> torch.Tensor:
        return self.fixed.zs(obs)

    def state_action(self, z_s: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        return torch.cat([z_s, self.fixed.zsa(z_s, act)], dim=-1)

    # --- the encoder's loss ---------------------------------------------------------------
    def model_loss(self, obs: torch.Tensor, seq: Any) -> torch.Tensor:
        """The unrolled loss (module docstring) per seed `[K]`: obs `[K, B, obs_dim]`, `seq`
        the H steps from it (replay/buffer.py `Steps`, `[K, B, H, ...]`)."""
        net = self.online
        k, b, steps = seq.next_obs.shape[:3]
        # z~_s(s_{t+h+1}) `[K, B, H, dim]`, all steps in one pass of the fixed encoder
        targets = self.fixed.zs(seq.next_obs.flatten(1, 2)).view(k, b, steps, -1).detach()
        zs = net.zs(obs)
        total = obs.new_zeros(obs.shape[0])
        for h in range(seq.act.shape[2]):
            done, zs, reward = net.predict(zs, seq.act[:, :, h])
            m = seq.mask[:, :, h]
            dyn = (zs - targets[:, :, h]).square().mean(-1)
            rew = self.two_hot.cross_entropy(reward, seq.rew[:, :, h])
            term = (done - seq.term[:, :, h]).square()
            per = DYN_WEIGHT * dyn + REWARD_WEIGHT * rew + DONE_WEIGHT * term
            total = total + (per * m).mean(1)
        return total

    def learn(self, batch: Any) -> torch.Tensor:
        if batch.seq is None:
            raise ValueError("MR.Q's encoder learns from sequences: build the replay with horizon")
        return self.step_on(self.model_loss, batch.obs, batch.seq)

    def update(self, obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor) -> None:
        """Refused: the seam's (s, a, s') step cannot train this encoder, whose losses read
        rewards, terminations and the steps after s' (`learn` gets them with the batch)."""
        raise TypeError("MR.Q's encoder needs rewards and steps: call learn(batch)")

    @torch.no_grad()
    def heldout(self, batch: Any) -> torch.Tensor:
        """The loss over one step (held-out transitions are kept without their streams)."""
        one = _one_step(batch)
        return self.model_loss(batch.obs, one)


def _one_step(batch: Any) -> Any:
    """A batch's single steps as a horizon of 1, in the shape of replay/buffer.py `Steps`."""
    return SimpleNamespace(
        act=batch.act.unsqueeze(2),
        rew=batch.rew.unsqueeze(2),
        next_obs=batch.next_obs.unsqueeze(2),
        term=batch.term.unsqueeze(2),
        mask=torch.ones_like(batch.rew).unsqueeze(2),
    )
