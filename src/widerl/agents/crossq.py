"""CrossQ (Bhatt et al. 2024, "CrossQ: Batch Normalization in Deep RL for Greater Sample
Efficiency and Simplicity"): SAC without target networks, stabilised by Batch
Renormalization in critic and policy (nets/bodies/renorm_mlp.py).

- No target critics (Sec. 3.1): the TD target bootstraps from the online critics.
- One joint forward (Sec. 3.2): (s, a) and (s', a') pass through the critics as one batch
  of 2B, so their Batch Renormalization statistics come from both halves alike; the target
  half is detached. a' ~ pi(.|s') comes from the policy in eval mode.
- The policy step evaluates the critics in eval mode (running statistics), the policy
  itself in train mode; it and the temperature move every --policy-delay-th update (3).
- Adam beta1 0.5, lr 1e-3 (ALGO_DEFAULTS); critics 2048 wide and policy 256 wide in the
  `crossq` preset.
"""

from __future__ import annotations

import torch

from widerl.agents import td
from widerl.agents.base import Noise, eval_mode
from widerl.agents.sac import SAC
from widerl.nets.bodies.renorm_mlp import RenormMLP
from widerl.replay.buffer import Batch


class CrossQ(SAC):
    critic_targets = False
    delays_actor = True  # the actor steps every --policy-delay updates (CrossQ's default 3)

    def body(self, members: int, in_dim: int, units: int, layers: int) -> RenormMLP:
        body = RenormMLP(members, in_dim, units, layers, activation=self.cfg.activation)
        body.set_warmup(self.cfg.renorm_warmup)
        self.projected(body)
        return body

    def _build_optimizers(self) -> None:
        super()._build_optimizers()
        # The policy-step metrics, repeated by the updates between two policy steps.
        names = [n for n in ("actor_loss", "entropy", "alpha_loss") if n in self.metric_names]
        self._last = {n: torch.zeros(self.k, device=self.device) for n in names}

    @torch.no_grad()
    def td_target(self, batch: Batch, z_s_next: torch.Tensor, noise: Noise) -> torch.Tensor:
        """SAC's target from the online critics (there are no targets), a' from the policy in
        eval mode; what td_abs and the loss landscapes use outside the update, where the
        critics run in eval mode too."""
        with eval_mode(self.actor):
            a_next, logp_next = self.actor.sample(z_s_next, noise["next"])
        next_out = self.critics.outputs(self.features.state_action(z_s_next, a_next))
        return td.bootstrap(
            self.critics.head,
            self.cfg.gamma,
            batch,
            next_out,
            noise.get("pair"),
            self.alpha()[:, None] * logp_next,
        )

    def joint_critic_loss(
        self,
        batch: Batch,
        z_sa: torch.Tensor,
        z_sa_next: torch.Tensor,
        bonus: torch.Tensor,
        pair: torch.Tensor | None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """J_Q with (s, a) and (s', a') in one forward pass of 2B samples; the target is
        built from the second half, detached."""
        b = z_sa.shape[1]
        out = self.critics.outputs(torch.cat([z_sa, z_sa_next], dim=1))  # [K, N, 2B, D]
        target = td.bootstrap(
            self.critics.head, self.cfg.gamma, batch, out[:, :, b:].detach(), pair, bonus
        )
        return td.critic_loss(self.critics.head, batch, out[:, :, :b], target)

    def actor_loss(
        self, z_s: torch.Tensor, eps: torch.Tensor, alpha: torch.Tensor
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """SAC's J_pi with the critics on their running statistics (CrossQ's policy step)."""
        with eval_mode(self.critics):
            return super().actor_loss(z_s, eps, alpha)

    def _update(self, batch: Batch, noise: Noise, actor_step: bool) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            alpha = self.alpha()
            z_s = self.features.state(batch.obs)
            z_s_next = self.features.state(batch.next_obs)
            with eval_mode(self.actor):
                a_next, logp_next = self.actor.sample(z_s_next, noise["next"])
            z_sa = self.features.state_action(z_s, batch.act)
            z_sa_next = self.features.state_action(z_s_next, a_next)
        grads, (loss, q_mean, td_abs) = self.critic_params.grad(
            self.joint_critic_loss, batch, z_sa, z_sa_next, alpha[:, None] * logp_next,
            noise.get("pair"),
        )  # fmt: skip
        self.critic_opt.step(grads)
        metrics = {"critic_loss": loss, "q_mean": q_mean, "td_abs": td_abs, "alpha": alpha}
        if actor_step:
            grads, (actor_loss, logp) = self.actor_params.grad(
                self.actor_loss, z_s, noise["now"], alpha
            )
            self.actor_opt.step(grads)
            self._last["actor_loss"].copy_(actor_loss)
            self._last["entropy"].copy_(-logp.mean(-1))
            if self.cfg.autotune:
                grad = -(logp + self.target_entropy).mean(-1)  # SAC v2 Eq. 18, as in SAC
                self._last["alpha_loss"].copy_(self.log_alpha.detach() * grad)
                self.alpha_opt.step([grad])
        metrics.update({k: v.clone() for k, v in self._last.items()})
        return metrics

    def _extra_state(self) -> dict[str, torch.Tensor]:
        # Meta tensors (members.Layout's shapes-only agent) have no data to copy.
        last = {k: v.detach() for k, v in self._last.items()}
        return {f"last_{k}": v if v.is_meta else v.cpu() for k, v in last.items()}

    def _load_extra_state(self, state: dict[str, torch.Tensor]) -> None:
        for k, v in self._last.items():
            if f"last_{k}" in state:
                v.copy_(state[f"last_{k}"].reshape(self.k))
