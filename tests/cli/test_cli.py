"""The command line at tiny budgets: real runs, determinism, resume and every bad input."""

import csv
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from widerl.cli import main
from widerl.record.logger import TIMING_COLUMNS

TINY = [
    "--units",
    "16",
    "--layers",
    "2",
    "--batch-size",
    "32",
    "--eval-episodes",
    "2",
    "--no-progress",
    # Some tests step a 100,000-update run (stopped early), which --compile auto would compile.
    "--compile=off",
]


def train_cmd(out: Path, *args: str) -> list[str]:
    """`widerl train` as a subprocess command line (for signal tests)."""
    return [sys.executable, "-m", "widerl.cli", "train", "--out", str(out), *TINY, *args]


def rows(run: Path) -> list[dict[str, str]]:
    with (run / "metrics.csv").open() as f:
        return list(csv.DictReader(f))


def train(out: Path, *args: str) -> int:
    return main(["train", "--out", str(out), *TINY, *args])


def test_train_pendulum_sac_writes_a_complete_run(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert (
        train(out, "--env", "Pendulum-v1", "--steps", "120", "--warmup", "50", "--eval-every", "40")
        == 0
    )
    printed = capsys.readouterr().out
    assert "plot:" in printed and str(out) in printed
    for name in ("config.json", "metrics.csv", "checkpoint.pt", "learning_curve.png"):
        assert (out / name).is_file()
    assert any((out / "tb").iterdir())
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["units"] == 16 and cfg["algo"] == "sac" and cfg["warmup"] == 50
    r = rows(out)
    assert [int(x["grad_step"]) for x in r] == [0, 40, 80, 120]
    assert [int(x["env_step"]) for x in r] == [50, 90, 130, 170]  # warm-up, then 1:1
    for col in (
        "wall_time",
        "eval_return_mean",
        "eval_return_std",
        "critic_loss",
        "actor_loss",
        "alpha",
    ):
        assert col in r[0]
    assert r[-1]["critic_loss"] != "" and float(r[-1]["alpha"]) > 0
    # Effective rank of the critic's 16 penultimate features on the fixed probe states (A.4).
    assert all(1 <= int(x["srank"]) <= 16 for x in r)
    assert int(r[-1]["replay_size"]) == 170 and r[-1]["restarts"] == "0"
    assert 0 <= float(r[-1]["weight_age"]) <= 120


def test_train_mujoco_td3(tmp_path: Path) -> None:
    out = tmp_path / "td3"
    assert (
        train(
            out,
            "--algo",
            "td3",
            "--env",
            "Hopper-v5",
            "--steps",
            "60",
            "--warmup",
            "40",
            "--eval-every",
            "30",
            "--arch",
            "densenet",
            "--activation",
            "swish",
            "--critic-loss",
            "huber",
            "--prioritized",
        )
        == 0
    )
    r = rows(out)
    assert [int(x["grad_step"]) for x in r] == [0, 30, 60]
    assert "alpha" not in r[0] and r[-1]["actor_loss"] != ""
    assert json.loads((out / "config.json").read_text())["lr"] == 1e-3  # TD3 paper's Adam


def test_preset_sets_defaults_and_flags_override(tmp_path: Path) -> None:
    out = tmp_path / "p"
    assert (
        main(
            [
                "train",
                "--preset",
                "paper-S",
                "--env",
                "Pendulum-v1",
                "--out",
                str(out),
                "--units",
                "16",
                "--steps",
                "10",
                "--warmup",
                "40",
                "--batch-size",
                "16",
                "--eval-every",
                "10",
                "--eval-episodes",
                "1",
                "--no-progress",
                "--ofenet-units",
                "16",
                "--ofenet-pretrain",
                "5",
            ]
        )
        == 0
    )
    cfg = json.loads((out / "config.json").read_text())
    assert (cfg["arch"], cfg["activation"], cfg["critic_loss"]) == ("densenet", "swish", "huber")
    assert (cfg["ofenet_layers"], cfg["ofenet_pretrain"]) == (8, 5)
    assert cfg["units"] == 16 and cfg["ofenet_units"] == 16  # flags beat the preset's 256


def test_same_seed_same_metrics(tmp_path: Path) -> None:
    args = [
        "--env",
        "Pendulum-v1",
        "--steps",
        "60",
        "--warmup",
        "40",
        "--eval-every",
        "30",
        "--prioritized",
    ]
    assert train(tmp_path / "a", *args, "--seed", "3") == 0
    assert train(tmp_path / "b", *args, "--seed", "3") == 0
    assert train(tmp_path / "c", *args, "--seed", "4") == 0

    def strip(r: list[dict]) -> list[dict]:
        return [{k: v for k, v in x.items() if k not in TIMING_COLUMNS} for x in r]

    a, b, c = (strip(rows(tmp_path / n)) for n in "abc")
    assert a == b
    assert a != c


def test_resume_continues_where_it_stopped(tmp_path: Path) -> None:
    out = tmp_path / "r"
    base = ["--env", "Pendulum-v1", "--warmup", "40", "--eval-every", "20"]
    assert train(out, *base, "--steps", "40", "--checkpoint-replay") == 0
    first = rows(out)
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["grad_step"] == 40 and ckpt["replay"]["size"] == 80
    assert main(["train", "--resume", str(out), "--steps", "80", "--no-progress"]) == 0
    r = rows(out)
    assert r[: len(first)] == first
    assert [int(x["grad_step"]) for x in r] == [0, 20, 40, 60, 80]
    assert [int(x["env_step"]) for x in r] == [40, 60, 80, 100, 120]
    walls = [float(x["wall_time"]) for x in r]
    assert walls == sorted(walls)
    assert torch.load(out / "checkpoint.pt", weights_only=True)["grad_step"] == 80


def test_resume_without_stored_replay_refills_with_the_policy(tmp_path: Path) -> None:
    out = tmp_path / "r"
    assert (
        train(out, "--env", "Pendulum-v1", "--warmup", "40", "--eval-every", "20", "--steps", "20")
        == 0
    )
    assert main(["train", "--resume", str(out), "--steps", "40", "--no-progress"]) == 0
    r = rows(out)
    assert [int(x["grad_step"]) for x in r] == [0, 20, 40]
    assert int(r[-1]["env_step"]) == 60 + 40 + 20  # 40 refill steps, then 20 updates 1:1


@pytest.mark.slow
def test_sigint_saves_a_checkpoint_and_resume_completes(tmp_path: Path) -> None:
    out = tmp_path / "kill"
    cmd = train_cmd(
        out, "--env", "Pendulum-v1", "--warmup", "40", "--eval-every", "50", "--steps", "100000"
    )
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and len(rows(out) if (out / "metrics.csv").exists() else []) < 3:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "--resume" in err
    stopped = torch.load(out / "checkpoint.pt", weights_only=True)["grad_step"]
    assert stopped >= 100
    assert main(["train", "--resume", str(out), "--steps", str(stopped + 60), "--no-progress"]) == 0
    steps = [int(x["grad_step"]) for x in rows(out)]
    assert steps == sorted(set(steps)) and steps[-1] == stopped + 60


def test_eval_and_summary_commands(tmp_path: Path, capsys) -> None:
    out = tmp_path / "e"
    assert (
        train(out, "--env", "Pendulum-v1", "--steps", "10", "--warmup", "40", "--eval-every", "10")
        == 0
    )
    capsys.readouterr()
    assert main(["eval", str(out), "--episodes", "2"]) == 0
    line = capsys.readouterr().out
    assert "mean" in line and "std" in line
    assert (
        main(["summary", "--preset", "paper-original", "--obs-dim", "111", "--act-dim", "8"]) == 0
    )
    assert "96,520" in capsys.readouterr().out


# --- bad input: one line naming the value, exit 2, nothing overwritten -------------------
BAD = [
    (["train", "--env", "NoSuchEnv-v0"], "NoSuchEnv-v0"),
    (["train", "--env", "CartPole-v1"], "CartPole-v1"),
    (["train", "--algo", "ppo"], "ppo"),
    (["train", "--arch", "transformer"], "transformer"),
    (["train", "--activation", "gelu"], "gelu"),
    (["train", "--preset", "paper-XL"], "paper-XL"),
    (["train", "--units", "0"], "--units"),
    (["train", "--layers", "-1"], "--layers"),
    (["train", "--steps", "0"], "--steps"),
    (["train", "--units", "abc"], "abc"),
    (["summary", "--obs-dim", "0", "--act-dim", "3"], "--obs-dim"),
    (["bench", "--units", "0"], "--units"),
    (["eval", "/nonexistent/run"], "/nonexistent/run"),
]


@pytest.mark.parametrize(
    ("address", "named"),
    [
        ("127.0.0.1:1", "nothing answers there"),  # nothing listens on port 1
        ("no-port-here", "is not auto or HOST:PORT"),
    ],
)
def test_bad_ray_address_fails_fast_and_writes_nothing(
    address: str, named: str, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "never"
    argv = ["train", "--env", "Pendulum-v1", "--actors", "1", "--ray-address", address]
    assert main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and address in err and named in err
    assert not out.exists()
    # --ray-address means nothing without collectors.
    assert main(["train", "--ray-address", address, "--out", str(out)]) == 2
    assert "--actors" in capsys.readouterr().err and not out.exists()


@pytest.mark.parametrize(("argv", "named"), BAD)
def test_bad_input_is_one_line_exit_2(argv: list[str], named: str, capsys) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and named in err and "Traceback" not in err


def test_bad_input_in_a_subprocess_has_no_traceback() -> None:
    p = subprocess.run(
        [sys.executable, "-m", "widerl.cli", "train", "--units", "0"],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1
    assert "Traceback" not in p.stderr


@pytest.fixture
def finished(tmp_path: Path) -> Path:
    out = tmp_path / "done"
    assert (
        train(out, "--env", "Pendulum-v1", "--steps", "10", "--warmup", "40", "--eval-every", "10")
        == 0
    )
    return out


def snapshot(run: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}


def test_existing_run_is_not_overwritten(finished: Path, capsys) -> None:
    before = snapshot(finished)
    assert train(finished, "--env", "Pendulum-v1", "--steps", "10") == 2
    assert "--force" in capsys.readouterr().err
    assert snapshot(finished) == before
    assert (
        train(
            finished,
            "--env",
            "Pendulum-v1",
            "--steps",
            "10",
            "--warmup",
            "40",
            "--eval-every",
            "10",
            "--force",
        )
        == 0
    )


def test_resume_errors(finished: Path, tmp_path: Path, capsys) -> None:
    before = snapshot(finished)
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        (["train", "--resume", str(empty)], "empty"),
        (["train", "--resume", str(tmp_path / "missing")], "missing"),
        (["train", "--resume", str(finished), "--env", "Hopper-v5"], "Hopper-v5"),
        (["train", "--resume", str(finished), "--units", "64"], "--units"),
    ]
    for argv, named in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and named in err, err
    assert snapshot(finished) == before
    # A checkpoint from another env is refused too.
    cfg = json.loads((finished / "config.json").read_text())
    cfg["env"] = "Hopper-v5"
    (finished / "config.json").write_text(json.dumps(cfg))
    assert main(["train", "--resume", str(finished)]) == 2
    assert "Pendulum-v1" in capsys.readouterr().err


class Evil:
    def __reduce__(self):  # noqa: ANN204
        return (os.system, ("touch /tmp/widerl-pwned",))


def test_checkpoint_loading_never_unpickles_code(finished: Path, capsys) -> None:
    ckpt = finished / "checkpoint.pt"
    torch.save({"format": 1, "evil": Evil()}, ckpt)
    Path("/tmp/widerl-pwned").unlink(missing_ok=True)
    assert main(["eval", str(finished)]) == 2
    assert not Path("/tmp/widerl-pwned").exists()
    assert "cannot load checkpoint" in capsys.readouterr().err
    ckpt.write_bytes(pickle.dumps([1, 2])[:5])  # truncated garbage
    assert main(["train", "--resume", str(finished)]) == 2
    assert "cannot load checkpoint" in capsys.readouterr().err


def _can_render() -> bool:
    os.environ.setdefault("MUJOCO_GL", "egl")
    try:
        import gymnasium as gym

        env = gym.make("InvertedPendulum-v5", render_mode="rgb_array")
        env.reset(seed=0)
        ok = env.render() is not None
        env.close()
        return ok
    except Exception:
        return False


@pytest.mark.skipif(not _can_render(), reason="no offscreen OpenGL (MUJOCO_GL=egl) here")
def test_eval_writes_a_video(tmp_path: Path, capsys) -> None:
    out = tmp_path / "v"
    assert (
        train(
            out,
            "--env",
            "InvertedPendulum-v5",
            "--steps",
            "10",
            "--warmup",
            "40",
            "--eval-every",
            "10",
        )
        == 0
    )
    video = tmp_path / "episode.gif"
    assert main(["eval", str(out), "--episodes", "1", "--video", str(video)]) == 0
    from PIL import Image

    with Image.open(video) as im:
        assert im.n_frames >= 2
    assert main(["eval", str(out), "--video", str(video)]) == 2  # never overwrites


def test_bench_command_json(capsys) -> None:
    pytest.importorskip("stable_baselines3")
    assert (
        main(
            [
                "bench",
                "--algo",
                "td3",
                "--units",
                "16",
                "--layers",
                "1",
                "--batch-size",
                "32",
                "--updates",
                "5",
                "--rounds",
                "2",
                "--obs-dim",
                "11",
                "--act-dim",
                "3",
                "--json",
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    for key in (
        "ours_updates_per_s",
        "peer_updates_per_s",
        "ratio",
        "flops_per_update",
        "peak_flops_fraction",
    ):
        assert result[key] > 0, key
    assert result["algo"] == "td3" and result["units"] == 16


def test_sigterm_during_warmup_stops_promptly(tmp_path: Path) -> None:
    out = tmp_path / "w"
    cmd = train_cmd(
        out, "--algo", "td3", "--env", "Pendulum-v1", "--warmup", "10000000", "--steps", "10"
    )
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and not (out / "checkpoint.pt").exists():
        time.sleep(0.2)
    time.sleep(1.0)  # inside the random warm-up now
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM, err  # 143, as a shell reports SIGTERM
    assert torch.load(out / "checkpoint.pt", weights_only=True)["collector"]["env_steps"] > 0
