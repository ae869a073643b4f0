"""Run folders for `widerl report`: found under the given folders, read, and grouped by
configuration minus seed (the paper reports every configuration over several seeds, Sec. 4).

A group's statistics use only the evaluation steps that every one of its seeds has reached, so
a mean over seeds is always a mean over the same seeds (a run still training shortens its
group's curve instead of silently changing what is averaged).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from widerl.config import Config, ConfigError
from widerl.record.folder import RESUMABLE_OVERRIDES, load_config, read_rows
from widerl.record.names import CONFIG, METRICS, TB

RETURN = "eval_return_mean"
SRANK = "srank"
# Columns read from metrics.csv (others are ignored); grad_step is the x-axis (Sec. 4).
CURVE_COLUMNS = (RETURN, SRANK)
# Settings that do not change what a run learns, and those a resume may change (how long and
# where it runs): runs differing only in these belong to the same group. A compiled step
# computes the eager step's update, to float rounding (tests/run/test_options_through_the_
# trainer.py): --compile is how fast a run learns, not what.
IGNORED = ("seed", "out", "checkpoint_replay", "dims", "compile", *RESUMABLE_OVERRIDES)
_DEFAULTS = dataclasses.asdict(Config())
_ORDER = {name: i for i, name in enumerate(_DEFAULTS)}


@dataclass
class Run:
    path: Path
    config: dict[str, Any]
    steps: np.ndarray  # grad_step of each evaluation row
    columns: dict[str, np.ndarray]  # CURVE_COLUMNS present in the file; NaN where empty

    @property
    def env(self) -> str:
        return str(self.config.get("env"))

    @property
    def seed(self) -> Any:
        return self.config.get("seed")

    def key(self) -> tuple[tuple[str, Any], ...]:
        """The configuration minus seed and run-only settings, env included."""
        names = sorted((k for k in self.config if k not in IGNORED), key=_field_rank)
        return tuple((k, _hashable(self.config[k])) for k in names)


@dataclass
class Group:
    env: str
    key: tuple[tuple[str, Any], ...]
    runs: list[Run]
    label: str = ""
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def seeds(self) -> int:
        return len(self.runs)

    def curve(self, column: str = RETURN) -> tuple[np.ndarray, np.ndarray]:
        """(steps, values[run, step]) at the steps where every run has a value."""
        if any(column not in r.columns for r in self.runs):
            return np.zeros(0, dtype=np.int64), np.zeros((len(self.runs), 0))
        tables = [
            {int(s): float(v) for s, v in zip(r.steps, r.columns[column], strict=True)}
            for r in self.runs
        ]
        common = set.intersection(*({s for s, v in t.items() if math.isfinite(v)} for t in tables))
        steps = np.array(sorted(common), dtype=np.int64)
        values = np.array([[t[s] for s in steps] for t in tables], dtype=np.float64)
        return steps, values.reshape(len(self.runs), len(steps))

    def has(self, column: str) -> bool:
        return self.curve(column)[0].size > 0


def _field_rank(name: str) -> tuple[int, str]:
    return (_ORDER.get(name, len(_ORDER)), name)


def _hashable(value: Any) -> Any:
    if isinstance(value, (list, dict)):
        return json.dumps(value, sort_keys=True)
    return value


def find_run_dirs(dirs: list[Path]) -> list[Path]:
    """Every folder under `dirs` (or `dirs` themselves) holding config.json and metrics.csv."""
    found: dict[Path, None] = {}
    for d in dirs:
        if not Path(d).is_dir():
            raise ConfigError(f"{str(d)!r} is not a folder")
        for root, subdirs, files in os.walk(d):
            for name in (CONFIG, METRICS):
                if name in subdirs:  # a damaged copy or a hand edit: say so, do not skip it
                    raise ConfigError(f"{str(Path(root) / name)!r} is a folder, not a run's file")
            subdirs[:] = sorted(s for s in subdirs if s != TB)  # TensorBoard events only
            if CONFIG in files and METRICS in files:
                found.setdefault(Path(root).resolve(), None)
    if not found:
        names = ", ".join(repr(str(d)) for d in dirs)
        raise ConfigError(f"no run folder (config.json + metrics.csv) found under {names}")
    return sorted(found)


def _number(text: str, path: Path, line: int, column: str) -> float:
    if text == "":
        return math.nan
    try:
        return float(text)
    except ValueError:
        raise ConfigError(
            f"cannot read {str(path)!r}: line {line}, {column} is {text!r}, not a number"
        ) from None


def load_run(run_dir: Path) -> Run:
    # The config as every command reads it (types and values checked); the grouping keeps
    # what the file says (its `dims` too). Runs written before a setting existed ran with
    # its default.
    load_config(run_dir, "widerl report: run")
    raw = json.loads((run_dir / CONFIG).read_text(encoding="utf-8"))
    config = {**_DEFAULTS, **raw}
    path = run_dir / METRICS
    header, rows = read_rows(run_dir, "widerl report: run")
    if RETURN not in header:
        raise ConfigError(f"cannot read {str(path)!r}: no {RETURN!r} column")
    present = [c for c in CURVE_COLUMNS if c in header]
    by_step: dict[int, list[float]] = {}
    last = None
    for i, row in enumerate(rows, start=2):
        step = int(row["grad_step"])  # read_rows: a count of updates on every line
        if last is not None and step <= last:
            # Rows of two runs interleaved (two trainings on one folder, which the run lock
            # now prevents) or a hand-edited file: no curve can be read from it.
            how = "repeats" if step == last else f"goes back after {last}"
            raise ConfigError(
                f"cannot read {str(path)!r}: line {i}, grad_step {step} {how}; "
                "the file mixes rows of more than one run"
            )
        last = step
        by_step[step] = [_number(row.get(c) or "", path, i, c) for c in present]
    steps = np.array(sorted(by_step), dtype=np.int64)
    table = np.array([by_step[s] for s in steps], dtype=np.float64)
    table = table.reshape(len(steps), len(present))  # a run stopped in its warm-up has none
    columns = {c: table[:, j] for j, c in enumerate(present)}
    return Run(path=run_dir, config=config, steps=steps, columns=columns)


def format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def group_runs(runs: list[Run]) -> list[Group]:
    """Groups per env and configuration; each labelled by the settings that differ across all
    groups (env aside), so one configuration has the same label in every env."""
    groups: dict[tuple, Group] = {}
    seen: dict[tuple, Run] = {}
    for run in runs:
        key = run.key()
        twin = seen.get((key, _hashable(run.seed)))
        if twin is not None:
            raise ConfigError(
                f"runs {str(twin.path)!r} and {str(run.path)!r} have the same configuration "
                f"and seed {run.seed}; pass only one of them"
            )
        seen[(key, _hashable(run.seed))] = run
        groups.setdefault(key, Group(env=run.env, key=key, runs=[])).runs.append(run)
    out = list(groups.values())
    for g in out:
        g.runs.sort(key=lambda r: (str(r.seed), str(r.path)))
    naming = label_fields(out)
    for g in out:
        g.settings = {k: dict(g.key).get(k) for k in naming}
        g.label = label_of(g, naming)
    return sorted(out, key=lambda g: (g.env, _sort_key(g)))


def label_of(group: Group, fields: list[str]) -> str:
    """ "units=1024 layers=2": the group's values of `fields` (its algo when there are none)."""
    d = dict(group.key)
    return " ".join(f"{k}={format_value(d.get(k))}" for k in (fields or ["algo"]))


