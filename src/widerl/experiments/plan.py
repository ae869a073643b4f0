"""An experiment scaled to the user's --seeds/--steps/--envs, as concrete `widerl train` jobs.

Each job is one (run, seed) with its folder OUT/<experiment>/<env>-<run>/s<seed>, and the
state of that folder decides what a (re)run does: start it, continue it with --resume, or
skip it because it already reached its budget.
"""

from __future__ import annotations

import csv
import fnmatch
import json
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from widerl.config import ConfigError
from widerl.experiments.registry import EXPERIMENTS, Experiment, RunSpec
from widerl.record.names import CHECKPOINT, CONFIG, LOG, METRICS

PAPER_EVAL_EVERY = 5_000  # Ota et al. (2020)'s protocol; the Config default
MIN_CURVE_POINTS = 20  # a scaled-down run still evaluates at least this often
# Settings the experiment owns; --train-args may not set them.
OWNED = ("seed", "out", "steps", "env", "threads", "progress")
# Not passed on --resume: given separately, or scaled with --steps (eval_every), which a
# resumed run could not change (rundir.RESUMABLE_OVERRIDES).
NOT_COMPARED_ON_RESUME = ("out", "steps", "threads", "progress", "eval_every")

NEW, RESUME, RESTART, DONE = "new", "resume", "restart", "done"
# Whether `widerl experiment` trains all of a run's seeds in one process by default (--seeds-per-
# process). `widerl bench --stacked-seeds 5` on an idle 2-core machine, once the learning step
# kept its freed memory (allocator.py), measured 1.25-1.28x for paper-original (1.01x compiled)
# and 1.18-1.22x for paper-S against separate processes (benchmarks/README.md), and one process
# per run saves memory: stacking is the default.
STACK_SEEDS = True


@dataclass(frozen=True)
class Job:
    experiment: str
    run: str  # <env>-<run name>
    seed: int
    run_dir: Path
    steps: int
    settings: dict[str, Any]  # every flag passed to `widerl train` except preset and owned ones
    preset: str | None
    threads: int

    def state(self) -> str:
        return run_state(self.run_dir, self.steps)

    def train_args(self, state: str | None = None) -> list[str]:
        """`widerl train` arguments for this job in the folder's current `state`."""
        state = state or self.state()
        common = ["--steps", str(self.steps), "--threads", str(self.threads), "--no-progress"]
        if state == RESUME:
            # The stored config decides; the run's own flags go along so that `train`
            # refuses a folder that holds a different run (rundir.merge_resume).
            same = {k: v for k, v in self.settings.items() if k not in NOT_COMPARED_ON_RESUME}
            return ["train", "--resume", str(self.run_dir), *common, *to_flags(same)]
        preset = ["--preset", self.preset] if self.preset else []
        force = ["--force"] if state == RESTART else []
        out = ["--seed", str(self.seed), "--out", str(self.run_dir)]
        return ["train", *preset, *to_flags(self.settings), *out, *common, *force]

    @property
    def label(self) -> str:
        return f"{self.run} s{self.seed}"

    @property
    def log(self) -> Path:
        return self.run_dir / LOG

    @property
    def seeds(self) -> int:
        return 1

    def argv(self, state: str | None = None) -> list[str]:
        return [sys.executable, "-m", "widerl.cli", *self.train_args(state)]

    def display(self, state: str | None = None) -> str:
        return shlex.join(["widerl", *self.train_args(state)])


@dataclass(frozen=True)
class PackJob:
    """Several seeds of one run trained in one process (`widerl train --seeds`), each in its
    own folder OUT/<experiment>/<env>-<run>/s<seed> as a single-seed job would be; the pack
    owns the run's folder (its seeds.json, its lock)."""

    members: tuple[Job, ...]

    def __getattr__(self, name: str) -> Any:  # what every member shares: run, steps, ...
        if name == "members":  # not set yet (copy, unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.members[0], name)

    @property
    def run_dir(self) -> Path:
        return self.members[0].run_dir.parent

    @property
    def log(self) -> Path:
        return self.run_dir / LOG

    @property
    def seeds(self) -> int:
        return len(self.members)

    @property
    def label(self) -> str:
        return f"{self.members[0].run} s{','.join(str(m.seed) for m in self.members)}"

    def state(self) -> str:
        return pack_state(self.members) or RESTART

    def train_args(self, state: str | None = None) -> list[str]:
        state = state or self.state()
        first = self.members[0]
        common = ["--steps", str(first.steps), "--threads", str(first.threads), "--no-progress"]
        if state == RESUME:
            same = {k: v for k, v in first.settings.items() if k not in NOT_COMPARED_ON_RESUME}
            return ["train", "--resume", str(self.run_dir), *common, *to_flags(same)]
        preset = ["--preset", first.preset] if first.preset else []
        force = ["--force"] if state == RESTART else []
        seeds = ",".join(str(m.seed) for m in self.members)
        out = ["--seeds", seeds, "--out", str(self.run_dir)]
        return ["train", *preset, *to_flags(first.settings), *out, *common, *force]

    def argv(self, state: str | None = None) -> list[str]:
        return [sys.executable, "-m", "widerl.cli", *self.train_args(state)]

    def display(self, state: str | None = None) -> str:
        return shlex.join(["widerl", *self.train_args(state)])


