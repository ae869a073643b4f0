"""`widerl report`: the paper's figures and tables from run folders, on one markdown page.

- learning curves: mean +- 1 std over seeds against gradient steps (Sec. 4), per env;
- effective rank curves the same way when metrics.csv has an `srank` column (Fig. 5b, 6b);
- heatmaps of the average maximum return over two numeric settings (Fig. 4, 7, 8);
- Table 1: the highest average return of each configuration in each env;
- IQM across envs with stratified bootstrap CIs (Agarwal et al. 2021), which the paper lacks.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from widerl.config import ConfigError
from widerl.experiments import plots, stats
from widerl.experiments.runs import (
    IGNORED,
    RETURN,
    SRANK,
    Group,
    differing_fields,
    find_run_dirs,
    format_value,
    group_runs,
    label_fields,
    label_of,
    load_run,
)
from widerl.record.paths import check_writable

REPORT = "report.md"
RESULTS = "results.csv"
SCORES = ("final", "max")
# An IQM of fewer than 4 pooled runs trims nothing (it is a plain mean), and a stratified
# bootstrap cannot resample an env with one run: its CI would collapse to a point.
MIN_IQM_RUNS = 4
MIN_IQM_SEEDS_PER_ENV = 2


@dataclass
class Summary:
    """One group's numbers, over the evaluation steps all of its seeds reached."""

    group: Group
    steps: np.ndarray
    values: np.ndarray  # eval_return_mean[seed, step]

    @property
    def highest(self) -> tuple[float, int]:
        """Table 1: max over evaluation steps of the mean over seeds, and its step."""
        mean = self.values.mean(axis=0)
        i = int(np.argmax(mean))
        return float(mean[i]), int(self.steps[i])

    @property
    def average_max(self) -> float:
        """Fig. 4, 7, 8: the mean over seeds of each run's maximum return."""
        return float(self.values.max(axis=1).mean())

    def scores(self, score: str) -> np.ndarray:
        """Per run: the return at the last common step ("final") or its maximum ("max")."""
        return self.values[:, -1] if score == "final" else self.values.max(axis=1)


@dataclass
class Grid:
    title: str
    rows: tuple[str, list]
    cols: tuple[str, list]
    cells: np.ndarray


def summarize(groups: list[Group]) -> tuple[list[Summary], list[Group]]:
    """Summaries of groups with at least one evaluation step common to all their seeds, and
    the groups without one (e.g. runs that have not evaluated yet)."""
    done, empty = [], []
    for g in groups:
        steps, values = g.curve(RETURN)
        if steps.size:
            done.append(Summary(g, steps, values))
        else:
            empty.append(g)
    return done, empty


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def find_grids(env: str, sums: list[Summary]) -> list[Grid]:
    """Heatmaps when this env's groups differ in two or more of the settings that name them
    (`label_fields`), at least one numeric. The two axes are the numeric ones with the most
    values (rows first in Config order: units x layers as Fig. 4, units x ofenet_units as
    Fig. 7), or with one numeric setting, it against the other setting with the most values
    (units x arch for `scaling`, as Fig. 5 at two widths); every other such setting (arch
    beside two numeric axes, or actors for Fig. 7 vs Fig. 8) splits them into one heatmap per
    value. Numeric axes run in ascending order, others in the order of the report."""
    naming = label_fields([s.group for s in sums])
    numeric = [f for f in naming if all(_is_number(dict(s.group.key).get(f)) for s in sums)]
    if not numeric or len(naming) < 2:
        return []
    count = {f: len({repr(dict(s.group.key).get(f)) for s in sums}) for f in naming}
    # Stable sorts: ties keep Config order.
    by_count = sorted(numeric, key=lambda f: -count[f])
    if len(numeric) >= 2:
        axes = by_count[:2]
        axes.sort(key=naming.index)
    else:
        other = sorted((f for f in naming if f not in numeric), key=lambda f: -count[f])
        axes = [numeric[0], other[0]]
    others = [f for f in naming if f not in axes]

    def values(field: str, keys: list[dict]) -> list:
        found = list(dict.fromkeys(k[field] for k in keys))
        return sorted(found) if field in numeric else found

    parts: dict[tuple, list[Summary]] = {}
    for s in sums:
        parts.setdefault(tuple(dict(s.group.key).get(f) for f in others), []).append(s)
    grids = []
    for part_key, members in parts.items():
        keys = [dict(s.group.key) for s in members]
        rows, cols = values(axes[0], keys), values(axes[1], keys)
        if len(rows) < 2 or len(cols) < 2:
            continue  # a line, not a grid: the curves and tables show it
        cells = np.full((len(rows), len(cols)), np.nan)
        for k, s in zip(keys, members, strict=True):
            cells[rows.index(k[axes[0]]), cols.index(k[axes[1]])] = s.average_max
        extra = " ".join(f"{f}={v}" for f, v in zip(others, part_key, strict=True))
        title = f"{env}{' ' + extra if extra else ''}: average maximum return"
        grids.append(Grid(title, (axes[0], rows), (axes[1], cols), cells))
    return grids


