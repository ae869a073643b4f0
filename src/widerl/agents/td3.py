"""TD3 (Fujimoto et al. 2018): clipped double Q, target policy smoothing, delayed policy
updates; batch 256 as in this paper (A.4)."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from widerl.agents.base import Agent, adam_step, float_buffers, make_adam
from widerl.nets import manual
from widerl.nets.heads import DeterministicActor
from widerl.replay import Batch


class TD3(Agent):
    def _build_networks(self) -> None:
        self.actor = DeterministicActor(self.body(self.features.s_dim), self.act_dim)
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.metric_names = ("critic_loss", "q_mean", "actor_loss")

    def _build_optimizers(self) -> None:
        self.actor_params = list(self.actor.parameters())
        self.actor_opt = make_adam(self.actor_params, self.cfg.lr, self.device)
        # Targets of actor and critics move together, every `policy_delay` updates.
        self._target_params = self._critic_target_params + list(self.actor_target.parameters())
        self._online_params = self.critic_params + self.actor_params
        self._target_stats = self._critic_target_stats + float_buffers(self.actor_target)
        self._online_stats = self._critic_stats + float_buffers(self.actor)
        self._last_actor_loss = torch.zeros((), device=self.device)

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"critic": self.critic_opt, "actor": self.actor_opt}

    def _act(self, z_s: torch.Tensor, deterministic: bool) -> torch.Tensor:
        a = self.actor(z_s)
        if deterministic:
            return a
        return (a + self.cfg.expl_noise * torch.randn_like(a)).clamp(-1.0, 1.0)

    def current_td_target(self, batch: Batch) -> torch.Tensor:
        return self.td_target(batch)

    @torch.no_grad()
    def td_target(self, batch: Batch) -> torch.Tensor:
        """r + gamma * (1 - terminated) * min target Q(s', pi'(s') + clipped noise) (TD3 Eq. 15,
        in the normalised action space); a time-limit truncation still bootstraps."""
        c = self.cfg
        z_s_next = self.features.state(batch.next_obs)
        noise = (torch.randn_like(batch.act) * c.policy_noise).clamp(-c.noise_clip, c.noise_clip)
        if self.fast_path:
            a_next = self._actor_forward(self.actor_target, z_s_next)[0]
            a_next = (a_next + noise).clamp(-1.0, 1.0)
            q_next = self.min_target_q(self.features.state_action(z_s_next, a_next))
        else:
            a_next = (self.actor_target(z_s_next) + noise).clamp(-1.0, 1.0)
            q_next = self.min_q(self.critics_target, self.features.state_action(z_s_next, a_next))
        return batch.rew + c.gamma * (1.0 - batch.term) * q_next

    def _update(self, batch: Batch) -> dict[str, torch.Tensor]:
        c = self.cfg
        with torch.no_grad():
            z_s = self.features.state(batch.obs)
        target_q = self.td_target(batch)
        if self.fast_path:
            metrics = self.fast_critic_step(batch, target_q)
        else:
            metrics = self.critic_step(batch, z_s, target_q)

        self.n_updates += 1
        if self.n_updates % c.policy_delay == 0:  # delayed policy update (TD3 Sec. 5.2)
            step = self._fast_actor_step if self.fast_path else self._autograd_actor_step
            self._last_actor_loss = step(z_s)
            self.soft_update(self._target_params, self._online_params, c.tau)
            self.copy_stats(self._target_stats, self._online_stats)
        metrics["actor_loss"] = self._last_actor_loss
        return metrics

    def _autograd_actor_step(self, z_s: torch.Tensor) -> torch.Tensor:
        """Deterministic policy gradient through Q_1 (TD3 Eq. 6), critics frozen."""
        self.freeze_critics(True)
        actor_loss = -self.critics[0](self.features.state_action(z_s, self.actor(z_s))).mean()
        adam_step(self.actor_opt, list(torch.autograd.grad(actor_loss, self.actor_params)))
        self.freeze_critics(False)
        return actor_loss.detach()

    def _extra_state(self) -> dict:
        # Reported by the updates between two delayed actor steps; a resumed run's first
        # rows need it.
        return {"last_actor_loss": self._last_actor_loss.detach().cpu()}

    def _load_extra_state(self, state: dict) -> None:
        if "last_actor_loss" in state:
            self._last_actor_loss = state["last_actor_loss"].to(self.device)

    def _actor_forward(
        self, actor: DeterministicActor, z_s: torch.Tensor
    ) -> tuple[torch.Tensor, manual.Tape, torch.Tensor]:
        """tanh(Linear(body(z_s))), the body's tape and output, without autograd."""
        h, tape = manual.forward(manual.linears(actor.body), self.cfg.activation, z_s)
        return torch.tanh(F.linear(h, actor.mean.weight, actor.mean.bias)), tape, h

    def _fast_actor_step(self, z_s: torch.Tensor) -> torch.Tensor:
        """`_autograd_actor_step` with the backward written out (nets/manual.py)."""
        a, tape, h = self._actor_forward(self.actor, z_s)
        q, tape_q, phi = self.critic_forward(self.critics[0], self.features.state_action(z_s, a))
        actor_loss = -q.mean()
        g_q = torch.full_like(q, -1.0 / q.shape[0])  # d (-mean Q) / dQ
        g_a = self.critic_backward(self.critics[0], tape_q, phi, g_q, False)[1]
        g_pre = torch.ops.aten.tanh_backward(g_a, a)
        layers = manual.linears(self.actor.body)
        grads, _ = manual.backward(
            layers, self.cfg.activation, tape, h, g_pre.mm(self.actor.mean.weight)
        )
        adam_step(self.actor_opt, grads + [g_pre.t().mm(h), g_pre.sum(0)])
        return actor_loss
