"""`widerl export` / `widerl.export`: the exported policy computes `load_policy(run).act` for
every body family and feature learner, in each format, run by its own runtime."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import widerl
from widerl.cli import main
from widerl.exported import FORMATS, env_observations, run_exported

TINY = {
    "env": "Pendulum-v1",
    "units": 16,
    "layers": 2,
    "batch_size": 32,
    "buffer_size": 5_000,
    "warmup": 200,
    "steps": 60,
    "eval_every": 60,
    "eval_episodes": 1,
    "threads": 1,
    "progress": False,
}
# Every body family and feature learner, with what changes acting in eval mode.
FAMILIES = {
    "mlp": {},
    "resnet": {"arch": "resnet"},
    "d2rl": {"arch": "d2rl"},
    "densenet-ofenet-batchnorm": {
        "arch": "densenet",
        "batchnorm": True,
        "ofenet_units": 8,
        "ofenet_layers": 2,
        "ofenet_pretrain": 20,
    },
    "simba-obs-norm": {"arch": "simba", "obs_norm": True},
    "bronet": {"arch": "bronet"},
    "crossq-batch-renorm": {"algo": "crossq"},
    "td3-deterministic-actor": {"algo": "td3"},
    # The lineage: hyperspherical layers and scalers; the encoders' fixed copies feed acting
    "simbav2-obs-norm": {"arch": "simbav2", "obs_norm": True},
    "td3-sale": {"algo": "td3", "features": "sale", "encoder_units": 16, "encoder_dim": 8,
                 "encoder_target_every": 20},
    "td3-mrq": {"algo": "td3", "features": "mrq", "encoder_units": 16, "encoder_dim": 8,
                "encoder_target_every": 20, "encoder_horizon": 2},
}  # fmt: skip
TOLERANCE = 1e-5


@pytest.mark.slow
@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_format_matches_load_policy(family: str, tmp_path: Path) -> None:
    run = tmp_path / "run"
    widerl.train(widerl.resolve({**TINY, **FAMILIES[family]}), run)
    policy = widerl.load_policy(run)
    obs = env_observations(TINY["env"], 1_000)
    expected = policy.act(obs)
    assert np.ptp(expected) > 0  # a policy whose actions vary: the comparison can fail
    for fmt in FORMATS:
        path = widerl.export(run, fmt)
        assert path.parent == run and path.is_file()
        batch = run_exported(path, obs)
        one = run_exported(path, obs[:1])
        assert batch.dtype == np.float32 and batch.shape == expected.shape
        np.testing.assert_allclose(batch, expected, rtol=0, atol=TOLERANCE, err_msg=fmt)
        np.testing.assert_allclose(one[0], policy.act(obs[0]), rtol=0, atol=TOLERANCE)


@pytest.fixture(scope="module")
def seeds_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export") / "seeds"
    widerl.train(widerl.resolve({**TINY, "steps": 20, "eval_every": 20}), out, seeds=[0, 1])
    return out


def test_a_seeds_run_exports_the_seed_asked_for(seeds_run: Path, tmp_path: Path) -> None:
    obs = env_observations(TINY["env"], 50)
    with pytest.raises(widerl.ConfigError, match="holds seeds 0, 1: pick one with --seed"):
        widerl.export(seeds_run, "pt2", tmp_path / "p.pt2")
    with pytest.raises(widerl.ConfigError, match="--seed 7"):
        widerl.export(seeds_run, "pt2", tmp_path / "p.pt2", seed=7)
    for seed in (0, 1):
        path = widerl.export(seeds_run, "torchscript", tmp_path / f"s{seed}.pt", seed=seed)
        expected = widerl.load_policy(seeds_run / f"s{seed}").act(obs)
        np.testing.assert_allclose(run_exported(path, obs), expected, atol=TOLERANCE)
    other = widerl.load_policy(seeds_run / "s1").act(obs)
    assert not np.allclose(run_exported(tmp_path / "s0.pt", obs), other)  # seeds differ
    with pytest.raises(widerl.ConfigError, match="one run, of seed 0"):
        widerl.export(seeds_run / "s0", "pt2", tmp_path / "x.pt2", seed=1)
    assert not (tmp_path / "x.pt2").exists() and not (tmp_path / "p.pt2").exists()


def test_the_onnx_file_names_its_input_output_and_units(seeds_run: Path, tmp_path: Path) -> None:
    import onnx
    import onnxruntime as ort

    path = tmp_path / "policy.onnx"
    assert main(["export", str(seeds_run), "--seed", "1", "--out", str(path)]) == 0
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, inp.type, inp.shape[1]) == ("obs", "tensor(float)", 3)
    assert (out.name, out.type, out.shape[1]) == ("action", "tensor(float)", 1)
    assert isinstance(inp.shape[0], str) and inp.shape[0] == out.shape[0]  # a dynamic batch
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert meta["env"] == "Pendulum-v1" and meta["seed"] == "1"
    assert json.loads(meta["action_low"]) == [-2.0] and json.loads(meta["action_high"]) == [2.0]
    assert not list(tmp_path.glob(".*"))  # no temporary file left


def test_the_format_follows_out_and_nothing_is_replaced_unasked(
    seeds_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = seeds_run / "s0"
    path = tmp_path / "p.pt2"
    assert main(["export", str(run), "--out", str(path)]) == 0  # pt2, from the suffix
    assert "p.pt2" in capsys.readouterr().out
    before = path.read_bytes()
    assert main(["export", str(run), "--out", str(path)]) == 2
    assert "--force" in capsys.readouterr().err and path.read_bytes() == before
    assert main(["export", str(run), "--out", str(tmp_path / "p.onnx"), "--format", "pt2"]) == 2
    assert "must end in .pt2" in capsys.readouterr().err
    assert main(["export", str(run), "--out", str(path), "--force"]) == 0


def test_a_failed_write_leaves_nothing(
    seeds_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from widerl import exported

    def half_written(module: object, path: Path, meta: object) -> None:
        path.write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setitem(exported.WRITERS, "pt2", half_written)
    with pytest.raises(KeyboardInterrupt):
        widerl.export(seeds_run / "s0", "pt2", tmp_path / "p.pt2")
    assert list(tmp_path.iterdir()) == []


def test_a_disk_that_fills_while_writing_ends_in_one_line_and_no_file(
    seeds_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno
    import os

    from widerl import exported

    def disk_full(module: object, path: Path, meta: object) -> None:
        path.write_bytes(b"half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setitem(exported.WRITERS, "pt2", disk_full)
    out = tmp_path / "p.pt2"
    with pytest.raises(widerl.ConfigError, match="No space left on device") as e:
        widerl.export(seeds_run / "s0", "pt2", out)
    assert "\n" not in str(e.value) and str(out) in str(e.value)
    assert list(tmp_path.iterdir()) == []


def test_onnx_without_its_packages_is_refused_in_one_line(seeds_run: Path, cli_without) -> None:
    done = cli_without(["onnxscript"], ["export", str(seeds_run / "s0"), "--format", "onnx"])
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        "widerl: error: --format onnx needs the package 'onnxscript', which is not installed: "
        "pip install 'widerl[export]'"
    ]
    assert not (seeds_run / "s0" / "policy.onnx").exists()


def test_train_force_removes_a_stale_export(seeds_run: Path, tmp_path: Path) -> None:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(seeds_run / "s0", run)
    widerl.export(run, "torchscript")
    assert (run / "policy.pt").is_file()
    widerl.train(widerl.resolve({**TINY, "steps": 20, "eval_every": 20}), run, force=True)
    assert not (run / "policy.pt").exists()  # it was the replaced run's policy


def test_the_readme_runs_an_exported_policy_without_widerl(seeds_run: Path) -> None:
    """The README's onnxruntime lines, as written, in a fresh interpreter with widerl and torch
    made unimportable: the deployment the README promises."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Deploy a trained policy", 1)[1]
    block = section.split("```python\n", 1)[1].split("```", 1)[0]
    path = widerl.export(seeds_run / "s0", "onnx", seeds_run / "deploy.onnx")
    obs = env_observations(TINY["env"], 1)[0]
    code = (
        "import sys; sys.modules['torch'] = None; sys.modules['widerl'] = None\n"
        f"obs = {obs.tolist()!r}\n"
        + block.replace("runs/hopper/policy.onnx", str(path))
        + "print(repr(action.tolist()))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    expected = widerl.load_policy(seeds_run / "s0").act(obs)
    np.testing.assert_allclose(eval(done.stdout), expected, atol=TOLERANCE)  # noqa: S307