@dataclass
class IqmRow:
    label: str
    tasks: int
    runs: int
    point: float
    ci: tuple[float, float]


def iqm_table(
    sums: list[Summary], score: str, reps: int, seed: int
) -> tuple[list[IqmRow], list[tuple[str, int, int]]]:
    """IQM over the pooled, per-env min-max normalized scores of each configuration that ran
    in every env, with a stratified bootstrap CI (strata = envs); and, as (label, runs, fewest
    seeds in an env), the configurations with too few runs for one (MIN_IQM_RUNS,
    MIN_IQM_SEEDS_PER_ENV)."""
    envs = sorted({s.group.env for s in sums})
    # A label names one configuration in every env (its per-task values aside, runs.
    # label_fields), and no two in one env.
    per_env: dict[str, dict[str, np.ndarray]] = {e: {} for e in envs}
    for s in sums:
        per_env[s.group.env][s.group.label] = s.scores(score)
    labels = list(dict.fromkeys(s.group.label for s in sums))
    # Only configurations present in every env are listed, and only they set each env's
    # normalization range (so the table does not depend on runs it does not show).
    shared = [k for k in labels if all(k in per_env[e] for e in envs)]
    normalized = {e: stats.minmax_per_task({k: per_env[e][k] for k in shared}) for e in envs}
    rows, too_few = [], []
    for label in shared:
        tasks = [normalized[e][label] for e in envs]
        runs, fewest = sum(t.size for t in tasks), min(t.size for t in tasks)
        if runs < MIN_IQM_RUNS or fewest < MIN_IQM_SEEDS_PER_ENV:
            too_few.append((label, runs, fewest))
            continue
        point = stats.iqm(np.concatenate(tasks))
        ci = stats.stratified_bootstrap_ci(tasks, reps=reps, seed=seed)
        rows.append(IqmRow(label, len(tasks), runs, point, ci))
    return rows, too_few


