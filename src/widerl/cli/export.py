"""`widerl export RUN`: the trained deterministic policy as one ONNX, TorchScript or
torch.export file (src/widerl/exported.py)."""

from __future__ import annotations

from pathlib import Path

import click

from widerl.cli.options import count

FORMATS = ("onnx", "torchscript", "pt2")  # widerl.exported.FORMATS (this module stays torch-free)


@click.command("export")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default=None,
    help="onnx (run it with onnxruntime; needs the 'export' extra), torchscript (torch.jit.load) "
    "or pt2 (torch.export.load). Default: the one --out's suffix (.onnx, .pt, .pt2) names; "
    "onnx without --out.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="File to write. Default: policy.onnx, policy.pt or policy.pt2 in the run folder.",
)
@click.option("--seed", type=count(0), default=None, help="The seed to export from a --seeds run.")
@click.option("--force", is_flag=True, help="Replace --out if it exists.")
def export_cmd(
    run_dir: Path, fmt: str | None, out: Path | None, seed: int | None, force: bool
) -> None:
    """Write RUN_DIR's deterministic policy as one self-contained file: input "obs", float32
    [batch, obs_dim] in the env's own units; output "action", float32 [batch, act_dim] within
    the env's action bounds. Observation normalisation, OFENet and BatchNorm (on their running
    statistics) are inside; it computes what `widerl eval` and load_policy(RUN).act do."""
    from widerl.exported import export

    path = export(run_dir, fmt, out, seed, force)
    click.echo(f"policy: {path} ({path.stat().st_size:,} bytes)")
