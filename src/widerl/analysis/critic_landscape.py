"""The loss the paper draws (A.3): both critics' TD loss on stored transitions, with targets
computed once from the trained agent and then held fixed (Eq. 2-3), perturbed along two
filter-normalized directions of the critics' parameters."""

from __future__ import annotations

from collections.abc import Callable

import torch

from widerl.agents.base import Agent
from widerl.analysis.landscape import filter_normalized_direction, loss_surface
from widerl.nets.ensemble import EnsembleLinear
from widerl.replay.buffer import Batch


@torch.no_grad()
def fixed_td_targets(agent: Agent, batch: Batch, seed: int) -> torch.Tensor:
    """Q-hat(s, a) = r + gamma * E[V(s')] of the trained agent (Eq. 3), through the agent's own
    td_target. SAC samples a' ~ pi(s'): seeded here, without touching any random stream."""
    with agent.evaluating():
        return agent.current_td_target(batch, seed)


def critic_td_loss(agent: Agent, batch: Batch, target: torch.Tensor) -> Callable[[], torch.Tensor]:
    """J_Q of Eq. 2 with the run's critic loss (0.5 delta^2 or Huber, A.1; the cross-entropy
    of a categorical head), summed over the critics and averaged over the batch, as the
    critic step minimises it (uniform weights). Only the critics move along the directions,
    so z_sa is computed once. Call it with the agent in eval mode (see critic_landscape). A
    single-seed batch `[B, ...]`, and its target as `current_td_target` gives it."""
    with torch.no_grad(), agent.evaluating():
        obs, act = batch.obs.unsqueeze(0), batch.act.unsqueeze(0)
        z_sa = agent.features.state_action(agent.features.state(obs), act)
    head = agent.critics.head
    y = target.unsqueeze(0)  # K = 1

    def loss() -> torch.Tensor:
        per_sample = head.loss(agent.critics.outputs(z_sa), y)  # [1, N, B]
        return per_sample.sum(1).mean()

    return loss


def critic_parameters(agent: Agent) -> tuple[list[torch.Tensor], list[str]]:
    """The critics' parameters and their filter layouts: Linear weights get directions,
    biases and norm parameters none (Li et al. 2018)."""
    params, layouts = [], []
    for module in agent.critics.modules():
        for name, p in module.named_parameters(recurse=False):
            params.append(p)
            layouts.append(
                "ensemble" if isinstance(module, EnsembleLinear) and name == "weight" else "none"
            )
    return params, layouts


def critic_landscape(
    agent: Agent,
    batch: Batch,
    span: float,
    grid: int,
    seed: int,
    on_point: Callable[[], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(alphas, betas, losses) of the critics' TD loss around the trained weights. BatchNorm
    (if any) uses its running statistics, so the loss depends on the weights alone."""
    target = fixed_td_targets(agent, batch, seed)
    loss = critic_td_loss(agent, batch, target)
    params, layouts = critic_parameters(agent)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    d1 = filter_normalized_direction(params, generator, layouts)
    d2 = filter_normalized_direction(params, generator, layouts)
    with agent.evaluating():
        return loss_surface(params, loss, d1, d2, span, grid, on_point)
