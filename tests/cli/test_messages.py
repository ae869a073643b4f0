"""One-line errors where tracebacks or cut messages were, help texts, TensorBoard tags and the
learning-curve figure."""

import errno
import json
import os
import pickle
import shutil
from pathlib import Path

import click
import pytest
import torch

from widerl.cli import bench_cmd, main, train_cmd
from widerl.config import Config, default_out

TINY = ["--units", "16", "--batch-size", "16", "--eval-episodes", "1", "--no-progress"]
# 200 warm-up steps: one whole Pendulum episode, so train/episode_return is logged.
TINY += ["--env", "Pendulum-v1", "--warmup", "200", "--threads", "1"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("messages") / "run"
    assert main(["train", "--out", str(out), *TINY, "--steps", "10", "--eval-every", "10"]) == 0
    return out


@pytest.fixture
def run(finished_run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(finished_run, tmp_path / "run"))


def one_line_error(argv: list[str], capsys) -> str:
    assert main(argv) == 2, argv
    err = capsys.readouterr().err
    assert err.startswith("widerl: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err.strip()


# --- item 6: a checkpoint that does not fit its config ----------------------------------------


@pytest.mark.parametrize("command", ["eval", "landscape"])
def test_checkpoint_that_does_not_fit_its_config_is_one_line(command: str, run: Path, capsys):
    cfg = json.loads((run / "config.json").read_text())
    cfg["units"] = 32
    (run / "config.json").write_text(json.dumps(cfg))
    err = one_line_error([command, str(run)], capsys)
    # Pendulum: the critics' first layer sees obs (3) + action (1).
    # Weights are [critics, in, out] (the twin critics as one ensemble).
    assert "critics.body.layers.0.linear.weight" in err
    assert "(2, 4, 16) in the checkpoint" in err and "(2, 4, 32)" in err
    assert "do not belong together" in err and str(run) in err


def test_checkpoint_without_an_optimizer_the_config_needs(run: Path, capsys) -> None:
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    name = next(iter(ckpt["agent"]["optimizers"]))
    del ckpt["agent"]["optimizers"][name]
    torch.save(ckpt, run / "checkpoint.pt")
    err = one_line_error(["eval", str(run)], capsys)
    assert f"no state for the {name} optimizer" in err and str(run) in err


# --- item 6: an --out that cannot be written ---------------------------------------------------


def unwritable() -> Path:
    """A path no process may create, root included (sysfs refuses mkdir)."""
    if not Path("/sys").is_dir():
        pytest.skip("no /sys here")
    return Path("/sys/widerl-test/out")


def test_train_out_that_cannot_be_created(capsys) -> None:
    out = unwritable()
    err = one_line_error(["train", "--out", str(out), *TINY], capsys)
    assert f"--out {str(out)!r}" in err and "/sys/widerl-test" in err
    assert "not permitted" in err or "denied" in err


def test_read_only_filesystem_names_path_and_reason(tmp_path: Path, monkeypatch, capsys):
    out = tmp_path / "ro" / "run"
    real_mkdir = Path.mkdir

    def mkdir(self: Path, *args, **kwargs) -> None:
        if self == out:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    err = one_line_error(["train", "--out", str(out), *TINY], capsys)
    assert str(out) in err and "Read-only file system" in err


@pytest.mark.parametrize("command", ["landscape", "report"])
def test_other_outs_that_cannot_be_created(command: str, finished_run: Path, capsys) -> None:
    out = unwritable()
    err = one_line_error([command, str(finished_run), "--out", str(out)], capsys)
    assert f"--out {str(out)!r}" in err


def test_experiment_out_that_cannot_be_created(capsys) -> None:
    argv = ["experiment", "depth", "--out", str(unwritable()), "--steps", "10", "--seeds", "1"]
    assert "/sys/widerl-test" in one_line_error(argv, capsys)


# --- item 7: messages --------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["eval", "landscape"])
def test_missing_or_empty_run_folder_names_the_right_command(
    command: str, tmp_path: Path, capsys
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    for folder, words in [(tmp_path / "missing", "is not a folder"), (empty, "no config.json")]:
        err = one_line_error([command, str(folder)], capsys)
        assert f"widerl {command} RUN_DIR {str(folder)!r}" in err and words in err
        assert "--resume" not in err


class Evil:
    def __reduce__(self):  # noqa: ANN204
        return (os.system, ("touch /tmp/widerl-pwned-messages",))


@pytest.mark.parametrize("command", ["eval", "resume"])
def test_checkpoint_load_errors_are_whole_sentences(command: str, run: Path, capsys) -> None:
    ckpt = run / "checkpoint.pt"
    good = ckpt.read_bytes()
    argv = ["eval", str(run)] if command == "eval" else ["train", "--resume", str(run)]
    truncated = (
        "the file is truncated: its torch zip archive has no end record (was it copied or "
        "written only in part?)"
    )
    cases = [
        (good[: len(good) // 2], truncated),
        (good[:100], truncated),
        (b"", "the file is empty (was it copied or written only in part?)"),
        (
            os.urandom(4096).replace(b"\x80", b"\x00").replace(b"PK", b"pk"),
            "the file is not a torch checkpoint (neither a torch zip archive nor a pickle)",
        ),
        (
            pickle.dumps([1, 2])[:5],
            "the file is a bare Python pickle (or part of one), not a torch checkpoint, and a "
            "safe (weights-only) load cannot read it",
        ),
    ]
    for data, reason in cases:
        ckpt.write_bytes(data)
        err = one_line_error(argv, capsys)
        assert err == f"widerl: error: cannot load checkpoint {str(ckpt)!r}: {reason}", err
    torch.save({"format": 1, "evil": Evil()}, ckpt)
    err = one_line_error(argv, capsys)
    assert not Path("/tmp/widerl-pwned-messages").exists()
    # The reason it was refused survives: the global it tried to load.
    assert f"{os.system.__module__}.system" in err and "could run code" in err
    assert err.endswith("widerl never opens a checkpoint unsafely")


def test_bare_widerl_prints_the_normal_help(capsys) -> None:
    """Exit status 2 (a usage error: no command), the help as `widerl --help` prints it."""
    assert main([]) == 2
    err = capsys.readouterr().err
    assert not err.startswith("widerl: error:")
    lines = err.splitlines()
    assert lines[0].startswith("Usage: widerl") and "Commands:" in lines
    assert any(line.split()[:1] == ["train"] for line in lines)
    assert main(["--help"]) == 0
    assert capsys.readouterr().out.strip() == err.strip()


def _help_of(command: click.Command, name: str) -> str:
    return next(p for p in command.params if p.name == name).help or ""


def test_train_help_has_real_default_texts() -> None:
    text = train_cmd.get_help(click.Context(train_cmd, info_name="train"))
    assert "see help" not in text
    assert str(default_out(Config())) == "runs/Hopper-v5-sac-mlp-256x2-s0"
    assert "runs/Hopper-v5-sac-mlp-256x2-s0" in _help_of(train_cmd, "out")
    assert "[default: none (a private Ray" in _help_of(train_cmd, "ray_address")
    assert "10000 for sac, 100000 for td3" in _help_of(train_cmd, "warmup")


@pytest.mark.parametrize("name", ["algo", "batch_size", "device"])
def test_bench_options_have_help(name: str) -> None:
    assert len(_help_of(bench_cmd, name)) > 10


def test_experiment_dry_run_needs_no_out(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["experiment", "depth", "--dry-run", "--seeds", "1", "--steps", "100"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "in runs/depth" in lines[0] and "--out runs/depth/Ant-v5-mlp-256x1/s0" in lines[1]
    assert not (tmp_path / "runs").exists()  # a dry run writes nothing


def test_experiment_checks_each_run_like_train(capsys) -> None:
    """Checks that need the env's sizes or the machine: `resolve` alone passed these."""
    argv = ["experiment", "ofenet", "--dry-run", "--seeds", "1", "--steps", "100"]
    argv += ["--envs", "Pendulum-v1"]
    assert main(argv) == 0
    capsys.readouterr()
    err = one_line_error([*argv, "--train-args", "--ofenet-target-dim 50"], capsys)
    assert "run " in err and "--ofenet-target-dim 50" in err and "3 dims" in err
    err = one_line_error([*argv, "--train-args", "--buffer-size 1000000000000"], capsys)
    assert "run " in err and "--buffer-size 1000000000000 needs" in err


def test_summary_of_huge_networks_allocates_nothing(capsys) -> None:
    argv = ["summary", "--obs-dim", "3", "--act-dim", "1", "--units", "200000"]
    assert main(argv) == 0
    assert "80,002,800,002" in capsys.readouterr().out  # twin critics: 2 x (4 x 2e5 + 4e10 + ...)


# --- item 9: TensorBoard tags and the learning curve -------------------------------------------


def test_tensorboard_tags_are_grouped(finished_run: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(finished_run / "tb"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    for tag in (
        "eval/return_mean",
        "eval/return_std",
        "train/episode_return",
        "train/env_step",
        "losses/critic_loss",
        "losses/actor_loss",
        "losses/alpha_loss",
        "train/alpha",
        "charts/updates_per_s",
        "replay/size",
    ):
        assert tag in tags, (tag, sorted(tags))
    assert all("/" in tag for tag in tags), sorted(tags)
    assert acc.Scalars("eval/return_mean")[-1].step == 10


def test_learning_curve_legend_stays_off_the_curve_and_the_std_shows(
    tmp_path: Path, monkeypatch
) -> None:
    from matplotlib.collections import PolyCollection

    import widerl.record.plot as plot
    from widerl.record.logger import BASE_COLUMNS

    header = ",".join(BASE_COLUMNS)
    lines = [header]
    mean = [8, 30, 120, 400, 900, 1000, 1000, 650, 1000]
    std = [1, 10, 50, 300, 150, 0, 0, 400, 0]
    for i, (m, s) in enumerate(zip(mean, std, strict=True)):
        row = dict.fromkeys(BASE_COLUMNS, "")
        row.update(grad_step=str(i * 1000), eval_return_mean=str(m), eval_return_std=str(s))
        lines.append(",".join(row[c] for c in BASE_COLUMNS))
    (tmp_path / "metrics.csv").write_text("\n".join(lines) + "\n")
    figures = []
    monkeypatch.setattr(plot.plt, "close", figures.append)
    path = plot.plot_learning_curve(tmp_path, "demo")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (fig,) = figures
    ax = fig.axes[0]
    fig.canvas.draw()
    legend = ax.get_legend().get_window_extent()
    assert not legend.overlaps(ax.get_window_extent()), "the legend covers the plot area"
    band = next(c for c in ax.collections if isinstance(c, PolyCollection))
    line = ax.get_lines()[0]
    assert band.get_alpha() >= 0.3
    assert tuple(band.get_facecolor()[0][:3]) == pytest.approx(
        tuple(plot.matplotlib.colors.to_rgb(line.get_color()))
    )
    # A std too small for the band to show at this scale still gets its caps.
    caps = [c for c in ax.containers if hasattr(c, "has_yerr") and c.has_yerr]
    assert caps and len(caps[0].lines[1][0].get_xdata()) == len(mean)
