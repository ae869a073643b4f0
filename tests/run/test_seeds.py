"""`widerl train --seeds`: several independent seeds in one process, each with its own run folder.

Independence is checked against the single run of the same seed (initial weights, warm-up
actions, the evaluation at update 0, the losses of the first 10 updates) and between the
members (one member's env perturbed, the others bit-identical).
"""

import csv
import dataclasses
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

from widerl.cli import main
from widerl.config import resolve
from widerl.record.logger import TIMING_COLUMNS
from widerl.record.seeds import parse_seeds
from widerl.run.step import LearnStep
from widerl.run.trainer import Trainer

TINY = {"env": "Pendulum-v1", "units": 16, "layers": 2, "batch_size": 32, "warmup": 64,
        "eval_episodes": 1, "progress": False, "compile": "off"}  # fmt: skip
TINY_ARGS = ["--env", "Pendulum-v1", "--units", "16", "--layers", "2", "--batch-size", "32"]
TINY_ARGS += ["--warmup", "64", "--eval-episodes", "1", "--no-progress", "--compile=off"]


class Go:
    stop = False


def rows(run: Path) -> list[dict[str, str]]:
    with (run / "metrics.csv").open() as f:
        return [{k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in csv.DictReader(f)]


def test_parse_seeds() -> None:
    assert parse_seeds("0-4") == [0, 1, 2, 3, 4]
    assert parse_seeds("3,1,7") == [3, 1, 7]
    assert parse_seeds("0-2,9") == [0, 1, 2, 9]
    assert parse_seeds("5") == [5]


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--seeds", "3-1"], "'3-1'"),
        (["--seeds", "0,1,0"], "seed 0 twice"),
        (["--seeds", "0-2,2"], "seed 2 twice"),
        (["--seeds", "a"], "'a' is not a seed"),
        (["--seeds", "0,1", "--seed", "2"], "--seed 2"),
        (["--seeds", "0,1", "--actors", "2"], "not supported yet, because"),
    ],
)
def test_bad_seeds_are_one_line_exit_2_and_write_nothing(
    tmp_path: Path, capsys, args: list[str], named: str
) -> None:
    out = tmp_path / "out"
    assert main(["train", "--out", str(out), *TINY_ARGS, *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("widerl: error:") and named in err, err
    assert not out.exists()


def test_seeds_refuse_a_single_run_folder_and_resume_takes_no_seeds(tmp_path: Path, capsys) -> None:
    single = tmp_path / "single"
    single.mkdir()
    (single / "config.json").write_text("{}")
    assert main(["train", "--out", str(single), *TINY_ARGS, "--seeds", "0,1"]) == 2
    assert "single-seed run" in capsys.readouterr().err
    assert main(["train", "--resume", str(single), "--seeds", "0,1"]) == 2
    assert "--seeds cannot be combined with --resume" in capsys.readouterr().err
    assert sorted(p.name for p in single.iterdir()) == ["config.json", "run.lock"]


# --- a member is the single run of its seed ----------------------------------------------------
def first_updates(trainer: Trainer, n: int, compiled: str | bool = False) -> dict:
    """Warm-up, feature pre-training, the evaluation at update 0 and `n` updates, driven as
    the trainer drives them; what each produced, per seed."""
    p = trainer.parts
    if compiled:
        replays = [lane.replay for lane in p.lanes]
        p.learner = LearnStep(replays, p.features, p.agent, trainer.cfg.batch_size, compiled)
    init = {k: v.clone() for k, v in p.agent.state_dict().items()}
    p.source.start(p.agent, 0, stop=lambda: False)
    trainer.fill(Go())
    trainer.pretrain(Go())
    returns = p.evaluator(p.agent)
    for _ in range(n):
        trainer.take(p.source.step(trainer.grad_step, p.intake.env_steps))
        trainer.learn_step()
    p.close()
    return {"init": init, "returns": returns, "replays": [lane.replay for lane in p.lanes]}


def record_losses(monkeypatch: pytest.MonkeyPatch) -> list:
    """Every learning step's metrics, as the trainer received them."""
    seen: list = []
    original = LearnStep.__call__

    def call(self, grad_step: int, total: int, n: int = 1):  # noqa: ANN001, ANN202
        metrics = original(self, grad_step, total, n)
        seen.append({k: v.clone() for k, v in metrics.items() if k != "idx"})
        return metrics

    monkeypatch.setattr(LearnStep, "__call__", call)
    return seen


CASES = {
    "sac-mlp-compiled": {"algo": "sac"},
    "td3-densenet-per": {"algo": "td3", "arch": "densenet", "prioritized": True},
    "sac-ofenet-bn": {
        "algo": "sac",
        "ofenet_units": 16,
        "ofenet_layers": 2,
        "ofenet_pretrain": 4,
        "batchnorm": True,
    },  # fmt: skip
    "crossq": {"algo": "crossq"},
    "sac-num-envs-3": {"algo": "sac", "num_envs": 3},  # three envs per seed
    # The options beyond the paper, stacked: per-seed observation statistics, distributional heads,
    # AdamW (--utd and --reset-every: the trainer's loop, in the test further down).
    "sac-simba-obsnorm-c51": {"algo": "sac", "arch": "simba", "obs_norm": True,
                              "critic_head": "c51", "atoms": 11, "v_min": -10.0,
                              "v_max": 10.0, "weight_decay": 0.01},
    "td3-bronet-hlgauss-nstep": {"algo": "td3", "arch": "bronet", "critic_head": "hlgauss",
                                 "atoms": 11, "v_min": -10.0, "v_max": 10.0, "n_step": 3},
}  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_a_member_equals_the_single_run_of_its_seed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    cfg = resolve({**TINY, **CASES[case]})
    compiled = "aot_eager" if "compiled" in case else False
    seen = record_losses(monkeypatch)
    stacked = Trainer(cfg, tmp_path / "stacked", seeds=[5, 2])
    many = first_updates(stacked, 10, compiled)
    many_losses, seen[:] = list(seen), []
    (tmp_path / "single").mkdir()
    single = Trainer(dataclasses.replace(cfg, seed=2), tmp_path / "single")
    one = first_updates(single, 10)  # eager: compiled members equal the eager single run
    one_losses = list(seen)

    member = stacked.layout.take({"modules": many["init"]}, 1)["modules"]
    assert member.keys() == one["init"].keys()
    for name, value in one["init"].items():
        torch.testing.assert_close(member[name], value, rtol=0, atol=1e-4, msg=name)
    # Warm-up actions (and everything else the replay holds) from the seed's own streams.
    mine, theirs = many["replays"][1], one["replays"][0]
    assert mine.size == theirs.size
    for a, b in zip(mine.storage.fields().values(), theirs.storage.fields().values(), strict=True):
        torch.testing.assert_close(a[: mine.size].float(), b[: mine.size].float(), atol=1e-4,
                                   rtol=0)  # fmt: skip
    np.testing.assert_allclose(many["returns"][1], one["returns"][0], rtol=1e-5, atol=1e-4)
    # The other member is a different agent.
    assert not np.allclose(many["returns"][0], one["returns"][0])
    assert len(many_losses) == len(one_losses) == 10
    for step, (m, o) in enumerate(zip(many_losses, one_losses, strict=True)):
        for name, value in o.items():
            torch.testing.assert_close(
                m[name][1], value[0], rtol=1e-4, atol=1e-4, msg=f"{name} at update {step}"
            )


# --- no member reaches another ----------------------------------------------------------------
@pytest.mark.slow
def test_perturbing_one_members_env_leaves_the_others_bit_identical(tmp_path: Path) -> None:
    cfg = resolve({**TINY, "steps": 60, "eval_every": 30, "ofenet_units": 16,
                   "ofenet_layers": 2, "ofenet_pretrain": 3, "prioritized": True})  # fmt: skip
    seeds = [0, 1, 2]

    def run(out: Path, perturb: bool) -> None:
        trainer = Trainer(cfg, out, seeds=seeds)
        if perturb:
            envs = trainer.parts.source.collectors[1].envs
            step = envs.step

            def shifted(action):  # noqa: ANN001, ANN202
                obs, rew, term, trunc, info = step(action)
                return obs, rew + 1.0, term, trunc, info

            envs.step = shifted
        trainer.run()

    run(tmp_path / "plain", False)
    run(tmp_path / "perturbed", True)
    for s in seeds:
        a = torch.load(tmp_path / "plain" / f"s{s}" / "checkpoint.pt", weights_only=True)
        b = torch.load(tmp_path / "perturbed" / f"s{s}" / "checkpoint.pt", weights_only=True)
        same = all(torch.equal(a["agent"]["modules"][k], b["agent"]["modules"][k])
                   for k in a["agent"]["modules"])  # fmt: skip
        same_rows = rows(tmp_path / "plain" / f"s{s}") == rows(tmp_path / "perturbed" / f"s{s}")
        if s == 1:
            assert not same and not same_rows
        else:
            assert same and same_rows, s


# --- the command line, end to end ----------------------------------------------------------
@pytest.mark.slow
def test_seeds_run_interrupt_resume_and_eval_of_one_seed(tmp_path: Path, capsys) -> None:
    run = ["--steps", "90", "--eval-every", "30", "--checkpoint-replay"]
    ref, out = tmp_path / "ref", tmp_path / "out"
    assert main(["train", "--out", str(ref), *TINY_ARGS, *run, "--seeds", "0-1"]) == 0
    assert sorted(p.name for p in ref.iterdir()) == ["run.lock", "s0", "s1", "seeds.json"]
    for s in (0, 1):
        folder = ref / f"s{s}"
        assert {"config.json", "metrics.csv", "checkpoint.pt", "learning_curve.png", "tb"} <= {
            p.name for p in folder.iterdir()
        }
        assert '"seed": 1' in (ref / "s1" / "config.json").read_text()
        assert [int(r["grad_step"]) for r in rows(folder)] == [0, 30, 60, 90]
    assert rows(ref / "s0") != rows(ref / "s1")

    # Stopped at update 45 (as SIGINT stops it, at a clean point): every seed saved, and
    # --resume of the folder continues both to the uninterrupted run's rows.
    original = Trainer.learn_step

    def stop_at_45(self) -> None:  # noqa: ANN001
        original(self)
        if self.grad_step == 45:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.MonkeyPatch.context() as m:
        m.setattr(Trainer, "learn_step", stop_at_45)
        argv = ["train", "--out", str(out), *TINY_ARGS, *run, "--seeds", "0-1"]
        assert main(argv) == 128 + signal.SIGINT
    for s in (0, 1):
        assert torch.load(out / f"s{s}" / "checkpoint.pt", weights_only=True)["grad_step"] == 45
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "--no-progress"]) == 0
    for s in (0, 1):
        assert rows(out / f"s{s}") == rows(ref / f"s{s}"), s
    assert "done: 2 seeds, 90 updates" in capsys.readouterr().out

    # One seed's folder is a single run's: eval, and --resume of it alone.
    assert main(["eval", str(out / "s1"), "--episodes", "1"]) == 0
    assert "return over 1 episodes" in capsys.readouterr().out
    assert main(["train", "--resume", str(out / "s1"), "--steps", "120", "--no-progress"]) == 0
    assert [int(r["grad_step"]) for r in rows(out / "s1")] == [0, 30, 60, 90, 120]
    # The seeds are now apart: continuing them as one run is refused, one line, exit 2.
    assert main(["train", "--resume", str(out), "--steps", "150", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "resume each" in err, err


# --- widerl experiment --seeds-per-process ---------------------------------------------------
@pytest.mark.slow
def test_experiment_packs_a_runs_seeds_into_one_process(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    from widerl.experiments.plan import DONE, run_state
    from widerl.experiments.registry import EXPERIMENTS, Experiment, RunSpec

    spec = RunSpec("mlp", {"units": 16, "layers": 1})
    tiny = Experiment("tiny", "test", "a tiny SAC net", ("Pendulum-v1",), (spec,), 10_000, 2)
    monkeypatch.setitem(EXPERIMENTS, "tiny", tiny)
    out = tmp_path / "exp"
    train_args = ["--train-args", "--warmup 50 --eval-episodes 1 --batch-size 32"]
    args = ["experiment", "tiny", "--out", str(out), "--seeds-per-process", "2", *train_args]
    assert main([*args, "--steps", "30", "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "1 runs x 2 seed(s) = 2 jobs in 1 processes" in printed
    assert "[new] widerl train" in printed and "--seeds 0,1 --out" in printed
    assert main([*args, "--steps", "30"]) == 0
    assert "1 finished, 0 skipped" in capsys.readouterr().out
    run = out / "tiny" / "Pendulum-v1-mlp"
    for s in (0, 1):
        assert run_state(run / f"s{s}", 30) == DONE
        assert f'"seed": {s}' in (run / f"s{s}" / "config.json").read_text()
    assert "--seeds 0,1" in (run / "train.log").read_text()
    # A larger budget continues the pack from its seeds' checkpoints, in one process.
    assert main([*args, "--steps", "40", "--dry-run"]) == 0
    assert f"[resume] widerl train --resume {run} " in capsys.readouterr().out
    assert main([*args, "--steps", "40"]) == 0
    assert "1 finished, 0 skipped" in capsys.readouterr().out
    assert all(run_state(run / f"s{s}", 40) == DONE for s in (0, 1))
    # Packs of part of a run's seeds would share its folder: refused, one line, exit 2.
    assert main([*args[:-2], "--seeds-per-process", "2", "--seeds", "3", "--steps", "40"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not supported yet, because" in err, err


# --- widerl bench --seeds ------------------------------------------------------------------
@pytest.mark.slow
def test_bench_seeds_times_stacked_and_single_processes_side_by_side(capsys) -> None:
    import json
    import statistics

    argv = ["bench", "--stacked-seeds", "2", "--units", "8", "--layers", "1", "--updates", "4"]
    assert main([*argv, "--rounds", "2", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["seeds"] == 2 and r["processes_per_side"] == 2 and r["threads_per_process"] == 1
    stacked, single = r["stacked_per_round"], r["single_per_round"]
    assert len(stacked) == len(single) == 2 and min(stacked + single) > 0
    ratios = [a / b for a, b in zip(stacked, single, strict=True)]
    assert r["ratio"] == pytest.approx(statistics.median(ratios))
    # A stacked step of 2 seeds runs twice the matmuls of one seed's.
    assert r["stacked_flops_per_step"] == pytest.approx(2 * r["single_flops_per_step"])
    assert 0 < r["stacked_peak_fraction"] < 1 and 0 < r["single_peak_fraction"] < 1
    assert main([*argv, "--peer", "sbx"]) == 2
    assert "takes no --peer" in capsys.readouterr().err


@pytest.mark.slow
def test_a_diverged_seed_keeps_its_last_finite_checkpoint_and_the_others_save(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from widerl.errors import Diverged

    cfg = resolve({**TINY, "steps": 90, "eval_every": 30})
    trainer = Trainer(cfg, tmp_path, seeds=[0, 1])
    original = Trainer.learn_step

    def poison_seed_1(self) -> None:  # noqa: ANN001
        original(self)
        if self.grad_step == 40:
            weight = next(self.agent.critics.parameters())  # [K * N, in, out], seed-major
            n = weight.shape[0] // 2
            weight[n:].fill_(float("nan"))

    monkeypatch.setattr(Trainer, "learn_step", poison_seed_1)
    with pytest.raises(Diverged) as e:
        trainer.run()
    assert e.value.lane == 1 and "other seeds' checkpoints are saved at update 60" in str(e.value)
    assert (tmp_path / "s1" / "diverged.json").is_file()
    assert not (tmp_path / "s0" / "diverged.json").exists()
    steps = [torch.load(tmp_path / f"s{s}" / "checkpoint.pt", weights_only=True)["grad_step"]
             for s in (0, 1)]  # fmt: skip
    assert steps == [60, 30]
    assert main(["train", "--resume", str(tmp_path / "s0"), "--no-progress"]) == 0


@pytest.mark.slow
def test_stacked_seeds_with_utd_and_resets_write_their_single_runs_rows(tmp_path: Path) -> None:
    """The schedules beyond the paper through the trainer's own loop, stacked: two updates per
    env step (--utd 2) and full resets every 20 updates, with SimBa and --obs-norm. Seed 1's
    rows in a `--seeds 0,1` run are the rows of the `--seed 1` run (numbers to 1e-4)."""
    flags = [*TINY_ARGS, "--arch", "simba", "--obs-norm", "--utd", "2", "--reset-every", "20"]
    flags += ["--steps", "60", "--eval-every", "30"]
    assert main(["train", "--out", str(tmp_path / "many"), "--seeds", "0,1", *flags]) == 0
    assert main(["train", "--out", str(tmp_path / "one"), "--seed", "1", *flags]) == 0
    many, one = rows(tmp_path / "many" / "s1"), rows(tmp_path / "one")
    assert len(many) == len(one) == 3 and int(one[-1]["resets"]) == 2
    for m, o in zip(many, one, strict=True):
        assert m.keys() == o.keys()
        for k, v in o.items():
            try:
                assert float(m[k]) == pytest.approx(float(v), rel=1e-4, abs=1e-4), k
            except ValueError:  # a text column (e.g. per-collector lists)
                assert m[k] == v, k
