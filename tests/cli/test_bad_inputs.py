"""A battery of inputs a user can get wrong, by command: each must end in one line that names
the value and what is allowed (`widerl: error: ...`), exit 2 (1 for a run that fails mid-way,
with its cause and the resume command), no traceback, and nothing that was there before
changed, nothing new written.

Each case runs in a sandbox copied from a set of prepared folders (`SANDBOX`), is classified
(`classify`), and the test asserts "clean". `python tests/cli/test_bad_inputs.py` prints how many
cases fall in each class, by command, without asserting: the counts in the issue's report.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import signal
import sys
import tempfile
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

# The runs the cases start from: tiny, on Pendulum-v1 (obs 3, act 1).
TINY = ["--env", "Pendulum-v1", "--units", "16", "--layers", "2", "--batch-size", "16",
        "--warmup", "40", "--eval-episodes", "1", "--threads", "1", "--no-progress"]  # fmt: skip
SHORT = [*TINY, "--steps", "10", "--eval-every", "5"]
BIG = str(2**70)  # beyond int64
CLASSES = ("clean", "unclear", "traceback", "accepted silently", "data lost", "wrote first")


@dataclass
class Case:
    """`argv` for `widerl` ({run}, {seeds}, {warm}, {runs}, {new}, {file}, {empty} are the
    sandbox's paths); or `call` (the Python API) expected to raise `widerl.ConfigError`.
    `damage(sandbox)` prepares the sandbox first. `words`: what the one line must say."""

    id: str
    argv: list[str] = field(default_factory=list)
    words: tuple[str, ...] = ()
    damage: Callable[[Path], None] | None = None
    call: Callable[[Path], Any] | None = None
    rc: int = 2

    @property
    def command(self) -> str:
        return "api" if self.call is not None else self.argv[0]


# --- damage ------------------------------------------------------------------------------------
def edit_config(rel: str, **values: Any) -> Callable[[Path], None]:
    def damage(box: Path) -> None:
        path = box / rel / "config.json"
        cfg = json.loads(path.read_text())
        cfg.update(values)
        path.write_text(json.dumps(cfg))

    return damage


def write(rel: str, data: bytes | str) -> Callable[[Path], None]:
    def damage(box: Path) -> None:
        path = box / rel
        if path.is_dir():
            shutil.rmtree(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)

    return damage


def remove(rel: str) -> Callable[[Path], None]:
    def damage(box: Path) -> None:
        path = box / rel
        shutil.rmtree(path) if path.is_dir() else path.unlink()

    return damage


def make_dir(rel: str) -> Callable[[Path], None]:
    def damage(box: Path) -> None:
        path = box / rel
        if path.exists() and not path.is_dir():
            path.unlink()
        path.mkdir(parents=True, exist_ok=True)

    return damage


def both(*steps: Callable[[Path], None]) -> Callable[[Path], None]:
    def damage(box: Path) -> None:
        for step in steps:
            step(box)

    return damage


# --- the cases, by command ---------------------------------------------------------------------
def train(*flags: str, out: str = "{new}") -> list[str]:
    return ["train", *SHORT, "--out", out, *flags]


def resume(*flags: str, run: str = "{run}") -> list[str]:
    return ["train", "--resume", run, "--no-progress", *flags]


TRAIN_NEW = [
    # --num-envs, --n-step and --amp
    Case(
        "num-envs-with-actors",
        train("--num-envs", "2", "--actors", "1"),
        ("--num-envs", "--actors"),
    ),  # fmt: skip
    Case("num-envs-zero", train("--num-envs", "0"), ("--num-envs", "0")),
    Case("expl-noise-max-sac", train("--expl-noise-max", "0.4"), ("--expl-noise-max", "sac")),
    Case(
        "expl-noise-max-below",
        train("--algo", "td3", "--expl-noise", "0.5", "--expl-noise-max", "0.2"),
        ("--expl-noise-max", "0.2", "0.5"),
    ),  # fmt: skip
    Case("arch-typo", train("--arch", "funel"), ("--arch", "funel", "funnel")),
    Case("sampler-unknown", train("--sampler", "per"), ("--sampler", "per", "lap")),
    Case("features-no-width", train("--features", "ofenet"), ("--features", "--ofenet-units")),
    Case(
        "encoder-without-encoder",
        train("--encoder-units", "64"),
        ("--encoder-units 64", "--features sale or mrq"),
    ),
    Case(
        "horizon-of-sale",
        train("--features", "sale", "--encoder-horizon", "3"),
        ("--encoder-horizon 3", "--features mrq", "sale"),
    ),
    Case("unknown-features", train("--features", "td7"), ("--features", "sale")),
    Case(
        "simbav2-batchnorm",
        train("--arch", "simbav2", "--batchnorm"),
        ("--arch simbav2", "--batchnorm"),
    ),
    Case("simbav2-swish", train("--arch", "simbav2", "--activation", "swish"), ("ReLU",)),
    Case("g-max-zero", train("--reward-scaling", "--reward-g-max", "0"), ("--reward-g-max",)),
    Case(
        "encoder-lr-negative", train("--features", "sale", "--encoder-lr", "-1"), ("--encoder-lr",)
    ),
    Case(
        "features-raw-with-width",
        train("--features", "raw", "--ofenet-units", "16"),
        ("--features raw", "--ofenet-units 16"),
    ),  # fmt: skip
    Case(
        "sampler-and-prioritized",
        train("--sampler", "lap", "--prioritized"),
        ("--prioritized", "--sampler lap"),
    ),  # fmt: skip
    Case(
        "env-playground-typo",
        train("--env", "playground/CheetahRan"),
        ("playground/CheetahRan", "playground/CheetahRun"),
    ),  # fmt: skip
    Case("n-step-zero", train("--n-step", "0"), ("--n-step", "0")),
    Case("n-step-huge", train("--n-step", "65"), ("--n-step", "65", "64")),
    Case("amp-fp16", train("--amp", "fp16"), ("--amp", "fp16", "bf16")),
    # --wandb and its companions
    Case("wandb-entity-alone", train("--wandb-entity", "lab"), ("--wandb-entity", "--wandb")),
    Case("wandb-group-alone", train("--wandb-group", "g"), ("--wandb-group", "--wandb")),
    Case("wandb-project-slash", train("--wandb", "a/b"), ("--wandb", "a/b", "'/'")),
    Case("wandb-entity-colon", train("--wandb", "p", "--wandb-entity", "a:b"), ("--wandb-entity",)),
    # flags and values click parses
    Case("units-zero", train("--units", "0"), ("--units", "0")),
    Case("units-text", train("--units", "wide"), ("--units", "wide")),
    Case("units-int64", train("--units", BIG), ("--units", BIG)),
    Case("steps-int64", train("--steps", BIG), ("--steps", BIG)),
    Case("buffer-int64", train("--buffer-size", BIG), ("--buffer-size", BIG)),
    Case("seed-int64", train("--seed", BIG), ("--seed", BIG)),
    Case("seed-negative", train("--seed", "-1"), ("--seed", "-1")),
    Case("warmup-int64", train("--warmup", BIG), ("--warmup", BIG)),
    Case("eval-every-int64", train("--eval-every", BIG), ("--eval-every",)),
    Case("algo-unknown", train("--algo", "ppo"), ("--algo", "ppo")),
    Case("arch-unknown", train("--arch", "transformer"), ("--arch", "transformer")),
    Case("preset-unknown", train("--preset", "paper-XL"), ("--preset", "paper-XL")),
    Case("unknown-flag", train("--unitz", "3"), ("--unitz",)),
    Case("lr-nan", train("--lr", "nan"), ("--lr", "nan")),
    Case("lr-negative", train("--lr", "-1e-3"), ("--lr", "-0.001")),
    Case("gamma-above-one", train("--gamma", "1.5"), ("--gamma", "1.5")),
    Case("tau-zero", train("--tau", "0"), ("--tau", "0")),
    Case(
        "batch-above-buffer",
        train("--batch-size", "64", "--buffer-size", "32"),
        ("--batch-size", "64", "--buffer-size"),
    ),  # fmt: skip
    Case("eval-every-above-steps", train("--eval-every", "50"), ("--eval-every", "50")),
    Case("atoms-one", train("--critic-head", "c51", "--atoms", "1"), ("--atoms", "1")),
    Case(
        "vmin-above-vmax",
        train("--critic-head", "c51", "--v-min", "5", "--v-max", "1"),
        ("--v-min", "--v-max"),
    ),  # fmt: skip
    Case(
        "vspan-overflow",
        train("--critic-head", "c51", "--v-min", "-1e308", "--v-max", "1e308"),
        ("--v-min", "--v-max"),
    ),  # fmt: skip
    Case("vmax-inf", train("--critic-head", "c51", "--v-max", "inf"), ("--v-max", "inf")),
    Case(
        "hlgauss-sigma-zero",
        train("--critic-head", "hlgauss", "--hlgauss-sigma", "0"),
        ("--hlgauss-sigma", "0"),
    ),  # fmt: skip
    Case("critics-zero", train("--critics", "0"), ("--critics", "0")),
    Case("per-alpha-negative", train("--prioritized", "--per-alpha", "-1"), ("--per-alpha",)),
    Case("per-beta-above-one", train("--per-beta", "2"), ("--per-beta", "2")),
    Case(
        "ofenet-target-too-big",
        train("--ofenet-units", "8", "--ofenet-layers", "2", "--ofenet-target-dim", "9"),
        ("--ofenet-target-dim", "9"),
    ),  # fmt: skip
    Case("batchnorm-batch-one", train("--batchnorm", "--batch-size", "1"), ("--batch-size", "1")),
    Case(
        "simba-batchnorm", train("--arch", "simba", "--batchnorm"), ("--arch simba", "--batchnorm")
    ),
    Case("crossq-batchnorm", train("--algo", "crossq", "--batchnorm"), ("--batchnorm",)),
    Case("threads-above-cpus", train("--threads", "4096"), ("--threads", "4096")),
    Case("threads-int64", train("--threads", BIG), ("--threads",)),
    Case("device-unknown", train("--device", "tpu"), ("--device", "tpu")),
    Case("device-cuda-absent", train("--device", "cuda"), ("--device cuda",)),
    Case("env-unknown", train("--env", "Hopperr-v5"), ("--env", "Hopperr-v5")),
    Case("env-discrete", train("--env", "CartPole-v1"), ("CartPole-v1",)),
    Case(
        "env-missing-dependency",
        train("--env", "LunarLanderContinuous-v3"),
        ("LunarLanderContinuous-v3",),
    ),  # fmt: skip
    Case("env-bad-version", train("--env", "Hopper-v99"), ("Hopper-v99",)),
    Case("env-empty", train("--env", ""), ("--env",)),
    Case("memory-units", train("--units", "200000"), ("--units", "200000")),
    Case("memory-buffer", train("--buffer-size", "1000000000000"), ("--buffer-size",)),
    Case(
        "memory-atoms",
        train(
            "--critic-head",
            "c51",
            "--atoms",
            "2000000",
            "--batch-size",
            "4096",
            "--buffer-size",
            "4096",
        ),
        ("--atoms",),
    ),  # fmt: skip
    Case(
        "memory-critics",
        train("--critics", "4000", "--units", "2048", "--batch-size", "256"),
        ("--critics",),
    ),  # fmt: skip
    Case(
        "ray-address-nobody",
        train("--actors", "1", "--ray-address", "127.0.0.1:1"),
        ("--ray-address", "127.0.0.1:1"),
    ),  # fmt: skip
    Case(
        "ray-address-auto-no-cluster",
        train("--actors", "1", "--ray-address", "auto"),
        ("--ray-address", "auto"),
    ),  # fmt: skip
    Case("out-is-a-file", train(out="{file}"), ("--out",)),
    Case("out-holds-run", train(out="{run}"), ("--out", "--resume", "--force")),
    Case("out-holds-seeds-run", train(out="{seeds}"), ("--out", "seeds")),
    Case(
        "force-single-into-seeds-run",
        train("--force", out="{seeds}"),
        ("--out", "seeds", "--force"),
    ),  # fmt: skip
    Case("out-unwritable", train(out="/proc/widerl-test/run"), ("--out",)),
    Case("out-below-a-file", train(out="{file}/run"), ("--out",)),
    Case("seeds-text", train("--seeds", "a-b"), ("--seeds", "a-b")),
    Case(
        "seeds-too-many",
        train(
            "--seeds", "0-1023", "--units", "2048", "--buffer-size", "4096", "--batch-size", "4096"
        ),
        ("--seeds",),
    ),  # fmt: skip
    Case("seeds-beyond-limit", train("--seeds", "0-5000"), ("--seeds", "0-5000")),
    Case("seeds-duplicate", train("--seeds", "1,1"), ("--seeds", "1,1")),
    Case("seeds-and-seed", train("--seeds", "0,1", "--seed", "3"), ("--seed", "--seeds")),
    Case("seeds-into-single-run", train("--seeds", "0,1", out="{run}"), ("--out",)),
    Case("seeds-with-actors", train("--seeds", "0,1", "--actors", "1"), ("--actors", "--seeds")),
    Case(
        "preset-and-resume",
        ["train", "--resume", "{run}", "--preset", "paper-S"],
        ("--preset", "--resume"),
    ),  # fmt: skip
    Case("utd-int64", train("--utd", BIG), ("--utd",)),
    Case("reset-every-int64", train("--reset-every", BIG), ("--reset-every",)),
    Case("actors-int64", train("--actors", BIG), ("--actors",)),
]

TRAIN_RESUME = [
    # the run folder damaged or hand-edited
    Case(
        "no-checkpoint-but-rows",
        resume(),
        ("--resume", "metrics.csv", "checkpoint"),
        damage=remove("run/checkpoint.pt"),
    ),  # fmt: skip
    Case(
        "checkpoint-is-a-dir",
        resume(),
        ("--resume", "checkpoint.pt"),
        damage=make_dir("run/checkpoint.pt"),
    ),  # fmt: skip
    Case(
        "checkpoint-garbage", resume(), ("checkpoint.pt",), damage=write("run/checkpoint.pt", "x")
    ),
    Case(
        "checkpoint-empty",
        resume(),
        ("checkpoint.pt", "empty"),
        damage=write("run/checkpoint.pt", b""),
    ),  # fmt: skip
    Case("config-missing", resume(), ("--resume", "config.json"), damage=remove("run/config.json")),
    Case("config-garbage", resume(), ("config.json",), damage=write("run/config.json", "{units")),
    Case("config-list", resume(), ("config.json",), damage=write("run/config.json", "[1, 2]")),
    Case(
        "config-non-utf8",
        resume(),
        ("config.json",),
        damage=write("run/config.json", b"\xff\xfe{\x00"),
    ),  # fmt: skip
    Case(
        "config-units-string",
        resume(),
        ("config.json", "units"),
        damage=edit_config("run", units="wide"),
    ),  # fmt: skip
    Case(
        "config-units-float",
        resume(),
        ("config.json", "units"),
        damage=edit_config("run", units=16.5),
    ),  # fmt: skip
    Case(
        "config-units-null",
        resume(),
        ("config.json", "units"),
        damage=edit_config("run", units=None),
    ),  # fmt: skip
    Case("config-lr-string", resume(), ("config.json", "lr"), damage=edit_config("run", lr="fast")),
    Case("config-lr-negative", resume(), ("config.json", "lr"), damage=edit_config("run", lr=-1.0)),
    Case(
        "config-algo-unknown",
        resume(),
        ("config.json", "algo"),
        damage=edit_config("run", algo="ppo"),
    ),  # fmt: skip
    Case(
        "config-env-unknown",
        resume(),
        ("config.json", "Nope-v0"),
        damage=edit_config("run", env="Nope-v0"),
    ),  # fmt: skip
    Case(
        "config-bool-string",
        resume(),
        ("config.json", "batchnorm"),
        damage=edit_config("run", batchnorm="yes"),
    ),  # fmt: skip
    Case(
        "config-steps-huge",
        resume(),
        ("config.json", "steps"),
        damage=edit_config("run", steps=2**70),
    ),  # fmt: skip
    Case("config-is-a-dir", resume(), ("config.json",), damage=make_dir("run/config.json")),
    Case(
        "metrics-garbage",
        resume(),
        ("metrics.csv",),
        damage=write("run/metrics.csv", "\x00\x01garbage\n1,2"),
    ),  # fmt: skip
    Case("metrics-is-a-dir", resume(), ("metrics.csv",), damage=make_dir("run/metrics.csv")),
    Case(
        "metrics-non-utf8",
        resume(),
        ("metrics.csv",),
        damage=write("run/metrics.csv", b"grad_step\n\xff\xfe\n"),
    ),  # fmt: skip
    Case(
        "seeds-json-garbage",
        resume(run="{seeds}"),
        ("seeds.json",),
        damage=write("seeds/seeds.json", "{"),
    ),  # fmt: skip
    Case(
        "seeds-json-wrong-type",
        resume(run="{seeds}"),
        ("seeds.json",),
        damage=write("seeds/seeds.json", '{"seeds": "0,1"}'),
    ),  # fmt: skip
    Case("seed-folder-missing", resume(run="{seeds}"), ("s1",), damage=remove("seeds/s1")),
    Case(
        "seed-checkpoint-missing",
        resume(run="{seeds}"),
        ("s1", "checkpoint"),
        damage=remove("seeds/s1/checkpoint.pt"),
    ),  # fmt: skip
    Case("resume-not-a-folder", resume(run="{file}"), ("--resume",)),
    Case("resume-missing", resume(run="{empty}/nothing"), ("--resume",)),
    Case("resume-empty-folder", resume(run="{empty}"), ("--resume", "config.json")),
    # overrides
    Case("steps-below-done", resume("--steps", "5"), ("--steps", "5", "10")),
    Case("env-changed", resume("--env", "Hopper-v5"), ("--env", "Hopper-v5")),
    Case("units-changed", resume("--units", "32"), ("--units", "32")),
    Case("seeds-with-resume", resume("--seeds", "0,1"), ("--seeds", "--resume")),
    Case("threads-above-cpus-on-resume", resume("--threads", "4096"), ("--threads", "4096")),
    Case("device-cuda-on-resume", resume("--device", "cuda"), ("--device cuda",)),
    Case("ray-address-on-resume", resume("--ray-address", "127.0.0.1:1"), ("--ray-address",)),
    Case(
        "config-gamma-string",
        resume(),
        ("config.json", "gamma"),
        damage=edit_config("run", gamma="high"),
    ),
    Case(
        "config-device-unknown",
        resume(),
        ("config.json", "--device"),
        damage=edit_config("run", device="tpu"),
    ),
    Case(
        "metrics-no-grad-step",
        resume(),
        ("metrics.csv", "grad_step"),
        damage=write("run/metrics.csv", "step,return\n1,2\n"),
    ),
    Case(
        "metrics-text-step",
        resume(),
        ("metrics.csv", "grad_step"),
        damage=write("run/metrics.csv", "grad_step,eval_return_mean\nten,1\n"),
    ),
    Case(
        "seeds-force-into-single-run", train("--seeds", "0,1", "--force", out="{run}"), ("--out",)
    ),
    Case(
        "diverged-run",
        resume(),
        ("diverged",),
        damage=write("run/diverged.json", '{"quantity": "critic_loss", "update": 3}'),
    ),  # fmt: skip
]


def evaluate(*flags: str, run: str = "{run}") -> list[str]:
    return ["eval", run, "--episodes", "1", *flags]


EVAL = [
    Case("eval-seed-negative", evaluate("--seed", "-1"), ("--seed", "-1")),
    Case("eval-seed-int64", evaluate("--seed", BIG), ("--seed",)),
    Case("eval-episodes-zero", evaluate("--episodes", "0"), ("--episodes", "0")),
    Case("eval-episodes-int64", evaluate("--episodes", BIG), ("--episodes",)),
    Case("eval-not-a-run", evaluate(run="{empty}"), ("config.json",)),
    Case("eval-missing", evaluate(run="{empty}/nothing"), ("nothing",)),
    Case("eval-a-file", evaluate(run="{file}"), ("file",)),
    Case("eval-seeds-run", evaluate(run="{seeds}"), ("seeds", "s0")),
    Case("eval-no-checkpoint", evaluate(), ("checkpoint",), damage=remove("run/checkpoint.pt")),
    Case(
        "eval-checkpoint-garbage",
        evaluate(),
        ("checkpoint.pt",),
        damage=write("run/checkpoint.pt", "x"),
    ),  # fmt: skip
    Case(
        "eval-config-garbage", evaluate(), ("config.json",), damage=write("run/config.json", "nope")
    ),  # fmt: skip
    Case("eval-config-list", evaluate(), ("config.json",), damage=write("run/config.json", "[]")),
    Case(
        "eval-config-units-string",
        evaluate(),
        ("config.json", "units"),
        damage=edit_config("run", units="wide"),
    ),  # fmt: skip
    Case(
        "eval-config-units-null",
        evaluate(),
        ("config.json", "units"),
        damage=edit_config("run", units=None),
    ),  # fmt: skip
    Case(
        "eval-config-non-utf8",
        evaluate(),
        ("config.json",),
        damage=write("run/config.json", b"\xff\xfe"),
    ),  # fmt: skip
    Case(
        "eval-config-env-missing-dep",
        evaluate(),
        ("LunarLanderContinuous-v3",),
        damage=edit_config("run", env="LunarLanderContinuous-v3"),
    ),  # fmt: skip
    Case("eval-video-suffix", evaluate("--video", "{empty}/v.avi"), ("--video", ".gif")),
    Case("eval-video-exists", evaluate("--video", "{file}"), ("--video",)),
    Case("eval-video-unwritable", evaluate("--video", "/proc/widerl/v.gif"), ("--video",)),
    Case("eval-video-classic-control", evaluate("--video", "{empty}/v.gif"), ("--video",)),
    Case("eval-device-cuda", evaluate("--device", "cuda"), ("--device cuda",)),
    Case("eval-device-unknown", evaluate("--device", "tpu"), ("--device", "tpu")),
    Case("eval-threads-above-cpus", evaluate("--threads", "4096"), ("--threads", "4096")),
]


def summary(*flags: str) -> list[str]:
    return ["summary", "--obs-dim", "3", "--act-dim", "1", *flags]


SUMMARY = [
    Case("summary-obs-zero", ["summary", "--obs-dim", "0", "--act-dim", "1"], ("--obs-dim", "0")),
    Case("summary-obs-int64", ["summary", "--obs-dim", BIG, "--act-dim", "1"], ("--obs-dim",)),
    Case("summary-act-missing", ["summary", "--obs-dim", "3"], ("--act-dim",)),
    Case("summary-units-zero", summary("--units", "0"), ("--units", "0")),
    Case("summary-units-int64", summary("--units", BIG), ("--units",)),
    Case("summary-atoms-one", summary("--critic-head", "c51", "--atoms", "1"), ("--atoms", "1")),
    Case("summary-critics-zero", summary("--critics", "0"), ("--critics", "0")),
    Case("summary-simba-batchnorm", summary("--arch", "simba", "--batchnorm"), ("--batchnorm",)),
    Case("summary-crossq-batchnorm", summary("--algo", "crossq", "--batchnorm"), ("--batchnorm",)),
    Case(
        "summary-ofenet-target",
        summary("--ofenet-units", "8", "--ofenet-layers", "2", "--ofenet-target-dim", "9"),
        ("--ofenet-target-dim",),
    ),  # fmt: skip
    Case("summary-preset-unknown", summary("--preset", "nope"), ("--preset", "nope")),
    Case("summary-unknown-flag", summary("--steps", "5"), ("--steps",)),
]


def landscape(*flags: str, run: str = "{run}") -> list[str]:
    return ["landscape", run, "--grid", "3", "--out", "{empty}/ls", *flags]


LANDSCAPE = [
    Case("landscape-grid-two", landscape("--grid", "2"), ("--grid", "2")),
    Case("landscape-grid-text", landscape("--grid", "many"), ("--grid", "many")),
    Case("landscape-grid-huge", landscape("--grid", "100000"), ("--grid", "100000")),
    Case("landscape-grid-int64", landscape("--grid", BIG), ("--grid",)),
    Case("landscape-span-zero", landscape("--span", "0"), ("--span", "0")),
    Case("landscape-span-nan", landscape("--span", "nan"), ("--span", "nan")),
    Case("landscape-span-inf", landscape("--span", "inf"), ("--span", "inf")),
    Case("landscape-seed-negative", landscape("--seed", "-1"), ("--seed", "-1")),
    Case("landscape-not-a-run", landscape(run="{empty}"), ("config.json",)),
    Case("landscape-seeds-run", landscape(run="{seeds}"), ("seeds",)),
    Case(
        "landscape-no-checkpoint", landscape(), ("checkpoint",), damage=remove("run/checkpoint.pt")
    ),  # fmt: skip
    Case(
        "landscape-config-garbage",
        landscape(),
        ("config.json",),
        damage=write("run/config.json", "{"),
    ),  # fmt: skip
    Case(
        "landscape-config-units-float",
        landscape(),
        ("config.json", "units"),
        damage=edit_config("run", units=2.5),
    ),  # fmt: skip
    Case(
        "landscape-out-exists",
        ["landscape", "{run}", "--grid", "3", "--out", "{lsdone}"],
        ("--force",),
    ),  # fmt: skip
    Case(
        "landscape-out-a-file", ["landscape", "{run}", "--grid", "3", "--out", "{file}"], ("--out",)
    ),  # fmt: skip
    Case("landscape-device-cuda", landscape("--device", "cuda"), ("--device cuda",)),
]


def report(*flags: str, runs: str = "{runs}") -> list[str]:
    return ["report", runs, "--out", "{empty}/report", *flags]


REPORT = [
    Case("report-warmup-run", report(), ("warm",), rc=0),
    Case(
        "report-bootstrap-seed-negative",
        report("--bootstrap-seed", "-1"),
        ("--bootstrap-seed", "-1"),
    ),  # fmt: skip
    Case("report-bootstrap-seed-int64", report("--bootstrap-seed", BIG), ("--bootstrap-seed",)),
    Case("report-bootstrap-reps-low", report("--bootstrap-reps", "10"), ("--bootstrap-reps", "10")),
    Case("report-bootstrap-reps-int64", report("--bootstrap-reps", BIG), ("--bootstrap-reps",)),
    Case("report-score-unknown", report("--score", "best"), ("--score", "best")),
    Case("report-no-runs", report(runs="{empty}"), ("no run",)),
    Case("report-missing-dir", report(runs="{empty}/nothing"), ("nothing",)),
    Case("report-a-file", report(runs="{file}"), ("file",)),
    Case("report-out-not-empty", ["report", "{runs}", "--out", "{runs}"], ("--out", "--force")),
    Case("report-out-a-file", ["report", "{runs}", "--out", "{file}"], ("--out",)),
    Case("report-out-unwritable", ["report", "{runs}", "--out", "/proc/widerl/r"], ("--out",)),
    Case(
        "report-metrics-garbage",
        report(),
        ("metrics.csv",),
        damage=write("runs/a/metrics.csv", "\x00garbage\n1,2,3"),
    ),  # fmt: skip
    Case("report-metrics-a-dir", report(), ("metrics.csv",), damage=make_dir("runs/a/metrics.csv")),
    Case(
        "report-metrics-non-utf8",
        report(),
        ("metrics.csv",),
        damage=write("runs/a/metrics.csv", b"grad_step\n\xff\n"),
    ),  # fmt: skip
    Case(
        "report-metrics-text-return",
        report(),
        ("metrics.csv", "eval_return_mean"),
        damage=write("runs/a/metrics.csv", "grad_step,eval_return_mean\n0,lots\n"),
    ),  # fmt: skip
    Case(
        "report-config-garbage", report(), ("config.json",), damage=write("runs/a/config.json", "{")
    ),  # fmt: skip
    Case(
        "report-config-list", report(), ("config.json",), damage=write("runs/a/config.json", "[]")
    ),
    Case(
        "report-config-non-utf8",
        report(),
        ("config.json",),
        damage=write("runs/a/config.json", b"\xff"),
    ),  # fmt: skip
    Case(
        "report-config-units-string",
        report(),
        ("config.json", "units"),
        damage=edit_config("runs/a", units="wide"),
    ),  # fmt: skip
    Case("report-config-a-dir", report(), ("config.json",), damage=make_dir("runs/a/config.json")),
]


def experiment(*flags: str, name: str = "width") -> list[str]:
    return ["experiment", name, "--out", "{empty}/exp", "--seeds", "1", "--steps", "20",
            "--envs", "Pendulum-v1", "--dry-run", *flags]  # fmt: skip


EXPERIMENT = [
    Case("exp-unknown", experiment(name="widths"), ("widths",)),
    Case(
        "exp-train-args-own-variable",
        experiment("--train-args", "--units 32"),
        ("--train-args", "--units", "width"),
    ),  # fmt: skip
    Case(
        "exp-train-args-layers-in-depth",
        experiment("--train-args", "--layers 3", name="depth"),
        ("--train-args", "--layers"),
    ),  # fmt: skip
    Case(
        "exp-train-args-arch-in-arch",
        experiment("--train-args", "--arch mlp", name="arch"),
        ("--train-args", "--arch"),
    ),  # fmt: skip
    Case(
        "exp-train-args-activation",
        experiment("--train-args", "--activation swish", name="activation"),
        ("--activation",),
    ),  # fmt: skip
    Case("exp-train-args-seed", experiment("--train-args", "--seed 3"), ("--train-args", "--seed")),
    Case("exp-train-args-out", experiment("--train-args", "--out x"), ("--train-args", "--out")),
    Case(
        "exp-train-args-threads",
        experiment("--train-args", "--threads 2"),
        ("--train-args", "--threads"),
    ),  # fmt: skip
    Case(
        "exp-train-args-steps", experiment("--train-args", "--steps 5"), ("--train-args", "--steps")
    ),  # fmt: skip
    Case("exp-train-args-quote", experiment("--train-args", "--warmup '5"), ("--train-args",)),
    Case(
        "exp-train-args-unknown",
        experiment("--train-args", "--unitz 3"),
        ("--train-args", "--unitz"),
    ),  # fmt: skip
    Case(
        "exp-train-args-bad-value", experiment("--train-args", "--lr -1"), ("--lr", "-1")
    ),  # fmt: skip
    Case("exp-train-args-help", experiment("--train-args", "--help"), ("--train-args",)),
    Case(
        "exp-train-args-resume",
        experiment("--train-args", "--resume x"),
        ("--train-args", "--resume"),
    ),  # fmt: skip
    Case("exp-threads-above-cpus", experiment("--threads", "4096"), ("--threads", "4096")),
    Case("exp-threads-zero", experiment("--threads", "0"), ("--threads", "0")),
    Case("exp-jobs-zero", experiment("--jobs", "0"), ("--jobs", "0")),
    Case("exp-seeds-zero", experiment("--seeds", "0"), ("--seeds", "0")),
    Case("exp-seeds-negative", experiment("--seeds", "-2"), ("--seeds", "-2")),
    Case("exp-steps-zero", experiment("--steps", "0"), ("--steps", "0")),
    Case("exp-steps-int64", experiment("--steps", BIG), ("--steps",)),
    Case("exp-unit-scale-zero", experiment("--unit-scale", "0"), ("--unit-scale", "0")),
    Case("exp-unit-scale-nan", experiment("--unit-scale", "nan"), ("--unit-scale", "nan")),
    Case("exp-unit-scale-huge", experiment("--unit-scale", "1e6"), ("--unit-scale", "1e+06")),
    Case("exp-envs-unknown", experiment("--envs", "Nope-v0"), ("Nope-v0",)),
    Case("exp-envs-empty", experiment("--envs", ","), ("--envs",)),
    Case("exp-runs-no-match", experiment("--runs", "zzz"), ("--runs", "zzz")),
    Case("exp-storage-without-ray", experiment("--storage", "{empty}/s"), ("--storage",)),
    Case("exp-gpus-without-ray", experiment("--gpus-per-run", "1"), ("--gpus-per-run",)),
    Case("exp-out-a-file", ["experiment", "width", "--out", "{file}", "--dry-run"], ("--out",)),
    Case(
        "exp-seeds-per-process-between",
        experiment("--seeds", "3", "--seeds-per-process", "2"),
        ("--seeds-per-process", "2"),
    ),  # fmt: skip
    Case(
        "exp-ray-nobody",
        [
            "experiment",
            "width",
            "--ray-address",
            "127.0.0.1:1",
            "--storage",
            "{empty}/s",
            "--seeds",
            "1",
            "--steps",
            "20",
        ],
        ("--ray-address",),
    ),  # fmt: skip
]


def bench(*flags: str) -> list[str]:
    return ["bench", "--units", "16", "--updates", "2", "--rounds", "1", "--no-peer", *flags]


BENCH = [
    Case("bench-units-huge", bench("--units", "400000"), ("--units", "400000")),
    Case("bench-units-int64", bench("--units", BIG), ("--units",)),
    Case("bench-batch-huge", bench("--batch-size", "100000000"), ("--batch-size",)),
    Case("bench-threads-above-cpus", bench("--threads", "4096"), ("--threads", "4096")),
    Case("bench-threads-negative", bench("--threads", "-1"), ("--threads", "-1")),
    Case("bench-no-peer-and-peer", bench("--peer", "sbx"), ("--no-peer", "--peer")),
    Case("bench-env-unknown", bench("--env", "Nope-v0"), ("Nope-v0",)),
    Case(
        "bench-env-missing-dep",
        bench("--env", "LunarLanderContinuous-v3"),
        ("LunarLanderContinuous-v3",),
    ),  # fmt: skip
    Case("bench-device-cuda", bench("--device", "cuda"), ("--device cuda",)),
    Case("bench-atoms-one", bench("--critic-head", "c51", "--atoms", "1"), ("--atoms", "1")),
    Case("bench-preset-unknown", bench("--preset", "nope"), ("--preset", "nope")),
    Case("bench-seeds-zero", bench("--stacked-seeds", "0"), ("--stacked-seeds", "0")),
    Case("bench-updates-int64", bench("--updates", BIG), ("--updates",)),
    Case("bench-crossq-simba", bench("--algo", "crossq", "--arch", "simba"), ("--arch simba",)),
]


def export(*flags: str, run: str = "{run}") -> list[str]:
    return ["export", run, *flags]


EXPORT = [
    Case("export-not-a-run", export(run="{empty}"), ("config.json",)),
    Case("export-missing", export(run="{empty}/nothing"), ("nothing",)),
    Case("export-a-file", export(run="{file}"), ("file",)),
    Case("export-seeds-run-no-seed", export(run="{seeds}"), ("seeds 0, 1", "--seed")),
    Case("export-seeds-run-other-seed", export("--seed", "5", run="{seeds}"), ("--seed 5",)),
    Case("export-seed-of-one-run", export("--seed", "3"), ("--seed 3", "seed 0")),
    Case("export-seed-negative", export("--seed", "-1"), ("--seed", "-1")),
    Case("export-format-unknown", export("--format", "tflite"), ("--format", "tflite")),
    Case(
        "export-out-other-suffix",
        export("--format", "pt2", "--out", "{empty}/p.onnx"),
        ("--out", ".pt2"),
    ),  # fmt: skip
    Case(
        "export-out-exists",
        export("--out", "{empty}/p.onnx"),
        ("--out", "--force"),
        damage=write("empty/p.onnx", "an earlier export"),
    ),  # fmt: skip
    Case("export-out-no-suffix", export("--out", "{empty}/policy.bin"), ("--out", ".onnx")),
    Case("export-out-folder", export("--out", "{empty}"), ("--out", "folder")),
    Case("export-out-unwritable", export("--out", "/proc/widerl/p.onnx"), ("--out",)),
    Case("export-no-checkpoint", export(), ("checkpoint",), damage=remove("run/checkpoint.pt")),
    Case(
        "export-checkpoint-garbage",
        export(),
        ("checkpoint.pt",),
        damage=write("run/checkpoint.pt", "x"),
    ),  # fmt: skip
    Case(
        "export-config-units-string",
        export(),
        ("config.json", "units"),
        damage=edit_config("run", units="wide"),
    ),  # fmt: skip
]


def api_resolve(**overrides: Any) -> Callable[[Path], Any]:
    def call(box: Path) -> Any:
        import widerl

        return widerl.resolve(overrides)

    return call


def api_config(**values: Any) -> Callable[[Path], Any]:
    def call(box: Path) -> Any:
        import widerl

        return widerl.train(widerl.Config(**values), box / "new")

    return call


def api_train(**kwargs: Any) -> Callable[[Path], Any]:
    def call(box: Path) -> Any:
        import widerl

        kwargs2 = {k: (str(box / v[1:]) if isinstance(v, str) and v.startswith("@") else v)
                   for k, v in kwargs.items()}  # fmt: skip
        return widerl.train(**kwargs2)

    return call


def api_policy_nan(box: Path) -> Any:
    import numpy as np

    import widerl

    return widerl.load_policy(box / "run").act(np.array([np.nan, 0.0, 0.0]))


def api_policy_shape(box: Path) -> Any:
    import numpy as np

    import widerl

    return widerl.load_policy(box / "run").act(np.zeros(5))


def api_policy_obs(box: Path, obs: Any) -> Any:
    import widerl

    return widerl.load_policy(box / "run").act(obs)


def widerl_export(run: Path, fmt: str) -> Any:
    import widerl

    return widerl.export(run, fmt)


def api_load_policy(rel: str) -> Callable[[Path], Any]:
    def call(box: Path) -> Any:
        import widerl

        return widerl.load_policy(box / rel)

    return call


API = [
    Case("api-resolve-misspelt-key", call=api_resolve(unitz=3), words=("unitz", "units")),
    Case("api-resolve-wrong-type", call=api_resolve(units="wide"), words=("units", "wide")),
    Case("api-resolve-float-units", call=api_resolve(units=16.5), words=("units", "16.5")),
    Case("api-resolve-none-units", call=api_resolve(units=None), words=("units", "None")),
    Case("api-resolve-bool-for-int", call=api_resolve(units=True), words=("units", "True")),
    Case("api-resolve-string-lr", call=api_resolve(lr="0.1"), words=("lr",)),
    Case("api-resolve-unknown-algo", call=api_resolve(algo="ppo"), words=("algo", "ppo")),
    Case("api-config-misspelt-key", call=api_config(unitz=3), words=("unitz",)),
    Case("api-config-wrong-type", call=api_config(units="wide"), words=("units", "wide")),
    Case("api-train-no-config", call=api_train(), words=("Config",)),
    Case("api-train-resume-and-cfg", call=api_train(resume="@run", seeds=[0]), words=("resume",)),
    Case(
        "api-train-resume-unknown-override",
        call=api_train(resume="@run", unitz=3),
        words=("unitz",),
    ),  # fmt: skip
    Case(
        "api-train-resume-steps-below", call=api_train(resume="@run", steps=3), words=("steps", "3")
    ),  # fmt: skip
    Case(
        "api-train-seeds-negative",
        call=api_train(cfg=None, resume=None, seeds=[-1]),
        words=("Config",),
    ),  # fmt: skip
    Case("api-policy-nan", call=api_policy_nan, words=("obs", "nan")),
    Case("api-policy-shape", call=api_policy_shape, words=("obs", "5")),
    Case("api-policy-text", call=lambda box: api_policy_obs(box, "abc"), words=("obs",)),
    Case("api-policy-3d", call=lambda box: api_policy_obs(box, [[[0.0] * 3]]), words=("obs",)),
    Case("api-load-policy-empty", call=api_load_policy("empty"), words=("config.json",)),
    Case("api-load-policy-seeds", call=api_load_policy("seeds"), words=("seeds",)),
    Case(
        "api-export-format",
        call=lambda box: widerl_export(box / "run", "tflite"),
        words=("format", "tflite"),
    ),  # fmt: skip
]

CASES = [*TRAIN_NEW, *TRAIN_RESUME, *EVAL, *SUMMARY, *LANDSCAPE, *REPORT, *EXPERIMENT, *BENCH,
         *EXPORT, *API]  # fmt: skip


# --- the sandbox -------------------------------------------------------------------------------
_BASE: Path | None = None


def base() -> Path:
    """The prepared folders, built once per process: `run` (a finished run, 10 updates),
    `seeds` (seeds 0 and 1), `runs/` (for report: `a`, a copy of run, and `warm`, stopped in
    its warm-up: a header-only metrics.csv), `lsdone` (landscape outputs), `file`, `empty/`."""
    global _BASE
    if _BASE is not None:
        return _BASE
    from widerl.cli import main

    root = Path(tempfile.mkdtemp(prefix="widerl-bad-inputs-"))
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["train", *SHORT, "--out", str(root / "run")]) == 0
        assert main(["train", *SHORT, "--seeds", "0,1", "--out", str(root / "seeds")]) == 0
        assert main(["landscape", str(root / "run"), "--grid", "3", "--out",
                     str(root / "lsdone")]) == 0  # fmt: skip
    shutil.copytree(root / "run", root / "runs" / "a")
    warm = root / "runs" / "warm"
    shutil.copytree(root / "run", warm)
    header = (warm / "metrics.csv").read_text().splitlines()[0]
    (warm / "metrics.csv").write_text(header + "\n")
    (warm / "checkpoint.pt").unlink()
    edit_config("runs/warm", seed=1)(root)  # another seed of a's configuration
    (root / "file").write_text("not a run\n")
    (root / "empty").mkdir()
    _BASE = root
    return root


def _snapshot(root: Path) -> dict[str, str]:
    """Every file and folder under `root` with a digest of its contents."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_dir():
            out[rel + "/"] = "dir"
        elif path.is_file():
            out[rel] = hashlib.sha1(path.read_bytes()).hexdigest()
    return out


@contextlib.contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    """A command that was accepted would train on: stop it after `seconds`."""

    def expire(*_: Any) -> None:
        raise TimeoutError(f"still running after {seconds:g} s")

    old = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@dataclass
class Outcome:
    kind: str
    detail: str


def classify(case: Case, workdir: Path, seconds: float = 60) -> Outcome:
    """Run `case` in a fresh sandbox under `workdir` and say which class its outcome is."""
    from widerl.cli import main
    from widerl.config import ConfigError

    box = workdir / case.id
    shutil.copytree(base(), box, symlinks=True)
    if case.damage is not None:
        case.damage(box)
    before = _snapshot(box)
    paths = {k: str(box / k) for k in ("run", "seeds", "runs", "lsdone", "file", "empty")}
    paths["new"] = str(box / "empty" / "new")
    err, out = io.StringIO(), io.StringIO()
    raised: BaseException | None = None
    rc: int | None = None
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out), _deadline(seconds):
        try:
            if case.call is not None:
                case.call(box)
                rc = 0
            else:
                rc = main([a.format(**paths) for a in case.argv])
        except ConfigError as e:  # the API's one refusal
            if case.call is None:
                raise
            err.write(f"widerl: error: {e}\n")
            rc = 2
        except SystemExit as e:
            rc = e.code if isinstance(e.code, int) else 1
        except BaseException as e:  # noqa: BLE001 - what the user would see as a traceback
            raised = e
    after = _snapshot(box)
    text = err.getvalue().strip()
    lost = [k for k, v in before.items() if after.get(k) != v]
    new = [k for k in after if k not in before]
    shutil.rmtree(box, ignore_errors=True)
    if raised is not None and not isinstance(raised, TimeoutError):
        tb = "".join(traceback.format_exception(raised)).strip().splitlines()
        return Outcome("traceback", f"{type(raised).__name__}: {raised} ({tb[-3:]})")
    if "Traceback" in text or (case.call is None and "Traceback" in out.getvalue()):
        return Outcome("traceback", text[-500:])
    if lost:
        return Outcome("data lost", f"changed or removed: {lost[:4]}; rc {rc}; {text[:200]}")
    if isinstance(raised, TimeoutError) or rc == 0 and case.rc != 0:
        return Outcome("accepted silently", f"rc {rc}; {text[:300]}")
    if new and case.rc != 0:
        return Outcome("wrote first", f"new: {new[:4]}; rc {rc}; {text[:300]}")
    lines = text.splitlines()
    if case.rc == 0:
        said = text + out.getvalue()
        ok = rc == 0 and all(w in said for w in case.words)
        return Outcome("clean" if ok else "unclear", f"rc {rc}; {text[:300]}")
    one = len(lines) == 1 and lines[0].startswith("widerl: error: ")
    if rc == case.rc and one and all(w in text for w in case.words):
        return Outcome("clean", text)
    missing = [w for w in case.words if w not in text]
    return Outcome("unclear", f"rc {rc}; lines {len(lines)}; missing {missing}; {text[:400]}")


