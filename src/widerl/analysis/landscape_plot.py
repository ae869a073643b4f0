"""Files of `widerl landscape`: the grid as CSV, a contour plot and a 3-D surface (the two
views of Li et al. 2018 and the paper's Fig. 1b, 3b, 14)."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

CSV = "landscape.csv"
CONTOUR = "landscape_contour.png"
SURFACE = "landscape_surface.png"
OUTPUTS = (CONTOUR, SURFACE, CSV)


def write_csv(path: Path, alphas: torch.Tensor, betas: torch.Tensor, losses: torch.Tensor) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["alpha", "beta", "loss"])
        for i, a in enumerate(alphas.tolist()):
            for j, b in enumerate(betas.tolist()):
                w.writerow([repr(a), repr(b), repr(float(losses[i, j]))])


def write_landscape(
    out: Path, alphas: torch.Tensor, betas: torch.Tensor, losses: torch.Tensor, title: str
) -> list[Path]:
    """Write the three outputs into `out`; returns their paths."""
    out = Path(out)
    write_csv(out / CSV, alphas, betas, losses)
    # meshgrid "ij": A[i, j] = alphas[i], B[i, j] = betas[j], the layout of losses.
    a, b = torch.meshgrid(alphas, betas, indexing="ij")
    a, b, z = a.numpy(), b.numpy(), losses.numpy()

    fig, ax = plt.subplots(figsize=(5.5, 5))
    filled = ax.contourf(a, b, z, levels=30, cmap="viridis")
    ax.contour(a, b, z, levels=30, colors="k", linewidths=0.3)
    fig.colorbar(filled, ax=ax, label="TD loss")
    ax.plot([0.0], [0.0], "r+", markersize=10, label="trained weights")
    ax.set_xlabel("alpha (direction 1)")
    ax.set_ylabel("beta (direction 2)")
    ax.set_title(title)
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(out / CONTOUR, dpi=100)
    plt.close(fig)

    fig = plt.figure(figsize=(6, 5))
    ax3 = fig.add_subplot(projection="3d")
    ax3.plot_surface(a, b, z, cmap="viridis", linewidth=0, antialiased=True)
    ax3.set_xlabel("alpha", labelpad=8)
    ax3.set_ylabel("beta", labelpad=8)
    ax3.set_zlabel("TD loss", labelpad=8)
    ax3.set_title(title)
    fig.tight_layout()
    fig.savefig(out / SURFACE, dpi=100)
    plt.close(fig)
    return [out / CONTOUR, out / SURFACE, out / CSV]