def label_fields(groups: list[Group]) -> list[str]:
    """The differing settings that name `groups`: each one in Config order unless its value
    follows from the env and the differing settings before it. So a configuration is named by
    what was varied, not by what a preset or a per-task default sets along with it: Fig. 5's
    `arch=densenet units=2048` (its Swish follows from the arch), `scaling`'s `arch=simba
    units=512` (the simba preset's learning rate, obs-norm, actor width follow), and one name
    for one configuration in every env (OFENet's per-task --ofenet-target-dim, the bro
    preset's per-task value support). Within an env the names stay unique: every setting left
    out is a function of the env and the ones kept."""
    fields = differing_fields(groups)
    keys = [dict(g.key) for g in groups]
    kept = []
    for i, name in enumerate(fields):
        before = ["env", *fields[:i]]
        seen: dict[tuple, str] = {}
        for k in keys:
            value = repr(k.get(name))
            if seen.setdefault(tuple(repr(k.get(b)) for b in before), value) != value:
                kept.append(name)
                break
    return kept


def differing_fields(groups: list[Group]) -> list[str]:
    """Settings (env aside) whose value is not the same in all `groups`, in Config order."""
    names: set[str] = set()
    for g in groups:
        names.update(k for k, _ in g.key)
    names.discard("env")
    return [
        n
        for n in sorted(names, key=_field_rank)
        if len({repr(dict(g.key).get(n)) for g in groups}) > 1
    ]


def _sort_key(g: Group) -> tuple:
    # Numbers sort as numbers (128 < 1024), everything else as text.
    return tuple(
        (0, v, "") if isinstance(v, (int, float)) else (1, 0, str(v)) for v in g.settings.values()
    )


def load_groups(dirs: list[Path]) -> list[Group]:
    return group_runs([load_run(d) for d in find_run_dirs(dirs)])
