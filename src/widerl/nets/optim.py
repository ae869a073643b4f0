"""Adam and AdamW over plain tensors, and the soft target update.

Written with ordinary tensor ops rather than taken from torch.optim for one measured reason:
the learning step is one function that torch.compile traces whole (forward, backward,
optimizer, targets), and torch.optim's `step` breaks that graph; a fused single-graph step
ran 1.1-1.3x faster than the former hand-derived update on this CPU (benchmarks/README.md).
The step count is a tensor, so the same code is capturable in a CUDA graph. The arithmetic is
torch.optim.Adam's (tests check it against torch.optim.Adam / AdamW).

Every op is elementwise, so members stacked along dim 0 (critics, seeds) are optimised
exactly as if each had an optimizer of its own.

The weight projection of SimbaV2 (Lee et al. 2025, Sec. 4.2) and XQC (Palenicek et al. 2026)
is the last part of the step: each projected weight `[E, in, out]` has every output unit's
vector of input weights rescaled to unit l2 norm, `w_j <- w_j / ||w_j||`, after Adam moved it,
so the parameters never leave the unit hypersphere. It is in the step itself, so a compiled
learning step holds it too, and a reset (which redraws and projects, nets/ensemble.py) keeps
it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from widerl.nets.ensemble import project_unit_norm


class Adam:
    """Adam (Kingma & Ba 2015); with `weight_decay` > 0, AdamW's decoupled decay (Loshchilov
    & Hutter 2019): theta <- theta - lr * wd * theta before the Adam step."""

    def __init__(
        self,
        params: Sequence[torch.Tensor],
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        projected: Sequence[bool] = (),
    ) -> None:
        self.params = list(params)
        self.lr, self.betas, self.eps, self.weight_decay = lr, betas, eps, weight_decay
        # Which of `params` are projected back to unit-norm weight vectors after each step.
        self.projected = [p for p, keep in zip(self.params, projected, strict=False) if keep]
        device = self.params[0].device if self.params else torch.device("cpu")
        self.step_count = torch.zeros((), device=device)
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]

    @torch.no_grad()
    def step(self, grads: Sequence[torch.Tensor]) -> None:
        """theta <- theta - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)."""
        b1, b2 = self.betas
        grads = list(grads)
        if len(grads) != len(self.params):
            raise ValueError(f"{len(grads)} gradients for {len(self.params)} parameters")
        self.step_count += 1
        step_size = self.lr / (1.0 - b1**self.step_count)
        root_c2 = (1.0 - b2**self.step_count).sqrt()
        if torch.compiler.is_compiling():
            # Traced: inductor fuses these per-tensor ops into a few loops. (torch's foreach
            # lerp would be traced through a polyfill that builds a device tensor per call.)
            for p, g, m, v in zip(self.params, grads, self.exp_avg, self.exp_avg_sq, strict=True):
                if self.weight_decay:
                    p.mul_(1.0 - self.lr * self.weight_decay)
                m.lerp_(g, 1.0 - b1)
                v.mul_(b2).addcmul_(g, g, value=1.0 - b2)
                p.sub_(step_size * m / (v.sqrt() / root_c2 + self.eps))
        else:
            # Eager: the same arithmetic per element, each line one op over the whole tensor
            # list (torch's foreach ops): ten dispatches a step instead of nine per tensor
            # (benchmarks/README.md, issue 24). tests/agents' test_adam_* hold both forms to
            # each other and to torch.optim.
            if self.weight_decay:
                torch._foreach_mul_(self.params, 1.0 - self.lr * self.weight_decay)
            torch._foreach_lerp_(self.exp_avg, grads, 1.0 - b1)
            torch._foreach_mul_(self.exp_avg_sq, b2)
            torch._foreach_addcmul_(self.exp_avg_sq, grads, grads, value=1.0 - b2)
            denom = torch._foreach_sqrt(self.exp_avg_sq)  # sqrt(v) / sqrt(1 - b2^t) + eps
            torch._foreach_div_(denom, root_c2)
            torch._foreach_add_(denom, self.eps)
            step = torch._foreach_mul(self.exp_avg, step_size)  # lr / (1 - b1^t) * m / denom
            torch._foreach_div_(step, denom)
            torch._foreach_sub_(self.params, step)
        for p in self.projected:
            project_unit_norm(p)

    def reset(self) -> None:
        """Forget the moments and the step count (a full reset, as BRO's resets do)."""
        self.step_count.zero_()
        for t in self.exp_avg + self.exp_avg_sq:
            t.zero_()

    def state_dict(self) -> dict[str, object]:
        return {
            "step": self.step_count.clone(),
            "exp_avg": [t.clone() for t in self.exp_avg],
            "exp_avg_sq": [t.clone() for t in self.exp_avg_sq],
        }

    @torch.no_grad()
    def load_state_dict(self, state: dict) -> None:
        if len(state["exp_avg"]) != len(self.params):
            raise ValueError(
                f"optimizer state has {len(state['exp_avg'])} tensors, expected {len(self.params)}"
            )
        self.step_count.copy_(state["step"])
        for dst, src in zip(
            self.exp_avg + self.exp_avg_sq, state["exp_avg"] + state["exp_avg_sq"], strict=True
        ):
            dst.copy_(src)


@torch.no_grad()
def soft_update(target: Sequence[torch.Tensor], online: Sequence[torch.Tensor], tau: float) -> None:
    """theta' <- tau * theta + (1 - tau) * theta' (Polyak averaging of target networks)."""
    if len(target) != len(online):
        raise ValueError(f"{len(target)} target tensors for {len(online)} online ones")
    if torch.compiler.is_compiling():  # as in Adam.step: traced per tensor, eager as a list
        for t, o in zip(target, online, strict=True):
            t.lerp_(o, tau)
    else:
        torch._foreach_lerp_(list(target), list(online), tau)
