"""TD3 (Fujimoto et al. 2018): clipped double Q, target policy smoothing, delayed policy
updates; batch 256 as in this paper (A.4)."""

from __future__ import annotations

import copy

import torch

from widerl.agents.base import Agent, make_adam
from widerl.nets.heads import DeterministicActor
from widerl.replay import Batch


class TD3(Agent):
    def _build_networks(self) -> None:
        self.actor = DeterministicActor(self.body(self.features.s_dim), self.act_dim)
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.metric_names = ("critic_loss", "q_mean", "actor_loss")

    def _build_optimizers(self) -> None:
        self.actor_opt = make_adam(self.actor.parameters(), self.cfg.lr, self.device)
        # Targets of actor and critics move together, every `policy_delay` updates.
        self._target_params = self._critic_target_params + list(self.actor_target.parameters())
        self._online_params = self.critic_params + list(self.actor.parameters())
        self._last_actor_loss = torch.zeros((), device=self.device)

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"critic": self.critic_opt, "actor": self.actor_opt}

    def _act(self, z_s: torch.Tensor, deterministic: bool) -> torch.Tensor:
        a = self.actor(z_s)
        if deterministic:
            return a
        return (a + self.cfg.expl_noise * torch.randn_like(a)).clamp(-1.0, 1.0)

    @torch.no_grad()
    def td_target(self, batch: Batch) -> torch.Tensor:
        """r + gamma * (1 - terminated) * min target Q(s', pi'(s') + clipped noise) (TD3 Eq. 15,
        in the normalised action space); a time-limit truncation still bootstraps."""
        c = self.cfg
        z_s_next = self.features.state(batch.next_obs)
        noise = (torch.randn_like(batch.act) * c.policy_noise).clamp(-c.noise_clip, c.noise_clip)
        a_next = (self.actor_target(z_s_next) + noise).clamp(-1.0, 1.0)
        q_next = self.min_q(self.critics_target, self.features.state_action(z_s_next, a_next))
        return batch.rew + c.gamma * (1.0 - batch.term) * q_next

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        c = self.cfg
        with torch.no_grad():
            z_s = self.features.state(batch.obs)
        target_q = self.td_target(batch)
        metrics = self.critic_step(batch, z_s, target_q)

        self.n_updates += 1
        if self.n_updates % c.policy_delay == 0:
            self.freeze_critics(True)
            actor_loss = -self.critics[0](self.features.state_action(z_s, self.actor(z_s))).mean()
            self.actor_opt.zero_grad(set_to_none=True)
            actor_loss.backward()
            self.actor_opt.step()
            self.freeze_critics(False)
            self.soft_update(self._target_params, self._online_params, c.tau)
            self._last_actor_loss = actor_loss.detach()
        metrics["actor_loss"] = self._last_actor_loss
        return metrics