def pack_state(members: tuple[Job, ...]) -> str | None:
    """What a process of these seeds does: done, new, restart (no seed learned anything yet),
    resume (their folder is a `--seeds` run of exactly these seeds, all with a checkpoint);
    None when they cannot go on together (some seeds learned apart): then each seed runs
    alone."""
    from widerl.record.seeds import read_seeds

    states = {m.state() for m in members}
    if states == {DONE}:
        return DONE
    if states == {NEW}:
        return NEW
    if states <= {NEW, RESTART}:
        return RESTART
    parent = members[0].run_dir.parent
    try:
        packed = read_seeds(parent) == [m.seed for m in members]
    except ConfigError:
        packed = False
    return RESUME if packed and states == {RESUME} else None


def pack_jobs(jobs: list[Job], per_process: int) -> list[Job | PackJob]:
    """The jobs with every run's seeds in processes of `per_process` (1: unchanged)."""
    if per_process <= 1:
        return list(jobs)
    by_run: dict[str, list[Job]] = {}
    for job in jobs:
        by_run.setdefault(job.run, []).append(job)
    out: list[Job | PackJob] = []
    for members in by_run.values():
        members = sorted(members, key=lambda j: j.seed)
        if len(members) > per_process:
            raise ConfigError(
                f"--seeds-per-process {per_process} would split the {len(members)} seeds of a "
                "run over several processes, which is not supported yet, because a --seeds "
                f"process owns its run's folder: use 1 or at least {len(members)}"
            )
        group = tuple(members)
        if pack_state(group) is None:  # seeds trained apart before: each continues alone
            out.extend(group)
        else:
            out.append(PackJob(group))
    return out


def to_flags(settings: dict[str, Any]) -> list[str]:
    """Config field values as `widerl train` flags (field names with dashes)."""
    flags: list[str] = []
    for key, value in settings.items():
        name = key.replace("_", "-")
        if isinstance(value, bool):
            flags.append(f"--{name}" if value else f"--no-{name}")
        else:
            flags += [f"--{name}", str(value)]
    return flags


def last_grad_step(run_dir: Path) -> int | None:
    """The grad_step of metrics.csv's last row, or None without a readable row."""
    path = run_dir / METRICS
    if not path.is_file():
        return None
    try:
        with path.open(newline="") as f:
            steps = [row.get("grad_step") for row in csv.DictReader(f)]
        return int(steps[-1]) if steps and steps[-1] else None
    except (OSError, ValueError, csv.Error):
        return None


def run_state(run_dir: Path, steps: int) -> str:
    """done: its metrics reached `steps` (the trainer logs the last update, run/trainer.py);
    resume: a checkpoint to continue from; restart: a folder a crash left without a
    checkpoint (nothing learned to lose); new: nothing there yet."""
    last = last_grad_step(run_dir)
    if last is not None and last >= steps:
        return DONE
    if (run_dir / CHECKPOINT).is_file():
        return RESUME
    if any((run_dir / name).exists() for name in (CONFIG, METRICS)):
        return RESTART
    return NEW


def get_experiment(name: str) -> Experiment:
    if name not in EXPERIMENTS:
        raise ConfigError(f"unknown experiment {name!r}; choose from {', '.join(EXPERIMENTS)}")
    return EXPERIMENTS[name]


