"""Soft Actor-Critic (Haarnoja et al. 2018, "SAC: Algorithms and Applications" variant):
clipped double Q over the critic ensemble, tanh-Gaussian policy, automatic entropy tuning."""

from __future__ import annotations

import math

import torch
from torch import nn

from widerl.agents import td
from widerl.agents.base import Agent, Noise
from widerl.nets.actors_critics import GaussianActor
from widerl.nets.autodiff import Differentiable
from widerl.nets.ensemble import constant_prefix
from widerl.nets.optim import Adam
from widerl.replay.buffer import Batch


class SAC(Agent):
    metric_names = ("critic_loss", "q_mean", "actor_loss", "alpha", "entropy", "alpha_loss")

    def _build_networks(self) -> None:
        self.actor = GaussianActor(self.actor_body(self.k, self.features.s_dim), self.act_dim)
        self.log_alpha = nn.Parameter(torch.full((self.k,), math.log(self.cfg.alpha_init)))
        # Target entropy -|A| (SAC v2, Sec. 5); SimBa and BRO use -|A| / 2.
        self.target_entropy = -self.cfg.entropy_target_scale * float(self.act_dim)
        if not self.cfg.autotune:
            self.metric_names = self.metric_names[:-1]

    def _build_optimizers(self) -> None:
        self.actor_params = Differentiable(self, self._names("actor."))
        self.actor_opt = self.adam(self.actor_params.params)
        self.alpha_opt = Adam([self.log_alpha], self.cfg.lr)

    def optimizers(self) -> dict[str, Adam]:
        return {"critic": self.critic_opt, "actor": self.actor_opt, "alpha": self.alpha_opt}

    def draw_noise(self, batch_size: int, gens: list[torch.Generator] | None = None) -> Noise:
        """eps of a' ~ pi(.|s') for the TD target and of a ~ pi(.|s) for the actor loss."""
        gens = gens or self.update_gens
        shape = (batch_size, self.act_dim)
        noise = {"next": self._normal(gens, shape), "now": self._normal(gens, shape)}
        pair = td.random_pair(self.cfg.critics, gens)
        if pair is not None:
            noise["pair"] = pair
        return noise

    def _target_state(self) -> list[tuple[str, nn.Module | dict[str, torch.Tensor]]]:
        return [("", {"log_alpha": self.log_alpha})]

    def _act(
        self, z_s: torch.Tensor, noise: torch.Tensor | None, noise_scale: torch.Tensor | None
    ) -> torch.Tensor:  # SAC explores with its own policy's noise: no scale applies
        return self.actor.act(z_s, noise)

    def alpha(self) -> torch.Tensor:
        return self.log_alpha.detach().exp()

    @torch.no_grad()
    def td_target(self, batch: Batch, z_s_next: torch.Tensor, noise: Noise) -> torch.Tensor:
        """r + gamma * (1 - terminated) * (min target Q(s', a') - alpha log pi(a'|s')), a' ~
        pi(.|s') (SAC Eq. 3); bootstrapping stops only on termination, not on a time limit.
        With a distributional head, the target critic's distribution moved the same way."""
        a_next, logp_next = self.actor.sample(z_s_next, noise["next"])
        next_out = self.critics_target.outputs(self.features.state_action(z_s_next, a_next))
        return td.bootstrap(
            self.critics.head,
            self.cfg.gamma,
            batch,
            next_out,
            noise.get("pair"),
            self.alpha()[:, None] * logp_next,
        )

    def actor_loss(
        self, z_s: torch.Tensor, eps: torch.Tensor, alpha: torch.Tensor
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """SAC Eq. 7: J_pi = E[alpha log pi(a|s) - Q(s, a)], a reparameterised; per seed,
        summed over seeds. Only the actor's parameters are differentiated."""
        a, logp = self.actor.sample(z_s, eps)
        # z_sa begins with z_s, a constant here: the critics skip its columns' gradient.
        z_sa = self.features.state_action(z_s, a)
        q = td.policy_value(self.critics(z_sa, constant_prefix(z_s, 0)))
        per_seed = (alpha[:, None] * logp - q).mean(-1)
        return per_seed.sum(), (per_seed.detach(), logp.detach())

    def _reset_extra(self) -> None:
        self.log_alpha.fill_(math.log(self.cfg.alpha_init))

    def _update(self, batch: Batch, noise: Noise, actor_step: bool) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            alpha = self.alpha()
            z_s = self.features.state(batch.obs)
            target = self.td_target(batch, self.features.state(batch.next_obs), noise)
        metrics = self.critic_step(batch, z_s, target)

        grads, (actor_loss, logp) = self.actor_params.grad(
            self.actor_loss, z_s, noise["now"], alpha
        )
        self.actor_opt.step(grads)
        metrics.update(actor_loss=actor_loss, alpha=alpha, entropy=-logp.mean(-1))

        if self.cfg.autotune:
            # SAC v2 Eq. 18, J(alpha) = E[-log alpha (log pi + target entropy)], whose gradient
            # in log alpha is written out: it saves a backward pass for K scalars.
            grad = -(logp + self.target_entropy).mean(-1)
            metrics["alpha_loss"] = self.log_alpha.detach() * grad
            self.alpha_opt.step([grad])
        self.update_critic_targets()
        return metrics
