"""`--wandb`: an offline W&B run holds the config and, at each row, the scalars TensorBoard
gets, under the same names and steps; one W&B run per seed in one group; a resume continues
the same W&B run; refusals in one line. Everything offline (WANDB_MODE=offline, no network):
the W&B files are read back with tests/wandb_log.py."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from wandb_log import read_run

import widerl
from widerl.cli import main

TINY = {
    "env": "Pendulum-v1",
    "units": 16,
    "layers": 2,
    "batch_size": 32,
    "buffer_size": 5_000,
    "warmup": 200,
    "steps": 60,
    "eval_every": 30,
    "eval_episodes": 1,
    "threads": 1,
    "progress": False,
    "wandb": "widerl-tests",
}


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_DIR", raising=False)


def csv_rows(run: Path) -> list[dict[str, str]]:
    with (run / "metrics.csv").open() as f:
        return list(csv.DictReader(f))


def tensorboard(run: Path) -> dict[int, dict[str, float]]:
    """step -> tag -> value, from every event file of the run (a resume adds one)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict[int, dict[str, float]] = {}
    for events in sorted((run / "tb").glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            for e in acc.Scalars(tag):
                out.setdefault(e.step, {})[tag] = e.value
    return out


def history(run: Path) -> dict[int, dict[str, float]]:
    """grad_step -> key -> value of the run's W&B history (W&B's own `_` keys left out)."""
    rows = read_run(run / "wandb")["history"]
    return {
        int(r["grad_step"]): {k: v for k, v in r.items() if not k.startswith("_")} for r in rows
    }


def test_a_run_logs_what_tensorboard_gets_and_a_resume_continues_it(tmp_path: Path) -> None:
    run = tmp_path / "run"
    widerl.train(widerl.resolve(TINY), run)
    run_id = json.loads((run / "wandb.json").read_text())["id"]
    widerl.train(resume=run, steps=90)
    assert json.loads((run / "wandb.json").read_text())["id"] == run_id

    logged = read_run(run / "wandb")
    assert (logged["id"], logged["name"], logged["project"]) == (run_id, "run", "widerl-tests")
    assert logged["group"] == ""
    assert logged["config"]["env"] == "Pendulum-v1" and logged["config"]["steps"] == 90
    assert len(list((run / "wandb").glob("offline-run-*"))) == 2  # one W&B run, resumed once

    hist, tb, rows = history(run), tensorboard(run), csv_rows(run)
    assert sorted(hist) == sorted(tb) == [int(r["grad_step"]) for r in rows] == [0, 30, 60, 90]
    for step, scalars in tb.items():
        assert set(hist[step]) - {"grad_step"} == set(scalars)  # the same names
        for tag, value in scalars.items():  # TensorBoard stores float32
            assert hist[step][tag] == pytest.approx(value, rel=1e-6, abs=1e-6), tag
    for row in rows:
        step = int(row["grad_step"])
        assert hist[step]["eval/return_mean"] == pytest.approx(float(row["eval_return_mean"]))
        assert hist[step]["losses/critic_loss" if step else "train/srank"] is not None


def test_seeds_log_one_run_each_in_one_group(tmp_path: Path) -> None:
    out = tmp_path / "seeds"
    widerl.train(widerl.resolve({**TINY, "steps": 30}), out, seeds=[0, 1])
    logged = [read_run(out / f"s{s}" / "wandb") for s in (0, 1)]
    assert [r["name"] for r in logged] == ["seeds/s0", "seeds/s1"]
    assert [r["group"] for r in logged] == ["seeds", "seeds"]
    assert [r["config"]["seed"] for r in logged] == [0, 1]
    assert logged[0]["id"] != logged[1]["id"]
    for s in (0, 1):
        rows, hist = csv_rows(out / f"s{s}"), history(out / f"s{s}")
        assert [hist[int(r["grad_step"])]["eval/return_mean"] for r in rows] == pytest.approx(
            [float(r["eval_return_mean"]) for r in rows]
        )
    # --wandb-group names the group; on --resume the W&B settings may change
    widerl.train(resume=out, steps=60, wandb_group="sweep-1")
    assert read_run(out / "s1" / "wandb")["group"] == "sweep-1"


def test_a_run_without_wandb_writes_none_of_it(tmp_path: Path) -> None:
    run = tmp_path / "run"
    widerl.train(widerl.resolve({**TINY, "wandb": "", "steps": 30}), run)
    assert not (run / "wandb.json").exists() and not (run / "wandb").exists()


def test_a_wandb_failure_stops_the_run_resumable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import wandb

    def refuse(**_: object) -> None:
        raise wandb.errors.UsageError("api_key not configured (no-tty)\ncall wandb.login")

    monkeypatch.setattr(wandb, "init", refuse)
    run = tmp_path / "run"
    flags = ["--env", "Pendulum-v1", "--units", "16", "--layers", "2", "--batch-size", "32",
             "--warmup", "200", "--steps", "30", "--eval-every", "30", "--eval-episodes", "1",
             "--threads", "1", "--no-progress", "--wandb", "widerl-tests"]  # fmt: skip
    assert main(["train", *flags, "--out", str(run)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "widerl: error: --wandb: Weights & Biases failed (api_key not configured (no-tty)); "
        f"the run is saved, continue with `widerl train --resume {run}` (WANDB_MODE=offline "
        "logs without network)"
    ]
    assert (run / "checkpoint.pt").is_file()
    monkeypatch.undo()
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert main(["train", "--resume", str(run)]) == 0
    assert [int(r["grad_step"]) for r in csv_rows(run)] == [0, 30]
    assert sorted(history(run)) == [0, 30]


def test_wandb_missing_is_refused_before_anything_is_written(tmp_path: Path, cli_without) -> None:
    out = tmp_path / "run"
    done = cli_without(
        ["wandb"], ["train", "--env", "Pendulum-v1", "--wandb", "p", "--out", str(out)]
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        "widerl: error: --wandb needs the package 'wandb', which is not installed: "
        "pip install 'widerl[wandb]'"
    ]
    assert not out.exists()


def test_ray_collectors_never_import_wandb() -> None:
    """What a collector process imports (collect/ray_collectors.py and below) holds no W&B:
    only the learner's RunLogger opens a tracker."""
    code = (
        "import sys, widerl.collect.ray_collectors\n"
        "print(sorted(m for m in sys.modules if m == 'wandb' or m.startswith('wandb.')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_train_force_starts_a_new_wandb_run(tmp_path: Path) -> None:
    run = tmp_path / "run"
    widerl.train(widerl.resolve({**TINY, "steps": 30}), run)
    first = json.loads((run / "wandb.json").read_text())["id"]
    widerl.train(widerl.resolve({**TINY, "steps": 30}), run, force=True)
    assert json.loads((run / "wandb.json").read_text())["id"] != first
    assert len(list((run / "wandb").glob("offline-run-*"))) == 1


def test_a_resume_removes_the_temporary_files_a_kill_left(tmp_path: Path) -> None:
    """A kill while wandb.json or an exported policy was being written leaves its temporary
    file; the next --resume of the folder removes them with the run's own."""
    run = tmp_path / "run"
    widerl.train(widerl.resolve({**TINY, "steps": 30}), run)
    for name in ("wandb.json.tmp", ".policy.123.tmp.onnx", "metrics.csv.tmp"):
        (run / name).write_text("half")
    widerl.train(resume=run, steps=60)
    assert not [p.name for p in run.iterdir() if "tmp" in p.name]
