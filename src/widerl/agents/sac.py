"""Soft Actor-Critic (Haarnoja et al. 2018, "SAC: Algorithms and Applications" variant):
twin critics with clipped double Q, tanh-Gaussian policy, automatic entropy tuning."""

from __future__ import annotations

import math

import torch
from torch import nn

from widerl.agents.base import Agent, make_adam
from widerl.nets.heads import GaussianActor
from widerl.replay import Batch


class SAC(Agent):
    def _build_networks(self) -> None:
        self.actor = GaussianActor(self.body(self.features.s_dim), self.act_dim)
        self.log_alpha = nn.Parameter(torch.tensor(math.log(self.cfg.alpha_init)))
        # Target entropy -|A| (SAC v2, Sec. 5).
        self.target_entropy = -float(self.act_dim)
        self.metric_names = ("critic_loss", "q_mean", "actor_loss", "alpha", "entropy") + (
            ("alpha_loss",) if self.cfg.autotune else ()
        )

    def _build_optimizers(self) -> None:
        self.actor_opt = make_adam(self.actor.parameters(), self.cfg.lr, self.device)
        self.alpha_opt = make_adam([self.log_alpha], self.cfg.lr, self.device)

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"critic": self.critic_opt, "actor": self.actor_opt, "alpha": self.alpha_opt}

    def _act(self, z_s: torch.Tensor, deterministic: bool) -> torch.Tensor:
        return self.actor.act(z_s, deterministic)

    @torch.no_grad()
    def td_target(self, batch: Batch, alpha: torch.Tensor) -> torch.Tensor:
        """r + gamma * (1 - terminated) * V(s'), V = min target Q - alpha log pi (SAC Eq. 3).
        Bootstrapping stops only on termination; a time-limit truncation is no end."""
        z_s_next = self.features.state(batch.next_obs)
        a_next, logp_next = self.actor.sample(z_s_next)
        q_next = self.min_q(self.critics_target, self.features.state_action(z_s_next, a_next))
        return batch.rew + self.cfg.gamma * (1.0 - batch.term) * (q_next - alpha * logp_next)

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        alpha = self.log_alpha.detach().exp()
        with torch.no_grad():
            z_s = self.features.state(batch.obs)
        target_q = self.td_target(batch, alpha)
        metrics = self.critic_step(batch, z_s, target_q)

        self.freeze_critics(True)
        a_pi, logp = self.actor.sample(z_s)
        q_pi = self.min_q(self.critics, self.features.state_action(z_s, a_pi))
        actor_loss = (alpha * logp - q_pi).mean()  # SAC Eq. 7
        self.actor_opt.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_opt.step()
        self.freeze_critics(False)

        logp = logp.detach()
        if self.cfg.autotune:  # SAC v2 Eq. 18
            alpha_loss = -(self.log_alpha * (logp + self.target_entropy)).mean()
            self.alpha_opt.zero_grad(set_to_none=True)
            alpha_loss.backward()
            self.alpha_opt.step()
            metrics["alpha_loss"] = alpha_loss.detach()

        self.soft_update(self._critic_target_params, self.critic_params, self.cfg.tau)
        self.n_updates += 1
        metrics.update(actor_loss=actor_loss.detach(), alpha=alpha, entropy=-logp.mean())
        return metrics
