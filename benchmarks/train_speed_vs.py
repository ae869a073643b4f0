"""Learning steps per second of `widerl train` against another widerl installation, side by
side on the same machine: the issue's "paper-S at least 1.3x today's main" check.

Each round runs every variant once, one after the other (never two at a time: they would
share the 2 cores), in an order that alternates between rounds, each a real `widerl train`
of the same configuration with one torch thread. The figure per run is `updates_per_s` of the
metrics rows after the first one past update 0 (the first window holds a compiled step's
compilation and allocator warm-up); the ratio per round is new/old, and the median over
rounds is reported.

    python benchmarks/train_speed_vs.py --old /path/to/old/.venv/bin/widerl \
        --new .venv/bin/widerl --preset paper-S --env Hopper-v5 --rounds 3
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

# A diagnostic variant: the other installation's command line with denormal floats flushed
# to zero (torch.set_flush_denormal), to see whether denormal arithmetic costs it time. On
# Hopper-v5 at paper-S it did not (benchmarks/README.md), and no op of a paper-S step
# produced a denormal, so widerl does not set that mode.
FTZ_MAIN = (
    "import sys, torch; torch.set_flush_denormal(True); from widerl.cli import main; "
    "sys.exit(main(sys.argv[1:]))"
)


def run(widerl: str, extra: list[str], args: argparse.Namespace, out: Path) -> float:
    exe = [widerl]
    if widerl.endswith("+ftz"):
        exe = [str(Path(widerl.removesuffix("+ftz")).parent / "python"), "-c", FTZ_MAIN]
    cmd = [*exe, "train", "--preset", args.preset, "--env", args.env, "--out", str(out)]
    cmd += ["--steps", str(args.steps), "--eval-every", str(args.steps // 4)]
    cmd += ["--eval-episodes", "1", "--warmup", "1000", "--ofenet-pretrain", "100"]
    cmd += ["--threads", "1", "--no-progress", "--seed", "0", *extra]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    with (out / "metrics.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r["updates_per_s"]]
    return statistics.mean(float(r["updates_per_s"]) for r in rows[1:])  # past the first window


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--old", required=True, help="the other installation's widerl executable")
    p.add_argument("--new", required=True, help="this installation's widerl executable")
    p.add_argument("--preset", default="paper-S")
    p.add_argument("--env", default="Hopper-v5")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    p.add_argument(
        "--old-ftz", action="store_true", help="also time the old one with denormals flushed"
    )
    p.add_argument(
        "--skip-eager", action="store_true", help="time only the old one and the new compiled"
    )
    args = p.parse_args()
    variants = {
        "old": (args.old, []),
        **({"old ftz": (args.old + "+ftz", [])} if args.old_ftz else {}),
        "new eager": (args.new, ["--compile", "off"]),
        "new compiled": (args.new, ["--compile", "on"]),
    }
    if args.skip_eager:
        del variants["new eager"]
    speeds: dict[str, list[float]] = {k: [] for k in variants}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            order = list(variants) if r % 2 == 0 else list(reversed(variants))
            for name in order:
                exe, extra = variants[name]
                out = Path(tmp) / f"{name.replace(' ', '-')}-{r}"
                speeds[name].append(run(exe, extra, args, out))
                print(f"round {r} {name}: {speeds[name][-1]:.2f} updates/s", flush=True)
    result = {
        "preset": args.preset,
        "env": args.env,
        "steps": args.steps,
        "rounds": args.rounds,
        "load_average": os.getloadavg(),
        "time_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "updates_per_s": speeds,
        "ratio_eager": None
        if args.skip_eager
        else statistics.median(
            n / o for n, o in zip(speeds["new eager"], speeds["old"], strict=True)
        ),
        "ratio_compiled": statistics.median(
            n / o for n, o in zip(speeds["new compiled"], speeds["old"], strict=True)
        ),
    }
    if args.old_ftz:
        result["ratio_compiled_over_old_ftz"] = statistics.median(
            n / o for n, o in zip(speeds["new compiled"], speeds["old ftz"], strict=True)
        )
    print(json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
