"""TD3 (Fujimoto et al. 2018): clipped double Q, target policy smoothing, delayed policy
updates; batch 256 as in this paper (A.4)."""

from __future__ import annotations

import copy

import torch

from widerl.agents import td
from widerl.agents.base import Agent, Noise, float_buffers, matching
from widerl.nets.actors_critics import DeterministicActor
from widerl.nets.autodiff import Differentiable
from widerl.nets.ensemble import constant_prefix
from widerl.nets.optim import Adam, soft_update
from widerl.replay.buffer import Batch


class TD3(Agent):
    metric_names = ("critic_loss", "q_mean", "actor_loss")
    delays_actor = True  # delayed policy updates (TD3 Sec. 5.2)

    def _build_networks(self) -> None:
        self.actor = DeterministicActor(self.actor_body(self.k, self.features.s_dim), self.act_dim)

    def _build_targets(self) -> None:
        self.actor_target = copy.deepcopy(self.actor)

    def _build_optimizers(self) -> None:
        self.actor_params = Differentiable(self, self._names("actor."))
        self.actor_opt = self.adam(self.actor_params.params)
        self._actor_target_params = matching(self.actor_target, self.actor_params, "actor.")
        self._actor_stats = float_buffers(self.actor), float_buffers(self.actor_target)
        # The last actor loss, repeated in the metrics of the updates that skip the actor.
        self._last_actor_loss = torch.zeros(self.k, device=self.device)

    def optimizers(self) -> dict[str, Adam]:
        return {"critic": self.critic_opt, "actor": self.actor_opt}

    def draw_noise(self, batch_size: int, gens: list[torch.Generator] | None = None) -> Noise:
        """Target policy smoothing noise (TD3 Eq. 14), before scaling and clipping."""
        gens = gens or self.update_gens
        noise = {"smooth": self._normal(gens, (batch_size, self.act_dim))}
        pair = td.random_pair(self.cfg.critics, gens)
        if pair is not None:
            noise["pair"] = pair
        return noise

    def _target_state(self) -> list[tuple[str, torch.nn.Module | dict[str, torch.Tensor]]]:
        return [("actor_target.", self.actor_target)]

    def _act(
        self, z_s: torch.Tensor, noise: torch.Tensor | None, noise_scale: torch.Tensor | None
    ) -> torch.Tensor:
        a = self.actor(z_s)
        if noise is None:
            return a
        scale = self.cfg.expl_noise if noise_scale is None else noise_scale
        return (a + scale * noise).clamp(-1.0, 1.0)

    @torch.no_grad()
    def td_target(self, batch: Batch, z_s_next: torch.Tensor, noise: Noise) -> torch.Tensor:
        """r + gamma * (1 - terminated) * min target Q(s', pi'(s') + clipped noise) (TD3 Eq. 15,
        in the normalised action space); a time-limit truncation still bootstraps."""
        c = self.cfg
        eps = (noise["smooth"] * c.policy_noise).clamp(-c.noise_clip, c.noise_clip)
        a_next = (self.actor_target(z_s_next) + eps).clamp(-1.0, 1.0)
        next_out = self.critics_target.outputs(self.features.state_action(z_s_next, a_next))
        return td.bootstrap(self.critics.head, self.cfg.gamma, batch, next_out, noise.get("pair"))

    def actor_loss(self, z_s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Deterministic policy gradient through the first critic (TD3 Eq. 6): J = -Q_1(s,
        pi(s)), per seed, summed over seeds; only the actor is differentiated."""
        z_sa = self.features.state_action(z_s, self.actor(z_s))
        q = self.critics.first(z_sa, constant_prefix(z_s, 0))  # z_sa begins with z_s, constant
        per_seed = -q.mean(-1)
        return per_seed.sum(), per_seed.detach()

    def _extra_state(self) -> dict[str, torch.Tensor]:
        # Reported by the updates between two delayed actor steps; a resumed run's first
        # rows need it.
        loss = self._last_actor_loss.detach()
        return {"last_actor_loss": loss if loss.is_meta else loss.cpu()}  # meta: members.Layout

    def _load_extra_state(self, state: dict[str, torch.Tensor]) -> None:
        if "last_actor_loss" in state:
            self._last_actor_loss.copy_(state["last_actor_loss"].reshape(self.k))

    def _reset_extra(self) -> None:
        self.actor_target.load_state_dict(self.actor.state_dict())

    def _update(self, batch: Batch, noise: Noise, actor_step: bool) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            z_s = self.features.state(batch.obs)
            target = self.td_target(batch, self.features.state(batch.next_obs), noise)
        metrics = self.critic_step(batch, z_s, target)
        if actor_step:
            grads, actor_loss = self.actor_params.grad(self.actor_loss, z_s)
            self.actor_opt.step(grads)
            self._last_actor_loss.copy_(actor_loss)
            self.update_critic_targets()
            soft_update(self._actor_target_params, self.actor_params.params, self.cfg.tau)
            with torch.no_grad():  # BatchNorm statistics, as for the critics' targets
                for online, target in zip(*self._actor_stats, strict=True):
                    target.copy_(online)
        metrics["actor_loss"] = self._last_actor_loss.clone()
        return metrics