def eval_every_for(steps: int) -> int:
    """The paper protocol's 5000, or less so a scaled-down run still gives a curve."""
    return max(1, min(PAPER_EVAL_EVERY, steps // MIN_CURVE_POINTS))


def plan(
    exp: Experiment,
    out: Path,
    seeds: int | None = None,
    steps: int | None = None,
    envs: tuple[str, ...] | None = None,
    threads: int = 1,
    train_overrides: dict[str, Any] | None = None,
    unit_scale: float = 1.0,
    runs: tuple[str, ...] | None = None,
) -> list[Job]:
    """Every (run, seed) job of `exp`, seed by seed (a first complete picture comes early).
    `envs` replaces the experiment's tasks; `runs` (shell patterns, `select_runs`) keeps
    some of its runs; `train_overrides` apply to every run;
    `unit_scale` multiplies every network's width (critics, a policy of its own width, OFENet)
    for a smaller machine."""
    if not unit_scale > 0:
        raise ConfigError(f"--unit-scale must be positive, got {unit_scale}")
    for label, value in (("--seeds", seeds), ("--steps", steps), ("--threads", threads)):
        if value is not None and value < 1:
            raise ConfigError(f"{label} must be a positive integer, got {value}")
    overrides = dict(train_overrides or {})
    owned = sorted(set(overrides) & set(OWNED))
    if owned:
        flags = ", ".join("--" + k.replace("_", "-") for k in owned)
        raise ConfigError(f"--train-args may not set {flags}; the experiment sets them")
    studied = sorted(set(overrides) & set(varied(exp)))
    if studied:
        flags = ", ".join("--" + k.replace("_", "-") for k in studied)
        raise ConfigError(
            f"--train-args may not set {flags}: experiment {exp.name} varies it across its "
            "runs, and every run would then train the same value under its own label (use "
            "--runs to keep some runs, or --unit-scale to scale the widths)"
        )
    n_steps = steps or exp.steps
    scale = {"eval_every": eval_every_for(n_steps)} if steps else {}
    specs = select_runs(exp, runs)
    jobs = []
    for seed in range(seeds or exp.seeds):
        for env in envs or exp.envs:
            for spec in specs:
                name = f"{env}-{spec.name}"
                sizes = scaled_units(spec.settings, spec.preset, env, unit_scale)
                jobs.append(
                    Job(
                        experiment=exp.name,
                        run=name,
                        seed=seed,
                        run_dir=out / exp.name / name / f"s{seed}",
                        steps=n_steps,
                        settings={"env": env, **spec.settings, **sizes, **scale, **overrides},
                        preset=spec.preset,
                        threads=threads,
                    )
                )
    return jobs


# The settings that say what a run is (its algorithm, networks, collection): where an
# experiment's runs differ in one, a --train-args value for it would train the same thing
# under every run's label. The rest (learning rate, batch size, warm-up, ...) are details a
# recipe sets and --train-args may tune.
NAMING = ("algo", "arch", "units", "layers", "activation", "batchnorm", "critics", "critic_head",
          "obs_norm", "ofenet_units", "ofenet_layers", "actor_units", "actor_layers", "actors",
          "prioritized")  # fmt: skip


def varied(exp: Experiment) -> list[str]:
    """What `exp` studies: the settings among `NAMING` its runs (or their presets) set and
    whose values differ between the runs. A value that differs only as a consequence (an
    algorithm's own default, say) is not among them."""
    from widerl.config import PRESETS, resolve

    env = exp.envs[0]
    named = {k for spec in exp.runs for k in (*spec.settings, *PRESETS.get(spec.preset or "", {}))
             if k in NAMING}  # fmt: skip
    values = [json.loads(resolve({"env": env, **spec.settings}, spec.preset).to_json())
              for spec in exp.runs]  # fmt: skip
    return sorted(k for k in named if any(v[k] != values[0][k] for v in values[1:]))


def scaled_units(
    settings: dict[str, Any], preset: str | None, env: str, factor: float
) -> dict[str, int]:
    """--units, --actor-units (when set apart from --units) and --ofenet-units times `factor`
    (OFENet's kept a multiple of its layers, so it still splits evenly); nothing when the
    factor is 1."""
    if factor == 1.0:
        return {}
    from widerl.config import resolve

    cfg = resolve({"env": env, **settings}, preset)
    out = {"units": max(1, round(cfg.units * factor))}
    if cfg.actor_units:
        out["actor_units"] = max(1, round(cfg.actor_units * factor))
    if cfg.ofenet_units:
        per_layer = max(1, round(cfg.ofenet_units * factor / cfg.ofenet_layers))
        out["ofenet_units"] = per_layer * cfg.ofenet_layers
    return out


def select_runs(exp: Experiment, patterns: tuple[str, ...] | None) -> list[RunSpec]:
    """The runs of `exp` whose names match any of `patterns` (fnmatch: `*-256` keeps every
    family's 256-unit run), in the experiment's order; every pattern must match a run."""
    if patterns is None:
        return list(exp.runs)
    names = [spec.name for spec in exp.runs]
    for pattern in patterns:
        if not fnmatch.filter(names, pattern):
            raise ConfigError(
                f"--runs {pattern!r} matches no run of {exp.name}; its runs: {', '.join(names)}"
            )
    return [s for s in exp.runs if any(fnmatch.fnmatchcase(s.name, p) for p in patterns)]


def parse_runs(text: str | None) -> tuple[str, ...] | None:
    """--runs A,B: comma-separated run names or shell patterns."""
    if text is None:
        return None
    patterns = tuple(s.strip() for s in text.split(","))
    if not all(patterns):
        raise ConfigError(f"--runs {text!r} has an empty entry; give names like mlp-256,*-1024")
    return patterns


def parse_envs(text: str | None) -> tuple[str, ...] | None:
    """--envs A,B: checked ids, in order, each once."""
    if text is None:
        return None
    ids = [s.strip() for s in text.split(",")]
    if not all(ids):
        raise ConfigError(f"--envs {text!r} has an empty entry; give ids like Ant-v5,Hopper-v5")
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise ConfigError(f"--envs lists {', '.join(dup)} more than once")
    from widerl.collect.envs import check_env_id  # imports gymnasium

    for env_id in ids:
        check_env_id(env_id)
    return tuple(ids)
