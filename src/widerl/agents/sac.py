"""Soft Actor-Critic (Haarnoja et al. 2018, "SAC: Algorithms and Applications" variant):
twin critics with clipped double Q, tanh-Gaussian policy, automatic entropy tuning."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from widerl.agents.base import Agent, adam_step, make_adam, minimum_backward
from widerl.nets import manual
from widerl.nets.heads import LOG_STD_MAX, LOG_STD_MIN, GaussianActor, squashed_sample
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
        self.actor_params = list(self.actor.parameters())
        self.actor_opt = make_adam(self.actor_params, self.cfg.lr, self.device)
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
        return self._bootstrap(batch, q_next, alpha, logp_next)

    def current_td_target(self, batch: Batch) -> torch.Tensor:
        return self.td_target(batch, self.log_alpha.detach().exp())

    def _bootstrap(
        self, batch: Batch, q_next: torch.Tensor, alpha: torch.Tensor, logp_next: torch.Tensor
    ) -> torch.Tensor:
        return batch.rew + self.cfg.gamma * (1.0 - batch.term) * (q_next - alpha * logp_next)

    @torch.no_grad()
    def _alpha_step(self, logp: torch.Tensor, metrics: dict[str, torch.Tensor]) -> None:
        """SAC v2 Eq. 18, J(alpha) = mean(-log_alpha * (log pi + target entropy)); its gradient
        is written out, which saves a backward pass for one scalar."""
        if not self.cfg.autotune:
            return
        grad = -(logp + self.target_entropy).mean()
        metrics["alpha_loss"] = self.log_alpha * grad  # J at the alpha this update used
        adam_step(self.alpha_opt, [grad])

    def _update(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Critic and actor steps on either path, then alpha (Eq. 18), targets, counter."""
        step = self._fast_update if self.fast_path else self._autograd_update
        metrics, logp = step(batch)
        self._alpha_step(logp, metrics)
        self.soft_update(self._critic_target_params, self.critic_params, self.cfg.tau)
        self.copy_stats(self._critic_target_stats, self._critic_stats)
        self.n_updates += 1
        return metrics

    def _autograd_update(self, batch: Batch) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Critic step, then actor step (Eq. 7) against the updated critics, via autograd."""
        alpha = self.log_alpha.detach().exp()
        with torch.no_grad():
            z_s = self.features.state(batch.obs)
        target_q = self.td_target(batch, alpha)
        metrics = self.critic_step(batch, z_s, target_q)

        self.freeze_critics(True)
        a_pi, logp = self.actor.sample(z_s)
        q_pi = self.min_q(self.critics, self.features.state_action(z_s, a_pi))
        actor_loss = (alpha * logp - q_pi).mean()  # SAC Eq. 7
        adam_step(self.actor_opt, list(torch.autograd.grad(actor_loss, self.actor_params)))
        self.freeze_critics(False)

        logp = logp.detach()
        metrics.update(actor_loss=actor_loss.detach(), alpha=alpha, entropy=-logp.mean())
        return metrics, logp

    def _fast_update(self, batch: Batch) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """`_autograd_update` with the backward written out (nets/manual.py): same equations,
        same random draws, fewer ops. Plain MLP bodies on raw states only (see Agent)."""
        c, actor, n = self.cfg, self.actor, batch.obs.shape[0]
        alpha = self.log_alpha.detach().exp()
        # The actor does not change before its own step, so pi(.|s') for the TD target and
        # pi(.|s) for the actor loss come from one forward pass over [s'; s] (2B rows).
        layers = manual.linears(actor.body)
        h, tape = manual.forward(layers, c.activation, torch.cat([batch.next_obs, batch.obs]))
        mean = F.linear(h, actor.mean.weight, actor.mean.bias)
        log_std_raw = F.linear(h, actor.log_std.weight, actor.log_std.bias)
        log_std = log_std_raw.clamp(LOG_STD_MIN, LOG_STD_MAX)
        # Noise in the generic path's order: s' (TD target) first, then s (actor loss).
        eps = torch.cat([torch.randn_like(mean[:n]), torch.randn_like(mean[n:])])
        a, logp, std = squashed_sample(mean, log_std, eps)

        q_next = self.min_target_q(self.features.state_action(batch.next_obs, a[:n]))
        metrics = self.fast_critic_step(batch, self._bootstrap(batch, q_next, alpha, logp[:n]))

        # Actor step, SAC Eq. 7: J = mean(alpha * log pi(a|s) - min_k Q_k(s, a)).
        a, logp, std, eps, h = a[n:], logp[n:], std[n:], eps[n:], h[n:]
        outs = [
            self.critic_forward(critic, self.features.state_action(batch.obs, a))
            for critic in self.critics
        ]
        q1, q2 = outs[0][0], outs[1][0]
        actor_loss = (alpha * logp - torch.minimum(q1, q2).squeeze(-1)).mean()
        g_a = None  # d J / d a through the critic that gives the minimum (weights frozen)
        for critic, share, (_, tape_q, phi) in zip(
            self.critics, minimum_backward(q1, q2), outs, strict=True
        ):
            g = self.critic_backward(critic, tape_q, phi, share * (-1.0 / n), False)[1]
            g_a = g if g_a is None else g_a + g
        # Through squashed_sample: a = tanh(u), u = mean + std * eps, and log pi, whose tanh
        # correction has d/du = 2 tanh(u) and whose Gaussian term has d/d log_std = -1.
        g_logp = alpha / n
        g_u = torch.ops.aten.tanh_backward(g_a, a) + (2.0 * g_logp) * a
        g_log_std = g_u * std * eps - g_logp
        g_log_std.masked_fill_(log_std[n:] != log_std_raw[n:], 0.0)  # clamp's gradient
        g_h = torch.addmm(g_u.mm(actor.mean.weight), g_log_std, actor.log_std.weight)
        grads, _ = manual.backward(layers, c.activation, tape.rows(slice(n, None)), h, g_h)
        grads += [g_u.t().mm(h), g_u.sum(0), g_log_std.t().mm(h), g_log_std.sum(0)]
        adam_step(self.actor_opt, grads)

        metrics.update(actor_loss=actor_loss, alpha=alpha, entropy=-logp.mean())
        return metrics, logp
