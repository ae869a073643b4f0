"""`widerl report` on hand-made run folders whose every number is known, its statistics
(IQM, stratified bootstrap) and its command line, bad inputs included."""

import csv
import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest

from widerl.cli import main
from widerl.config import Config, ConfigError
from widerl.experiments import stats
from widerl.experiments.report import find_grids, summarize, write_report
from widerl.experiments.runs import load_groups

STEPS = [0, 100, 200, 300]
# Return of run (env, units, layers, seed) at STEPS:
# SCALE[env] * (BASE[units, layers] + NOISE[seed]).
SCALE = {"Hopper-v5": 1.0, "Walker2d-v5": 10.0}
BASE = {(256, 1): [0, 10, 30, 20], (256, 2): [0, 20, 40, 50], (1024, 2): [0, 40, 60, 52]}
NOISE = [[0, 0, 0, 0], [0, 25, 0, 0], [0, 0, 0, 15]]
COLUMNS = [
    "grad_step",
    "env_step",
    "wall_time",
    "eval_return_mean",
    "eval_return_std",
    "train_return_mean",
    "episodes",
    "updates_per_s",
    "env_steps_per_s",
    "critic_loss",
    "srank",
]


def write_run(path: Path, returns: list[float], srank: list[str] | None = None, **cfg) -> Path:
    path.mkdir(parents=True)
    values = dataclasses.asdict(Config(out=str(path), **cfg))
    values["dims"] = {"obs": 11, "act": 3}
    (path / "config.json").write_text(json.dumps(values))
    with (path / "metrics.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        for i, (step, ret) in enumerate(zip(STEPS[: len(returns)], returns, strict=True)):
            rank = srank[i] if srank else ""
            w.writerow([step, step + 50, 1.5 * i, ret, 1.0, "", i, 10.0, 10.0, 0.5, rank])
    return path


def make_runs(root: Path) -> Path:
    """2 envs x 3 configurations (units x layers, the cell 1024 x 1 missing) x 3 seeds.
    Hopper runs log srank; Walker2d's srank column stays empty. Seed 2 ran with other
    run-only settings (device, threads, steps, compile), which must not split its group."""
    for env, scale in SCALE.items():
        for (units, layers), base in BASE.items():
            for seed, noise in enumerate(NOISE):
                returns = [scale * (b + n) for b, n in zip(base, noise, strict=True)]
                srank = (
                    [str(units // 8 + seed + i) for i in range(4)] if env == "Hopper-v5" else None
                )
                other = (
                    {"device": "cpu", "threads": 1, "steps": 999, "compile": "on"}
                    if seed == 2
                    else {}
                )
                write_run(
                    root / env / f"u{units}-l{layers}" / f"s{seed}",
                    returns,
                    srank,
                    env=env,
                    units=units,
                    layers=layers,
                    seed=seed,
                    **other,
                )
    return root


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    return make_runs(tmp_path / "runs")


def results(out: Path) -> dict[tuple[str, str], dict[str, str]]:
    with (out / "results.csv").open() as f:
        return {(r["env"], r["configuration"]): r for r in csv.DictReader(f)}


# --- grouping and the numbers of Table 1 and the heatmaps ------------------------------------


def test_runs_group_by_configuration_minus_seed_and_run_only_settings(runs: Path) -> None:
    groups = load_groups([runs])
    assert [(g.env, g.label, g.seeds) for g in groups] == [
        ("Hopper-v5", "units=256 layers=1", 3),
        ("Hopper-v5", "units=256 layers=2", 3),
        ("Hopper-v5", "units=1024 layers=2", 3),
        ("Walker2d-v5", "units=256 layers=1", 3),
        ("Walker2d-v5", "units=256 layers=2", 3),
        ("Walker2d-v5", "units=1024 layers=2", 3),
    ]


def test_table_numbers_equal_hand_computed_values(runs: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    write_report([runs], out, force=False, reps=200)
    got = results(out)
    # Mean over seeds at each step (NOISE adds 0, 25/3, 0, 5), then its max:
    # 256x1: [0, 18.33, 30, 25] -> 30 at 200; 256x2: [0, 28.33, 40, 55] -> 55 at 300;
    # 1024x2: [0, 48.33, 60, 57] -> 60 at 200. Walker2d: the same times 10.
    # Average maximum: 256x1 maxes 30, 35, 35; 256x2: 50, 50, 65; 1024x2: 60, 65, 67.
    expected = {
        "units=256 layers=1": (30, 200, 100 / 3, [20, 20, 35]),
        "units=256 layers=2": (55, 300, 55, [50, 50, 65]),
        "units=1024 layers=2": (60, 200, 64, [52, 52, 67]),
    }
    for env, scale in SCALE.items():
        for label, (high, at, avg_max, final) in expected.items():
            row = got[(env, label)]
            assert row["seeds"] == "3" and row["last_step"] == "300"
            assert float(row["highest_average_return"]) == pytest.approx(scale * high)
            assert int(row["highest_at_step"]) == at
            assert float(row["average_max_return"]) == pytest.approx(scale * avg_max, rel=1e-5)
            assert float(row["final_mean"]) == pytest.approx(scale * np.mean(final), rel=1e-5)
            assert float(row["final_std"]) == pytest.approx(scale * np.std(final), rel=1e-5)
    page = (out / "report.md").read_text()
    # Table 1: one row per configuration, one column per env, best in bold, seeds in brackets.
    assert "| configuration | Hopper-v5 | Walker2d-v5 |" in page
    assert "| units=1024 layers=2 | **60.0** (3) | **600.0** (3) |" in page
    assert "| units=256 layers=1 | 30.0 (3) | 300.0 (3) |" in page


def test_grid_heatmap_cells_are_average_maximum_returns(runs: Path) -> None:
    sums, empty = summarize(load_groups([runs]))
    assert not empty
    (grid,) = find_grids("Hopper-v5", [s for s in sums if s.group.env == "Hopper-v5"])
    assert grid.rows == ("units", [256, 1024]) and grid.cols == ("layers", [1, 2])
    np.testing.assert_allclose(grid.cells, [[100 / 3, 55], [np.nan, 64]])


def test_grid_axes_are_the_settings_with_most_values_others_split(tmp_path: Path) -> None:
    for units in (256, 1024):
        for layers in (1, 2, 4):
            for ofenet in (0, 256, 512):
                ret = units / 256 + 10 * layers + 100 * ofenet / 256
                path = tmp_path / f"u{units}-l{layers}-o{ofenet}"
                write_run(path, [ret], units=units, layers=layers, ofenet_units=ofenet)
    sums, _ = summarize(load_groups([tmp_path]))
    grids = find_grids("Hopper-v5", sums)
    assert [g.title for g in grids] == [
        "Hopper-v5 units=256: average maximum return",
        "Hopper-v5 units=1024: average maximum return",
    ]
    assert grids[1].rows == ("layers", [1, 2, 4]) and grids[1].cols == (
        "ofenet_units",
        [0, 256, 512],
    )
    np.testing.assert_allclose(grids[1].cells[2], [44, 144, 244])


def test_no_heatmap_when_groups_differ_in_one_setting(tmp_path: Path) -> None:
    for units in (256, 1024):
        for seed in range(2):
            write_run(tmp_path / f"u{units}s{seed}", [1.0, 2.0], units=units, seed=seed)
    sums, _ = summarize(load_groups([tmp_path]))
    assert find_grids("Hopper-v5", sums) == []


def test_names_leave_out_settings_that_follow_from_the_named_ones(tmp_path: Path) -> None:
    """Fig. 5's runs differ in arch, units and activation; Swish follows from the arch, so the
    name is arch and units, and the page lists what the name leaves out."""
    for arch, act in (("mlp", "relu"), ("densenet", "swish")):
        for units in (128, 2048):
            write_run(tmp_path / f"{arch}{units}", [1.0], arch=arch, activation=act, units=units)
    labels = [g.label for g in load_groups([tmp_path])]
    assert labels == [
        "arch=densenet units=128",
        "arch=densenet units=2048",
        "arch=mlp units=128",
        "arch=mlp units=2048",
    ]
    write_report([tmp_path], tmp_path / "r", force=False, reps=50)
    page = (tmp_path / "r" / "report.md").read_text()
    assert "| configuration | activation |" in page
    assert "| arch=mlp units=2048 | relu |" in page
    assert "| arch=densenet units=128 | swish |" in page
    # A setting that varies on its own is named even when it is later in Config order.
    write_run(tmp_path / "mlp128-swish", [1.0], arch="mlp", activation="swish", units=128)
    assert "arch=mlp units=128 activation=swish" in [g.label for g in load_groups([tmp_path])]


def test_per_task_values_keep_one_name_across_envs(tmp_path: Path) -> None:
    """A preset's per-task values (OFENet's target dims on Ant, the bro preset's value support)
    differ between envs: one configuration still has one name, one Table 1 row and an IQM."""
    for env, target in (("Hopper-v5", 0), ("Ant-v5", 27)):
        for units in (256, 1024):
            for seed in range(2):
                write_run(
                    tmp_path / env / f"u{units}" / f"s{seed}",
                    [0.0, units / 256 + seed],
                    env=env,
                    units=units,
                    ofenet_units=units,
                    ofenet_target_dim=target,
                    seed=seed,
                )
    groups = load_groups([tmp_path])
    assert sorted({g.label for g in groups}) == ["units=1024", "units=256"]
    write_report([tmp_path], tmp_path / "r", force=False, reps=50)
    page = (tmp_path / "r" / "report.md").read_text()
    assert "| units=1024 | **4.5** (2) | **4.5** (2) |" in page  # one Table 1 row, both envs
    assert re.search(r"\| units=1024 \| 2 \| 4 \| [0-9.]+ \|", page)  # an IQM over both envs


def test_one_numeric_setting_against_a_named_one_makes_a_heatmap(tmp_path: Path) -> None:
    """`scaling`: critic width x body, each body with its preset's other values."""
    presets = {"mlp": {}, "simba": {"obs_norm": True, "lr": 1e-4}, "bronet": {"batch_size": 128}}
    for arch, extra in presets.items():
        for units in (64, 256):
            ret = {"mlp": 1, "simba": 2, "bronet": 3}[arch] * units
            write_run(tmp_path / f"{arch}{units}", [0.0, ret], arch=arch, units=units, **extra)
    sums, _ = summarize(load_groups([tmp_path]))
    assert {s.group.label for s in sums} == {
        f"arch={a} units={u}" for a in presets for u in (64, 256)
    }
    (grid,) = find_grids("Hopper-v5", sums)
    assert grid.rows == ("units", [64, 256])
    assert grid.cols == ("arch", ["bronet", "mlp", "simba"])
    np.testing.assert_allclose(grid.cells, [[192, 64, 128], [768, 256, 512]])


def test_curve_uses_only_steps_every_seed_reached(tmp_path: Path) -> None:
    write_run(tmp_path / "a", [1.0, 2.0, 3.0, 4.0], seed=0)
    write_run(tmp_path / "b", [5.0, 6.0], seed=1)  # still training
    (group,) = load_groups([tmp_path])
    steps, values = group.curve()
    assert steps.tolist() == [0, 100]
    assert values.tolist() == [[1.0, 2.0], [5.0, 6.0]]
    assert not group.has("srank")


# --- statistics ------------------------------------------------------------------------------


def test_iqm_of_known_arrays() -> None:
    assert stats.iqm(np.arange(8)) == 3.5  # middle four: 2, 3, 4, 5
    assert stats.iqm(np.array([[100.0, 1.0], [3.0, 2.0]])) == 2.5  # pooled: 2, 3
    assert stats.iqm(np.array([1.0, 2.0, 10.0])) == pytest.approx(13 / 3)  # n < 4: plain mean
    with pytest.raises(ValueError):
        stats.iqm(np.array([]))


def test_bootstrap_ci_contains_estimate_and_is_deterministic() -> None:
    rng = np.random.default_rng(1)
    tasks = [rng.normal(0.5, 0.2, size=5), rng.normal(0.7, 0.1, size=5)]
    point = stats.iqm(np.concatenate(tasks))
    ci = stats.stratified_bootstrap_ci(tasks, reps=2000, seed=3)
    assert ci[0] < point < ci[1]
    assert stats.stratified_bootstrap_ci(tasks, reps=2000, seed=3) == ci
    assert stats.stratified_bootstrap_ci(tasks, reps=2000, seed=4) != ci


def test_bootstrap_resamples_within_each_task() -> None:
    # Stratified: every replicate pools four 0s and four 1s, so the IQM is always 0.5.
    # Resampling the pooled eight scores instead would give anything from 0 to 1.
    lo, hi = stats.stratified_bootstrap_ci([np.zeros(4), np.ones(4)], reps=500, seed=0)
    assert lo == hi == 0.5


def test_minmax_per_task() -> None:
    got = stats.minmax_per_task({"a": np.array([20.0, 67.0]), "b": np.array([43.5])})
    np.testing.assert_allclose(got["a"], [0.0, 1.0])
    np.testing.assert_allclose(got["b"], [0.5])
    np.testing.assert_allclose(stats.minmax_per_task({"a": np.array([3.0, 3.0])})["a"], [1, 1])


def test_report_iqm_of_final_scores(runs: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    write_report([runs], out, force=False, score="final", reps=300)
    page = (out / "report.md").read_text()
    # Final returns in both envs (x10 in Walker2d): 256x1 20, 20, 35; 256x2 50, 50, 65;
    # 1024x2 52, 52, 67: min-max over each env's runs gives (x - 20) / 47 in both. For 1024x2
    # the pooled six scores are 32/47 (four times) and 1 (twice); the IQM drops one from each end.
    point = (3 * 32 / 47 + 1) / 4
    row = re.search(
        r"\| units=1024 layers=2 \| 2 \| 6 \| ([0-9.]+) \| \[([0-9.]+), ([0-9.]+)\]", page
    )
    assert row is not None
    assert float(row.group(1)) == pytest.approx(point, abs=5e-4)
    assert float(row.group(2)) <= float(row.group(1)) <= float(row.group(3))
    assert "min-max normalized" in page and "--score final" in page

    write_report([runs], tmp_path / "max", force=False, score="max", reps=300)
    page = (tmp_path / "max" / "report.md").read_text()
    # Maxima: 256x1 30, 35, 35 (the minimum, 30); 1024x2 60, 65, 67 (the maximum, 67): the six
    # pooled scores are (30, 35, 37) / 37 twice and the IQM keeps 30, 35, 35, 37.
    assert "--score max" in page
    assert f"| units=1024 layers=2 | 2 | 6 | {137 / 148:.3f} |" in page


def test_iqm_ignores_configurations_missing_from_an_env(runs: Path, tmp_path: Path) -> None:
    """A configuration that ran in only one env is not listed, and must not stretch that env's
    normalization range for the listed ones."""
    write_report([runs], tmp_path / "base", force=False, score="final", reps=100)
    for seed in range(3):
        write_run(
            runs / "Hopper-v5" / "u2048-l2" / f"s{seed}",
            [0, 1000, 2000, 5000],  # far above everything else, Hopper only
            env="Hopper-v5",
            units=2048,
            layers=2,
            seed=seed,
        )
    write_report([runs], tmp_path / "more", force=False, score="final", reps=100)

    def iqm_rows(out: Path) -> list[str]:
        page = (out / "report.md").read_text()
        return [
            line for line in page.splitlines() if re.match(r"\| units=\d+ layers=\d \| 2 \|", line)
        ]

    assert iqm_rows(tmp_path / "base") == iqm_rows(tmp_path / "more")
    assert not any("units=2048" in row for row in iqm_rows(tmp_path / "more"))


# --- the command line --------------------------------------------------------------------------


def test_cli_writes_page_with_every_figure(runs: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "report"
    assert main(["report", str(runs), "--out", str(out), "--bootstrap-reps", "200"]) == 0
    assert "report:" in capsys.readouterr().out
    page = (out / "report.md").read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", page)
    assert set(links) == {
        "curves_Hopper-v5.png",
        "curves_Walker2d-v5.png",
        "srank_Hopper-v5.png",  # Walker2d's srank column is empty: no figure
        "heatmap_Hopper-v5_0.png",
        "heatmap_Walker2d-v5_0.png",
        "iqm.png",
    }
    for link in links:
        assert (out / link).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_accepts_run_folders_themselves(runs: Path, tmp_path: Path) -> None:
    dirs = [str(runs / "Hopper-v5" / "u256-l1" / f"s{s}") for s in range(3)]
    assert main(["report", *dirs, dirs[0], "--out", str(tmp_path / "r")]) == 0
    got = results(tmp_path / "r")
    assert list(got) == [("Hopper-v5", "algo=sac")]
    assert got[("Hopper-v5", "algo=sac")]["seeds"] == "3"  # the repeated folder counts once


def error_of(argv: list[str], capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("widerl: error: ") and err.count("\n") == 1
    return err


def test_cli_refuses_non_empty_out_without_force(runs: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "report"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert "--force" in error_of(["report", str(runs), "--out", str(out)], capsys)
    assert main(["report", str(runs), "--out", str(out), "--force"]) == 0
    assert (out / "notes.txt").read_text() == "mine" and (out / "report.md").is_file()
    (tmp_path / "file").write_text("")
    assert "not a folder" in error_of(
        ["report", str(runs), "--out", str(tmp_path / "file")], capsys
    )


def test_cli_bad_inputs_exit_2_naming_the_path(tmp_path: Path, capsys) -> None:
    out = str(tmp_path / "out")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x").write_text("")  # a full OUT: the bad DIR is named first
    assert "nowhere" in error_of(["report", str(tmp_path / "nowhere"), "--out", out], capsys)
    (tmp_path / "empty").mkdir()
    assert "no run folder" in error_of(["report", str(tmp_path / "empty"), "--out", out], capsys)
    error_of(["report", "--out", out], capsys)  # no DIR at all

    bad = write_run(tmp_path / "bad" / "s0", [1.0, 2.0])
    text = (bad / "metrics.csv").read_text().replace(",2.0,", ",oops,")
    (bad / "metrics.csv").write_text(text)
    err = error_of(["report", str(tmp_path / "bad"), "--out", out, "--force"], capsys)
    assert str(bad / "metrics.csv") in err and "'oops'" in err

    (bad / "metrics.csv").write_text("grad_step,env_step\n0,0\n")
    assert "eval_return_mean" in error_of(["report", str(bad), "--out", out, "--force"], capsys)

    (bad / "config.json").write_text("{not json")
    err = error_of(["report", str(bad), "--out", out, "--force"], capsys)
    assert str(bad / "config.json") in err
    assert [p.name for p in Path(out).iterdir()] == ["x"]


def test_same_configuration_and_seed_twice_is_an_error(tmp_path: Path, capsys) -> None:
    write_run(tmp_path / "a", [1.0], seed=0)
    write_run(tmp_path / "b", [2.0], seed=0)
    err = error_of(["report", str(tmp_path), "--out", str(tmp_path / "out")], capsys)
    assert "same configuration and seed 0" in err
    with pytest.raises(ConfigError):
        load_groups([tmp_path])


def test_iqm_needs_several_runs(tmp_path: Path) -> None:
    """One run drew an IQM of 1.000 [1.000, 1.000]: below 4 runs of a configuration (or with a
    single seed in an env) the page says why there is no IQM and draws no figure."""
    write_run(tmp_path / "one" / "s0", [1.0, 5.0], env="Hopper-v5")
    write_report([tmp_path / "one"], tmp_path / "r1", force=False, reps=100)
    page = (tmp_path / "r1" / "report.md").read_text()
    iqm = page.split("## IQM across envs", 1)[1].split("\n## ", 1)[0]
    assert "An IQM needs at least 4 runs" in iqm and "at least 2 seeds in every env" in iqm
    assert "- algo=sac: 1 run(s); fewest seeds in one env: 1" in iqm
    assert "No configuration has enough runs for one." in iqm
    assert "1.000" not in iqm and not (tmp_path / "r1" / "iqm.png").exists()

    # 4 envs x 1 seed: 4 runs, but a stratified bootstrap of one run per env is a point.
    for env in ("Hopper-v5", "Walker2d-v5", "Ant-v5", "Humanoid-v5"):
        write_run(tmp_path / "four" / env, [1.0, 5.0], env=env)
    write_report([tmp_path / "four"], tmp_path / "r4", force=False, reps=100)
    iqm = (tmp_path / "r4" / "report.md").read_text().split("## IQM across envs", 1)[1]
    assert "- algo=sac: 4 run(s); fewest seeds in one env: 1" in iqm

    # 2 seeds in each of 2 envs: enough.
    for env in ("Hopper-v5", "Walker2d-v5"):
        for seed in range(2):
            write_run(tmp_path / "ok" / env / f"s{seed}", [1.0, 5.0 + seed], env=env, seed=seed)
    write_report([tmp_path / "ok"], tmp_path / "ok-r", force=False, reps=100)
    iqm = (tmp_path / "ok-r" / "report.md").read_text().split("## IQM across envs", 1)[1]
    assert "| algo=sac | 2 | 4 |" in iqm and "Left out" not in iqm
    assert (tmp_path / "ok-r" / "iqm.png").is_file()