def table1(sums: list[Summary]) -> str:
    """Markdown like the paper's Table 1: one row per configuration, one column per env,
    the highest average return (seeds in brackets), the best of each env in bold."""
    envs = sorted({s.group.env for s in sums})
    labels = list(dict.fromkeys(s.group.label for s in sums))
    cell = {(s.group.label, s.group.env): s for s in sums}
    best = {e: max(s.highest[0] for s in sums if s.group.env == e) for e in envs}
    lines = ["| configuration | " + " | ".join(envs) + " |", "| --- |" + " ---: |" * len(envs)]
    for label in labels:
        parts = []
        for e in envs:
            s = cell.get((label, e))
            if s is None:
                parts.append("-")
                continue
            value = s.highest[0]
            text = f"{value:.1f}"
            parts.append(
                f"**{text}** ({s.group.seeds})" if value == best[e] else f"{text} ({s.group.seeds})"
            )
        lines.append(f"| {label} | " + " | ".join(parts) + " |")
    return "\n".join(lines) + "\n"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def _shown(path: Path) -> str:
    """A run folder as the reader typed it: relative to the current folder when inside it."""
    try:
        return str(path.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def check_out(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {str(out)!r} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ConfigError(f"--out {str(out)!r} is not empty; use --force to write into it")


def _env_section(env: str, sums: list[Summary], out: Path) -> list[str]:
    lines = [f"## {env}", ""]
    # Legends name only what differs within this env: shorter than the page-wide names.
    fields = label_fields([s.group for s in sums])
    curves = [(label_of(s.group, fields), s.steps, s.values) for s in sums]
    name = f"curves_{_safe(env)}.png"
    plots.plot_curves(curves, "average return", f"{env}: evaluation return", out / name)
    lines += [f"![{env} learning curves]({name})", ""]
    ranks = [(label_of(s.group, fields), *s.group.curve(SRANK)) for s in sums if s.group.has(SRANK)]
    if ranks:
        name = f"srank_{_safe(env)}.png"
        plots.plot_curves(ranks, "effective rank (srank)", f"{env}: effective rank", out / name)
        lines += [f"![{env} effective rank]({name})", ""]
    for i, grid in enumerate(find_grids(env, sums)):
        name = f"heatmap_{_safe(env)}_{i}.png"
        plots.plot_heatmap(grid.cells, grid.rows, grid.cols, grid.title, out / name)
        lines += [f"![{grid.title}]({name})", ""]
    lines += _settings_table(sums)
    lines += [
        "| configuration | seeds | last common step | highest average return (at step) "
        "| average maximum return | final return (mean +- std) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for s in sums:
        high, at = s.highest
        final = s.scores("final")
        lines.append(
            f"| {s.group.label} | {s.group.seeds} | {s.steps[-1]} | {high:.1f} ({at}) "
            f"| {s.average_max:.1f} | {final.mean():.1f} +- {final.std():.1f} |"
        )
    return [*lines, ""]


def _settings_table(sums: list[Summary]) -> list[str]:
    """What each configuration's name leaves out: the settings that differ between this env's
    configurations but follow from those in the name (runs.label_fields), e.g. the presets'
    values behind `arch=simba`."""
    groups = [s.group for s in sums]
    naming = set(label_fields(groups))
    implied = [f for f in differing_fields(groups) if f not in naming]
    if not implied:
        return []
    lines = [
        "Settings that differ between these configurations and follow from their names:",
        "",
        "| configuration | " + " | ".join(implied) + " |",
        "| --- |" + " --- |" * len(implied),
    ]
    for g in groups:
        d = dict(g.key)
        lines.append(f"| {g.label} | " + " | ".join(format_value(d.get(f)) for f in implied) + " |")
    return [*lines, ""]


def _iqm_section(sums: list[Summary], score: str, reps: int, seed: int, out: Path) -> list[str]:
    envs = sorted({s.group.env for s in sums})
    rows, too_few = iqm_table(sums, score, reps, seed)
    what = (
        "the return at the last evaluation step all seeds of its configuration reached"
        if score == "final"
        else "its maximum evaluation return"
    )
    lines = [
        "## IQM across envs",
        "",
        f"Score of a run: {what} (`--score {score}`). Envs have different scales (Table 1), "
        "so each env's scores are min-max normalized over all runs in that env: 0 = its worst "
        "run, 1 = its best. IQM = mean of the middle 50% of the pooled normalized scores of a "
        "configuration over all envs; 95% percentile confidence interval from a stratified "
        f"bootstrap ({reps} replicates, seed {seed}: runs resampled with replacement within "
        f"each env; Agarwal et al. 2021). Envs: {', '.join(envs)}. Only configurations that "
        "ran in every env are listed.",
        "",
    ]
    if too_few:
        lines += [
            f"An IQM needs at least {MIN_IQM_RUNS} runs of a configuration (seeds x envs) and "
            f"at least {MIN_IQM_SEEDS_PER_ENV} seeds in every env: with fewer than "
            f"{MIN_IQM_RUNS} the IQM trims nothing (it is a plain mean), and the stratified "
            "bootstrap cannot resample an env with a single run (its interval collapses to a "
            "point). Left out for too few runs:",
            "",
            *(
                f"- {label}: {runs} run(s); fewest seeds in one env: {fewest}"
                for label, runs, fewest in too_few
            ),
            "",
        ]
    if not rows:
        what = "has enough runs for one" if too_few else "ran in every env"
        return [*lines, f"No configuration {what}.", ""]
    plots.plot_intervals(
        [r.label for r in rows],
        [r.point for r in rows],
        [r.ci for r in rows],
        f"IQM of normalized {score} score (95% CI)",
        out / "iqm.png",
    )
    lines += [
        "![IQM with 95% CIs](iqm.png)",
        "",
        "| configuration | envs | runs | IQM | 95% CI |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r.label} | {r.tasks} | {r.runs} | {r.point:.3f} | [{r.ci[0]:.3f}, {r.ci[1]:.3f}] |"
        )
    return [*lines, ""]


def _write_results(sums: list[Summary], path: Path) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "env",
                "configuration",
                "seeds",
                "last_step",
                "highest_average_return",
                "highest_at_step",
                "average_max_return",
                "final_mean",
                "final_std",
            ]
        )
        for s in sums:
            high, at = s.highest
            final = s.scores("final")
            w.writerow(
                [s.group.env, s.group.label, s.group.seeds, int(s.steps[-1]), f"{high:.6g}", at]
                + [f"{s.average_max:.6g}", f"{final.mean():.6g}", f"{final.std():.6g}"]
            )


def write_report(
    dirs: list[Path], out: Path, force: bool, score: str = "final", reps: int = 2000, seed: int = 0
) -> tuple[Path, int, int, list[Path]]:
    """Write OUT/report.md with its figures and results.csv; return (page, runs, groups, the
    runs left out for want of an evaluation)."""
    assert score in SCORES, score
    found = find_run_dirs(dirs)  # a wrong DIR is reported before a full OUT
    check_out(out, force)
    runs = [load_run(d) for d in found]
    # A run stopped in its warm-up has no row yet: it would empty its configuration's curve
    # (only steps every seed reached are averaged), so it is left out and listed.
    pending = [r for r in runs if not r.steps.size]
    groups = group_runs([r for r in runs if r.steps.size])
    sums, empty = summarize(groups)
    if not sums:
        raise ConfigError(
            f"no run under {', '.join(repr(str(d)) for d in dirs)} has an evaluation yet "
            f"({len(runs)} runs found; metrics.csv holds no eval_return_mean)"
        )
    check_writable(out, "--out")
    n_runs = sum(s.group.seeds for s in sums)
    lines = [
        "# widerl report",
        "",
        f"{n_runs} runs in {len(sums)} configurations from "
        + ", ".join(f"`{d}`" for d in dirs)
        + ". Runs are grouped by their configuration minus seed and run-only settings ("
        + ", ".join(k for k in IGNORED if k != "seed")
        + "); a configuration is named by the settings that differ between configurations.",
        "",
        "- Curves: mean (line) +- 1 std (shade; population std over seeds) of `eval_return_mean` "
        "(the deterministic policy's return averaged over the evaluation episodes) against "
        "gradient steps, at the evaluation steps every seed of the configuration has reached.",
        "- Highest average return (Table 1): max over evaluation steps of the mean over seeds.",
        "- Average maximum return (heatmaps, Fig. 4/7/8): mean over seeds of each run's maximum.",
        "- Figure legends name a configuration only by the settings that differ within that env.",
        "",
        "## Table 1: highest average return (seeds)",
        "",
        table1(sums),
    ]
    for env in sorted({s.group.env for s in sums}):
        lines += _env_section(env, [s for s in sums if s.group.env == env], out)
    lines += _iqm_section(sums, score, reps, seed, out)
    if empty or pending:
        lines += ["## Not shown", ""]
    if empty:
        lines += ["No evaluation step common to all seeds yet:", ""]
        lines += [
            f"- {g.env} {g.label}: " + ", ".join(_shown(r.path) for r in g.runs) for g in empty
        ]
        lines.append("")
    if pending:
        lines += ["Runs without an evaluation yet (stopped in their warm-up), left out:", ""]
        lines += [f"- `{_shown(r.path)}`" for r in pending]
        lines.append("")
    lines += ["## Runs", "", f"Per configuration, in `{RESULTS}` as numbers.", ""]
    for s in sums:
        paths = ", ".join(f"`{_shown(r.path)}`" for r in s.group.runs)
        lines.append(f"- {s.group.env} {s.group.label}: {paths}")
    _write_results(sums, out / RESULTS)
    page = out / REPORT
    page.write_text("\n".join(lines) + "\n")
    return page, n_runs, len(sums), [r.path for r in pending]