# --- the test ----------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, tmp_path: Path) -> None:
    outcome = classify(case, tmp_path)
    assert outcome.kind == "clean", f"{case.id}: {outcome.kind}: {outcome.detail}"


def test_the_battery_is_large_and_unique() -> None:
    assert len(CASES) >= 150
    assert len({c.id for c in CASES}) == len(CASES)


def main() -> None:
    """Print the classes of every case (one line each) and the counts."""
    work = Path(tempfile.mkdtemp(prefix="widerl-battery-"))
    counts: Counter[str] = Counter()
    by_command: dict[str, Counter[str]] = {}
    only = set(sys.argv[1:])
    for case in CASES:
        if only and case.id not in only and case.command not in only:
            continue
        outcome = classify(case, work)
        counts[outcome.kind] += 1
        by_command.setdefault(case.command, Counter())[outcome.kind] += 1
        detail = "" if outcome.kind == "clean" else f"  {outcome.detail[:300]}"
        print(f"{outcome.kind:18} {case.id}{detail}", flush=True)
    print(f"\n{sum(counts.values())} cases: " + ", ".join(f"{k} {counts[k]}" for k in CLASSES))
    for command, c in by_command.items():
        print(f"  {command:10} " + ", ".join(f"{k} {c[k]}" for k in CLASSES if c[k]))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("MPLBACKEND", "Agg")
    sys.path.insert(0, str(Path(__file__).parent))
    main()
