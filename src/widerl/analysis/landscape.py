"""Loss landscapes along two filter-normalized random directions (Li et al. 2018, "Visualizing
the Loss Landscape of Neural Nets"), as the paper does for its critics (A.3, Fig. 1b, 3b, 14).

Generic core: any list of parameters and any closure computing a scalar loss from them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

# Li et al. add this to the direction's filter norm so an all-zero random filter cannot divide
# by zero.
_EPS = 1e-10


# How a parameter's filters lie: "rows" (torch's layout: one filter per index of dim 0, e.g. an
# nn.Linear weight's output rows), "ensemble" (widerl's `[members, in, out]` weights: one
# filter per member and output unit, its fan-in along dim 1), or "none" (biases, norm
# parameters: no direction, as Li et al. do).
LAYOUTS = ("rows", "ensemble", "none")


def filter_normalized_direction(
    params: Sequence[torch.Tensor],
    generator: torch.Generator,
    layouts: Sequence[str] | None = None,
) -> list[torch.Tensor]:
    """A Gaussian direction, one tensor per parameter, each filter rescaled to the norm of
    the same filter of the weights (Li et al. 2018, Sec. 4). Without `layouts`, 1-D
    parameters get a zero direction and the others are "rows" (see LAYOUTS)."""
    directions = []
    for i, p in enumerate(params):
        layout = layouts[i] if layouts is not None else ("none" if p.dim() <= 1 else "rows")
        if layout not in LAYOUTS:
            raise ValueError(f"unknown filter layout {layout!r}; choose from {LAYOUTS}")
        if layout == "none":
            directions.append(torch.zeros_like(p))
            continue
        d = torch.randn(p.shape, generator=generator, device=generator.device, dtype=p.dtype)
        d = d.to(p.device)
        if layout == "ensemble":
            scale = p.detach().norm(dim=1, keepdim=True) / (d.norm(dim=1, keepdim=True) + _EPS)
        else:
            rows_w = p.detach().reshape(p.shape[0], -1).norm(dim=1)
            rows_d = d.reshape(p.shape[0], -1).norm(dim=1)
            scale = (rows_w / (rows_d + _EPS)).reshape(-1, *([1] * (p.dim() - 1)))
        directions.append(d * scale)
    return directions


@torch.no_grad()
def loss_surface(
    params: Sequence[torch.Tensor],
    loss_fn: Callable[[], torch.Tensor],
    d1: Sequence[torch.Tensor],
    d2: Sequence[torch.Tensor],
    span: float,
    grid: int,
    on_point: Callable[[], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """loss_fn() at theta + a * d1 + b * d2 for a, b on a grid x grid lattice of [-span, span].

    Returns (alphas, betas, losses) with losses[i, j] at (alphas[i], betas[j]), on the CPU in
    float64. Parameters are set from a saved copy at every point (no drift from repeated
    additions) and copied back exactly afterwards, also when loss_fn raises. `on_point` is
    called after each point (for a progress bar).
    """
    if grid < 2:
        raise ValueError(f"grid must be >= 2, got {grid}")
    if not span > 0:
        raise ValueError(f"span must be > 0, got {span}")
    params = list(params)
    if not (len(params) == len(d1) == len(d2)):
        raise ValueError(f"{len(params)} params but {len(d1)} and {len(d2)} direction tensors")
    for p, u, v in zip(params, d1, d2, strict=True):
        if p.shape != u.shape or p.shape != v.shape:
            raise ValueError(
                f"direction shapes {tuple(u.shape)}, {tuple(v.shape)} != {tuple(p.shape)}"
            )
    alphas = torch.linspace(-span, span, grid, dtype=torch.float64)
    betas = torch.linspace(-span, span, grid, dtype=torch.float64)
    losses = torch.empty(grid, grid, dtype=torch.float64)
    theta = [p.detach().clone() for p in params]
    try:
        for i, a in enumerate(alphas.tolist()):
            for j, b in enumerate(betas.tolist()):
                for p, t, u, v in zip(params, theta, d1, d2, strict=True):
                    # theta + a * d1 + b * d2, written into the parameter in place.
                    torch.add(t, u, alpha=a, out=p.data)
                    p.data.add_(v, alpha=b)
                losses[i, j] = float(loss_fn())
                if on_point is not None:
                    on_point()
    finally:
        for p, t in zip(params, theta, strict=True):
            p.data.copy_(t)
    return alphas, betas, losses
