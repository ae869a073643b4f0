"""`widerl export` at full width: per preset and format, the largest difference from
`load_policy(run).act` over 1,000 env observations, the artifact's size and the export time.

    python benchmarks/export_check.py --env Ant-v5 --presets paper-original paper-S paper-L \
        simba bro crossq --json benchmarks/results/export_check.json

Each preset trains a few updates (just enough for BatchNorm and OFENet statistics to move off
their initial values) in a temporary folder, then exports it in every format and runs each
file with its own runtime (onnxruntime; torch.jit.load; torch.export.load).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

import widerl
from widerl.exported import FORMATS, env_observations, run_exported


def check(preset: str, env: str, root: Path, obs: np.ndarray) -> list[dict]:
    run = root / preset
    cfg = widerl.resolve(
        {"env": env, "steps": 4, "warmup": 300, "eval_every": 4, "eval_episodes": 1,
         "buffer_size": 2_000, "ofenet_pretrain": 4, "threads": 1, "progress": False},
        preset,
    )  # fmt: skip
    widerl.train(cfg, run)
    expected = widerl.load_policy(run).act(obs)
    out = []
    for fmt in FORMATS:
        t = time.perf_counter()
        path = widerl.export(run, fmt)
        seconds = time.perf_counter() - t
        batch = run_exported(path, obs)
        one = np.concatenate([run_exported(path, o[None]) for o in obs[:50]])
        out.append({
            "preset": preset, "format": fmt, "bytes": path.stat().st_size,
            "export_s": round(seconds, 2),
            "max_abs_diff_batch": float(np.abs(batch - expected).max()),
            "max_abs_diff_single": float(np.abs(one - expected[:50]).max()),
        })  # fmt: skip
        print(json.dumps(out[-1]), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--env", default="Ant-v5")
    ap.add_argument("--presets", nargs="+", default=["paper-original", "paper-S", "paper-L"])
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    obs = env_observations(args.env, 1_000)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.presets:
            rows += check(preset, args.env, Path(tmp), obs)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"env": args.env, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
