"""`widerl experiment`: the paper's figures as run lists, scaling, folder states, the process
pool (failures, limits, Ctrl-C) and one tiny experiment end to end."""

import json
import signal
import subprocess
import sys
import textwrap
import time
from itertools import product
from pathlib import Path

import pytest

from widerl.cli import main
from widerl.config import PRESETS, Config, ConfigError, resolve
from widerl.experiments.plan import (
    DONE,
    NEW,
    RESTART,
    RESUME,
    Job,
    eval_every_for,
    plan,
    run_state,
)
from widerl.experiments.registry import EXPERIMENTS, Experiment, RunSpec
from widerl.experiments.runner import Task, run_tasks


def configs(name: str) -> dict[str, Config]:
    """Every run of an experiment (paper defaults) as its resolved Config, by run name."""
    jobs = plan(EXPERIMENTS[name], Path("/x"), seeds=1)
    return {j.run: resolve({**j.settings, "steps": j.steps}, j.preset) for j in jobs}


def test_every_experiment_has_the_paper_defaults() -> None:
    assert set(EXPERIMENTS) == {
        "depth",
        "width",
        "grid",
        "arch",
        "ofenet",
        "ofenet-grid",
        "ofenet-grid-apex",
        "table1",
        "ablation",
        "apex",
        "activation",
        "scaling",
        "representation",
    }
    for exp in EXPERIMENTS.values():
        assert exp.seeds == 5 and exp.steps == 1_000_000, exp.name  # Sec. 4; Fig. 4
        assert len({r.name for r in exp.runs}) == len(exp.runs), exp.name
        for spec in exp.runs:
            assert spec.preset is None or spec.preset in PRESETS
            assert set(spec.settings) <= set(Config.__dataclass_fields__), spec.name
        if exp.name not in ("table1", "scaling", "representation"):
            assert exp.envs == ("Ant-v5",), exp.name


def test_depth_width_grid_are_plain_sac_mlps_on_ant() -> None:
    depth, width, grid = configs("depth"), configs("width"), configs("grid")
    assert [(c.units, c.layers) for c in depth.values()] == [(256, n) for n in (1, 2, 4, 8, 16)]
    assert [(c.units, c.layers) for c in width.values()] == [
        (u, 2) for u in (128, 256, 512, 1024, 2048)
    ]
    assert {(c.units, c.layers) for c in grid.values()} == set(
        product((128, 256, 512, 1024, 2048), (1, 2, 4, 8, 16))
    )
    assert len(grid) == 25
    for c in [*depth.values(), *width.values(), *grid.values()]:
        assert (c.algo, c.env, c.arch, c.activation) == ("sac", "Ant-v5", "mlp", "relu")
        assert c.ofenet_units == 0 and c.actors == 0 and not c.prioritized
        assert c.critic_loss == "huber"


def test_arch_compares_four_connectivities_at_128_and_2048() -> None:
    runs = configs("arch")
    assert {(c.arch, c.units) for c in runs.values()} == set(
        product(("mlp", "resnet", "d2rl", "densenet"), (128, 2048))
    )
    for c in runs.values():
        assert c.layers == 2 and c.ofenet_units == 0 and c.actors == 0
        # A.2: Swish for ResNet and DenseNet
        assert c.activation == ("swish" if c.arch in ("resnet", "densenet") else "relu")
        assert not c.batchnorm  # "We omit BN for SAC agent" (Sec. 3.3)


def test_ofenet_and_apex_compare_sizes_s_m_l() -> None:
    ofe = configs("ofenet")
    assert len(ofe) == 6
    assert {(c.units, c.ofenet_units) for c in ofe.values()} == {
        (u, o) for u in (256, 1024, 2048) for o in (0, u)
    }
    assert all(c.arch == "densenet" and c.actors == 0 for c in ofe.values())
    apex = configs("apex")
    assert {(c.units, c.ofenet_units, c.actors) for c in apex.values()} == {
        (u, u, a) for u in (256, 1024, 2048) for a in (0, 2)
    }
    for c in apex.values():
        if c.actors:
            assert c.envs_per_actor == 32 and c.prioritized  # Sec. 3.2, A.1
        else:
            assert not c.prioritized


@pytest.mark.parametrize("name,actors", [("ofenet-grid", 0), ("ofenet-grid-apex", 2)])
def test_ofenet_grids(name: str, actors: int) -> None:
    runs = configs(name)
    assert {(c.units, c.ofenet_units) for c in runs.values()} == set(
        product((256, 1024, 2048), (0, 256, 1024, 2048))
    )
    for c in runs.values():
        assert c.arch == "densenet" and c.actors == actors and c.prioritized == bool(actors)
        assert c.activation == "swish" and c.critic_loss == "huber"


def test_table1_five_tasks_two_algorithms_three_methods() -> None:
    exp = EXPERIMENTS["table1"]
    assert exp.envs == ("Hopper-v5", "Walker2d-v5", "HalfCheetah-v5", "Ant-v5", "Humanoid-v5")
    jobs = plan(exp, Path("/x"), seeds=1)
    assert len(jobs) == 30
    by_name = {j.run: j for j in jobs}
    for env, algo in product(exp.envs, ("sac", "td3")):
        ours, ofe, orig = (by_name[f"{env}-{algo}-{m}"] for m in ("ours", "ofenet", "original"))
        assert ofe.preset == "paper-ofenet" and ofe.settings == {"env": env, "algo": algo}
        c = resolve(ofe.settings, ofe.preset)  # Ota et al. (2020): OFENet, original agent
        assert (c.algo, c.arch, c.units, c.actors) == (algo, "mlp", 256, 0)
        assert c.ofenet_units > 0 and not c.prioritized
        c = resolve(orig.settings, orig.preset)
        assert (c.algo, c.arch, c.units, c.ofenet_units, c.actors) == (algo, "mlp", 256, 0, 0)
        c = resolve(ours.settings, ours.preset)
        assert (c.algo, c.env, c.arch, c.units, c.ofenet_units) == (
            algo,
            env,
            "densenet",
            2048,
            2048,
        )
        assert (c.actors, c.envs_per_actor, c.prioritized) == (2, 32, True)
        assert c.batchnorm == (algo == "td3")  # A.1: BN in TD3 (Ours) only
        assert c.warmup == (10_000 if algo == "sac" else 100_000)  # A.4


def test_ablation_removes_one_element_each() -> None:
    runs = {k.removeprefix("Ant-v5-"): c for k, c in configs("ablation").items()}
    full = runs.pop("full")
    assert (full.arch, full.units, full.layers, full.ofenet_units, full.actors) == (
        "densenet",
        2048,
        2,
        2048,
        2,
    )

    def diff(c: Config) -> dict:
        return {k: v for k, v in vars(c).items() if getattr(full, k) != v}

    assert diff(runs["wo-apex"]) == {"actors": 0, "prioritized": False}
    assert diff(runs["wo-ofenet"]) == {"ofenet_units": 0}
    assert diff(runs["wo-larger-nn"]) == {"units": 256, "ofenet_units": 256}
    assert diff(runs["wo-densenet"]) == {"arch": "mlp"}
    sac = runs["sac"]
    assert (sac.arch, sac.units, sac.activation, sac.critic_loss, sac.ofenet_units) == (
        "mlp",
        256,
        "relu",
        "mse",
        0,
    )
    act = configs("activation")
    assert sorted(c.activation for c in act.values()) == ["relu", "swish"]
    a, b = act.values()
    assert {k for k in vars(a) if getattr(a, k) != getattr(b, k)} == {"activation"}
    assert a.actors == 2 and a.units == 2048 and a.ofenet_units == 2048


def test_scaling_widens_the_critic_of_every_family_with_their_presets() -> None:
    runs = configs("scaling")
    assert EXPERIMENTS["scaling"].envs == ("Ant-v5", "Humanoid-v5")
    assert len(runs) == 2 * 5 * 4
    families = {
        # arch: (preset, actor units x layers, critic layers)
        "mlp": ("paper-original", 256, 2),
        "densenet": ("paper-S", 256, 2),
        "bronet": ("bro", 256, 1),
        "simba": ("simba", 128, 1),
        "simbav2": ("simbav2", 128, 1),
    }
    assert {(c.arch, c.units) for c in runs.values()} == set(
        product(families, (256, 512, 1024, 2048))
    )
    jobs = {j.run: j for j in plan(EXPERIMENTS["scaling"], Path("/x"), seeds=1)}
    for name, c in runs.items():
        preset, actor_units, actor_layers = families[c.arch]
        assert jobs[name].preset == preset
        # Only the critic widens; the actor keeps the preset's width (and depth).
        assert (c.actor_units, c.actor_layers or c.layers) == (actor_units, actor_layers)
        assert c.layers == 2 and c.algo == "sac"
        # One data regime for all: one env step per update, 10k random steps, no resets.
        assert (c.utd, c.warmup, c.reset_every) == (1, 10_000, 0)
        assert c.ofenet_units == (c.units if c.arch == "densenet" else 0)
        preset_values = {k: v for k, v in PRESETS[preset].items() if k not in SCALED}
        for key, value in preset_values.items():
            assert getattr(c, key) == value, (name, key)
    humanoid = runs["Humanoid-v5-bronet-512"]
    assert (humanoid.critic_head, humanoid.v_max) == ("hlgauss", 1_200.0)  # bro's support
    assert runs["Ant-v5-densenet-ofenet-2048"].ofenet_target_dim == 27  # no contact forces
    assert runs["Ant-v5-simba-1024"].obs_norm and runs["Ant-v5-simba-1024"].weight_decay == 0.01
    v2 = runs["Ant-v5-simbav2-512"]
    assert v2.reward_scaling and v2.critic_head == "c51" and (v2.v_min, v2.v_max) == (-5.0, 5.0)


# What the scaling experiment sets itself, over its presets' values.
SCALED = {"units", "actor_units", "ofenet_units", "utd", "warmup", "reset_every"}


def test_scaling_dry_run_and_unit_scale_shrink_the_actor_too(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    args = ["experiment", "scaling", "--out", str(out), "--dry-run", "--seeds", "2"]
    args += ["--seeds-per-process", "1"]  # a command per seed (the default stacks them)
    rc = main([*args, "--envs", "Hopper-v5", "--steps", "3000", "--unit-scale", "0.125"])
    assert rc == 0
    lines = capsys.readouterr().out.splitlines()
    assert "20 runs x 2 seed(s) = 40 jobs" in lines[0] and "3000 gradient steps" in lines[0]
    assert len(lines) == 41 and all(line.startswith("[new] widerl train ") for line in lines[1:])
    simba = next(line for line in lines if "Hopper-v5-simba-2048/s1" in line)
    for flags in ("--preset simba", "--units 256", "--actor-units 16", "--utd 1"):
        assert flags in simba
    dense = next(line for line in lines if "Hopper-v5-densenet-ofenet-512/s0" in line)
    assert "--units 64 --ofenet-units 64" in dense and "--actor-units 32" in dense
    assert not out.exists()


def test_representation_changes_only_the_feature_learner() -> None:
    runs = configs("representation")
    assert EXPERIMENTS["representation"].envs == ("HalfCheetah-v5", "Hopper-v5", "Walker2d-v5")
    assert len(runs) == 3 * 4
    from widerl.nets.feature_factory import feature_learner_name

    learners = {feature_learner_name(c) for c in runs.values()}
    assert learners == {"raw", "ofenet", "sale", "mrq"}
    for c in runs.values():
        # One agent: TD3 of its paper on uniform replay, the same data regime.
        assert (c.algo, c.arch, c.units, c.layers, c.activation) == ("td3", "mlp", 256, 2, "relu")
        assert (c.sampler, c.prioritized, c.n_step, c.critic_loss) == ("uniform", False, 1, "mse")
        assert (c.warmup, c.utd) == (10_000, 1)
    ofenet = runs["HalfCheetah-v5-ofenet"]
    assert (ofenet.ofenet_units, ofenet.ofenet_layers) == (240, 6)


def test_every_paper_env_id_exists() -> None:
    from widerl.collect.envs import check_env_id

    for env in {e for exp in EXPERIMENTS.values() for e in exp.envs}:
        check_env_id(env)


def test_scaling_replaces_tasks_steps_and_seeds(tmp_path: Path) -> None:
    exp = EXPERIMENTS["table1"]
    jobs = plan(exp, tmp_path, seeds=2, steps=1_000, envs=("Pendulum-v1",), threads=2)
    assert len(jobs) == 2 * 6
    assert {j.seed for j in jobs} == {0, 1} and [j.seed for j in jobs[:6]] == [0] * 6
    for j in jobs:
        assert j.settings["env"] == "Pendulum-v1" and j.steps == 1_000
        assert j.settings["eval_every"] == 50  # 20 points on a scaled-down curve
        assert j.run_dir == tmp_path / "table1" / j.run / f"s{j.seed}"
        assert j.run.startswith("Pendulum-v1-")
        args = j.train_args(NEW)
        assert args[args.index("--threads") + 1] == "2"
    assert eval_every_for(1_000_000) == 5_000 and eval_every_for(7) == 1
    # Without --steps the paper's budget and evaluation interval stay.
    assert all("eval_every" not in j.settings for j in plan(exp, tmp_path, seeds=1))


def test_unit_scale_shrinks_every_network_for_a_cpu(tmp_path: Path) -> None:
    jobs = plan(EXPERIMENTS["ofenet"], tmp_path, seeds=1, unit_scale=0.25)
    sizes = {
        j.run.split("-", 2)[-1]: (
            resolve(j.settings, j.preset).units,
            j.settings.get("ofenet_units"),
        )
        for j in jobs
    }
    # paper-S/M/L: 256/1024/2048 units for the agent and OFENet, a quarter of each.
    assert sizes["S-ofenet"] == (64, 64) and sizes["L-ofenet"] == (512, 512)
    assert sizes["M-no-ofenet"] == (256, 0)  # OFENet stays off
    arch = {
        j.run: j.settings["units"] for j in plan(EXPERIMENTS["arch"], tmp_path, 1, unit_scale=0.25)
    }
    assert sorted(set(arch.values())) == [32, 512]  # S = 128, L = 2048 in Fig. 5
    # OFENet's width stays a multiple of its layers so it splits evenly (8 layers here).
    odd = plan(EXPERIMENTS["ofenet"], tmp_path, seeds=1, unit_scale=0.1)
    assert all(j.settings.get("ofenet_units", 0) % 8 == 0 for j in odd)
    assert plan(EXPERIMENTS["arch"], tmp_path, seeds=1)[0].settings.get("units") == 128
    with pytest.raises(ConfigError):
        plan(EXPERIMENTS["arch"], tmp_path, seeds=1, unit_scale=0)


def test_new_resume_and_restart_commands(tmp_path: Path) -> None:
    (job,) = plan(
        EXPERIMENTS["activation"],
        tmp_path,
        seeds=1,
        steps=100,
        train_overrides={"warmup": 10},
    )[1:]
    new = job.train_args(NEW)
    assert new[:3] == ["train", "--preset", "paper-L"]
    for flag in ("--actors", "--prioritized", "--no-progress", "--eval-every"):
        assert flag in new
    assert new[new.index("--activation") + 1] == "relu"
    assert new[new.index("--warmup") + 1] == "10"
    assert new[new.index("--out") + 1] == str(job.run_dir) and "--force" not in new
    assert "--force" in job.train_args(RESTART)
    resume = job.train_args(RESUME)
    assert resume[:3] == ["train", "--resume", str(job.run_dir)]
    # The stored config decides: no preset, no seed/out; the run's flags go along to be checked.
    for flag in ("--preset", "--seed", "--out", "--eval-every"):
        assert flag not in resume
    assert resume[resume.index("--steps") + 1] == "100" and "--activation" in resume
    assert job.argv(NEW)[:3] == [sys.executable, "-m", "widerl.cli"]
    assert job.display(NEW).startswith("widerl train --preset paper-L")


def _metrics(run: Path, steps: list[int]) -> None:
    run.mkdir(parents=True, exist_ok=True)
    lines = ["grad_step,env_step,eval_return_mean", *(f"{s},{s},1.0" for s in steps)]
    (run / "metrics.csv").write_text("\n".join(lines) + "\n")


def test_run_state_decides_skip_resume_restart(tmp_path: Path) -> None:
    run = tmp_path / "r"
    assert run_state(run, 100) == NEW
    run.mkdir()
    (run / "train.log").write_text("a log alone is not a run\n")
    assert run_state(run, 100) == NEW
    (run / "config.json").write_text("{}")
    assert run_state(run, 100) == RESTART  # crashed before its first checkpoint
    (run / "checkpoint.pt").write_bytes(b"x")
    assert run_state(run, 100) == RESUME
    _metrics(run, [0, 50])
    assert run_state(run, 100) == RESUME
    _metrics(run, [0, 50, 100])
    assert run_state(run, 100) == DONE
    assert run_state(run, 80) == DONE
    assert run_state(run, 200) == RESUME  # a larger --steps continues it
    (run / "metrics.csv").write_text("grad_step\nnot-a-number\n")
    assert run_state(run, 100) == RESUME


def test_file_names_match_the_run_folder() -> None:
    # The names are defined once (widerl.record.names), for planning and training alike.
    from widerl.record.names import LOG, RUN_FILES

    assert LOG not in RUN_FILES  # a log alone must not make `train` refuse the folder


def test_by_default_a_runs_seeds_train_stacked_in_one_process(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert main(["experiment", "depth", "--out", str(out), "--dry-run", "--seeds", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "5 runs x 2 seed(s) = 10 jobs in 5 processes" in lines[0]
    assert len(lines) == 6 and all(" --seeds 0,1 " in line for line in lines[1:])
    assert f"--out {out}/depth/Ant-v5-mlp-256x16 " in lines[5]


def test_dry_run_prints_every_command_and_runs_nothing(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    apart = ["--seeds-per-process", "1"]  # a command per seed (the default stacks them)
    rc = main(["experiment", "depth", "--out", str(out), "--dry-run", "--seeds", "2", *apart])
    assert rc == 0
    lines = capsys.readouterr().out.splitlines()
    assert "5 runs x 2 seed(s) = 10 jobs" in lines[0] and "1000000 gradient steps" in lines[0]
    assert len(lines) == 11
    assert all(line.startswith("[new] widerl train ") for line in lines[1:])
    assert "--layers 16" in lines[5] and f"{out}/depth/Ant-v5-mlp-256x16/s0" in lines[5]
    assert "--seed 1" in lines[10]
    assert not out.exists()
    _metrics(out / "depth" / "Ant-v5-mlp-256x1" / "s0", [0, 1_000_000])
    main(["experiment", "depth", "--out", str(out), "--dry-run", "--seeds", "1", *apart])
    assert capsys.readouterr().out.splitlines()[1].startswith("[done] ")


@pytest.mark.parametrize(
    "args,words",
    [
        (["nope"], "unknown experiment 'nope'"),
        (["depth", "--envs", "Antt-v5"], "unknown env id 'Antt-v5'"),
        (["depth", "--envs", "Ant-v5,"], "empty entry"),
        (["depth", "--envs", "Ant-v5,Ant-v5"], "more than once"),
        (["depth", "--steps", "0"], "--steps must be a positive integer"),
        (["depth", "--seeds", "-1"], "--seeds must be a positive integer"),
        (["depth", "--jobs", "0"], "--jobs must be a positive integer"),
        (["depth", "--threads", "0"], "--threads must be a positive integer"),
        (["depth", "--train-args", "--seed 3"], "may not set --seed"),
        (["depth", "--train-args", "--preset paper-L"], "may not use --preset"),
        (["depth", "--train-args", "--wat 1"], "--wat"),
        (["depth", "--train-args", "--ofenet-units 100"], "must split evenly"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, capsys, args, words) -> None:
    assert main(["experiment", *args, "--out", str(tmp_path / "o"), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("widerl: error: ") and words in err and "\n" not in err


def _py(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


def test_pool_reports_a_failure_runs_the_rest_and_respects_jobs(tmp_path: Path) -> None:
    # Each child records how many children are running (marker files) while it runs.
    child = """
        import os, sys, time
        d, me = sys.argv[1], sys.argv[2]
        open(os.path.join(d, me + '.running'), 'w').close()
        n = len([f for f in os.listdir(d) if f.endswith('.running')])
        open(os.path.join(d, me + '.seen'), 'w').write(str(n))
        print('hello from', me)
        time.sleep(0.3)
        os.remove(os.path.join(d, me + '.running'))
        sys.exit(3 if me == 'b' else 0)
    """
    tasks = [
        Task(name, [*_py(child), str(tmp_path), name], tmp_path / name / "train.log")
        for name in "abcde"
    ]
    seen = []
    outcome = run_tasks(tasks, 2, lambda t, kind, status, s: seen.append((t.label, kind)))
    assert sorted(outcome.finished) == ["a", "c", "d", "e"]
    assert outcome.failed == [("b", 3, tmp_path / "b" / "train.log")]
    assert not outcome.interrupted and outcome.not_started == 0
    assert sorted(seen) == [("a", "done"), ("b", "failed"), *((x, "done") for x in "cde")]
    assert max(int((tmp_path / f"{x}.seen").read_text()) for x in "abcde") <= 2
    log = (tmp_path / "b" / "train.log").read_text()
    assert log.startswith("=== ") and "hello from b" in log


def test_ctrl_c_stops_running_children_and_starts_no_more(tmp_path: Path) -> None:
    # Children that, like `widerl train`, save on SIGINT and exit 130.
    child = """
        import os, signal, sys, time
        d, me = sys.argv[1], sys.argv[2]
        def stop(*_):
            open(os.path.join(d, me + '.saved'), 'w').close()
            sys.exit(130)
        signal.signal(signal.SIGINT, stop)
        open(os.path.join(d, me + '.started'), 'w').close()
        time.sleep(60)
    """
    driver = f"""
        import json, sys
        from pathlib import Path
        from widerl.experiments.runner import Task, run_tasks
        d = Path({str(tmp_path)!r})
        child = {_py(child)!r}
        tasks = [Task(n, [*child, str(d), n], d / n / 'train.log') for n in 'abc']
        o = run_tasks(tasks, 2)
        print(json.dumps([o.finished, o.stopped, o.failed, o.not_started, o.interrupted]))
    """
    proc = subprocess.Popen(_py(driver), stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not all((tmp_path / f"{n}.started").exists() for n in "ab"):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()  # only if the test failed while it still runs
    finished, stopped, failed, not_started, interrupted = json.loads(out)
    assert finished == [] and sorted(stopped) == ["a", "b"] and failed == []
    assert not_started == 1 and interrupted
    assert (tmp_path / "a.saved").exists() and (tmp_path / "b.saved").exists()
    assert not (tmp_path / "c.started").exists()


TINY_TRAIN = "--warmup 50 --eval-episodes 1 --batch-size 32 --buffer-size 5000"


@pytest.mark.slow
def test_tiny_experiment_runs_skips_and_extends(tmp_path: Path, capsys, monkeypatch) -> None:
    tiny = Experiment(
        "tiny",
        "test",
        "two tiny SAC nets",
        ("Pendulum-v1",),
        (
            RunSpec("mlp", {"units": 16, "layers": 1}),
            RunSpec("densenet", {"arch": "densenet", "activation": "swish", "units": 16}),
        ),
        steps=10_000,
        seeds=2,
    )
    monkeypatch.setitem(EXPERIMENTS, "tiny", tiny)
    out = tmp_path / "exp"
    args = ["experiment", "tiny", "--out", str(out), "--steps", "30", "--jobs", "2"]
    args += ["--seeds-per-process", "1"]  # a process per seed (the default stacks them)
    assert main([*args, "--train-args", TINY_TRAIN]) == 0
    printed = capsys.readouterr().out
    assert "2 runs x 2 seed(s) = 4 jobs" in printed
    assert "4 finished, 0 skipped" in printed and "widerl report" in printed
    runs = sorted(out.glob("tiny/*/s*"))
    assert [p.relative_to(out).as_posix() for p in runs] == [
        "tiny/Pendulum-v1-densenet/s0",
        "tiny/Pendulum-v1-densenet/s1",
        "tiny/Pendulum-v1-mlp/s0",
        "tiny/Pendulum-v1-mlp/s1",
    ]
    for run in runs:
        cfg = json.loads((run / "config.json").read_text())
        assert cfg["env"] == "Pendulum-v1" and cfg["steps"] == 30 and cfg["eval_every"] == 1
        assert cfg["seed"] == int(run.name[1:]) and cfg["warmup"] == 50
        assert run_state(run, 30) == DONE
    logs = {run: (run / "train.log").read_text() for run in runs}

    # A rerun skips everything and starts nothing.
    assert main([*args, "--train-args", TINY_TRAIN]) == 0
    assert "0 finished, 4 skipped" in capsys.readouterr().out
    assert all((run / "train.log").read_text() == logs[run] for run in runs)

    # A larger budget continues each run from its checkpoint.
    more = ["experiment", "tiny", "--out", str(out), "--seeds", "1", "--jobs", "2"]
    more += ["--seeds-per-process", "1"]
    assert main([*more, "--steps", "36", "--train-args", TINY_TRAIN]) == 0
    assert "2 finished, 0 skipped" in capsys.readouterr().out
    for run in runs:
        resumed = run.name == "s0"
        assert ("--resume" in (run / "train.log").read_text()) == resumed
        assert run_state(run, 36) == (DONE if resumed else RESUME)

    # Resuming with settings that differ from the stored run fails, and says where to look.
    assert main([*more, "--steps", "40", "--train-args", "--warmup 60"]) == 1
    printed = capsys.readouterr().out
    assert "0 finished" in printed and "2 failed" in printed
    assert "failed: Pendulum-v1-mlp s0 (exit 2); log: " in printed


def test_jobs_do_not_share_settings() -> None:
    # Settings are per job: changing one job's dict must not leak into another's.
    a, b = plan(EXPERIMENTS["depth"], Path("/x"), seeds=2)[:2]
    assert isinstance(a, Job) and a.settings is not b.settings


def test_runs_keeps_the_runs_its_patterns_name(tmp_path: Path, capsys) -> None:
    exp = EXPERIMENTS["scaling"]
    jobs = plan(exp, tmp_path, seeds=2, envs=("Hopper-v5",), runs=("*-256", "simba-1024"))
    names = ["mlp-256", "densenet-ofenet-256", "bronet-256", "simba-256", "simba-1024",
             "simbav2-256"]  # fmt: skip
    assert [j.run for j in jobs] == [f"Hopper-v5-{n}" for n in names] * 2
    assert [j.seed for j in jobs] == [0] * 6 + [1] * 6
    for bad, why in (("mlp-256,*-4096", "'*-4096' matches no run of scaling"),
                     ("mlp-256,", "has an empty entry")):  # fmt: skip
        rc = main(["experiment", "scaling", "--out", str(tmp_path), "--dry-run", "--runs", bad])
        assert rc == 2
        err = capsys.readouterr().err
        assert f"--runs {why}" in err or why in err, err
        assert "Traceback" not in err and not (tmp_path / "scaling").exists()


@pytest.mark.slow
def test_tiny_scaling_runs_and_reports_width_by_body(tmp_path: Path, capsys) -> None:
    """`widerl experiment scaling` for real at a toy size (Pendulum, the MLP and SimBa at 2 of
    the 4 widths scaled to 16 and 32 units, 30 updates, 1 seed; every family's flags are
    test_scaling_dry_run's), then `widerl report`: the runs finish with their preset's body,
    and the page draws units x arch as a heatmap and names each configuration by its body and
    width, listing the preset values the names leave out."""
    out = tmp_path / "exp"
    args = ["experiment", "scaling", "--out", str(out), "--envs", "Pendulum-v1", "--seeds", "1"]
    args += ["--steps", "30", "--unit-scale", "0.0625", "--jobs", "2"]
    args += ["--runs", "mlp-256,mlp-512,simba-256,simba-512"]
    assert main([*args, "--train-args", f"{TINY_TRAIN} --eval-every 15"]) == 0
    printed = capsys.readouterr().out
    assert "4 finished, 0 skipped (done before), 0 failed" in printed, printed
    archs = {}
    for run in sorted(out.glob("scaling/*/s0")):
        cfg = json.loads((run / "config.json").read_text())
        archs[run.parent.name] = (cfg["arch"], cfg["units"], cfg["obs_norm"])
        assert run_state(run, 30) == DONE
    assert archs == {
        "Pendulum-v1-mlp-256": ("mlp", 16, False),
        "Pendulum-v1-mlp-512": ("mlp", 32, False),
        "Pendulum-v1-simba-256": ("simba", 16, True),
        "Pendulum-v1-simba-512": ("simba", 32, True),
    }
    report = tmp_path / "report"
    assert main(["report", str(out / "scaling"), "--out", str(report)]) == 0
    page = (report / "report.md").read_text()
    assert (report / "heatmap_Pendulum-v1_0.png").is_file()
    assert (report / "curves_Pendulum-v1.png").is_file()
    for arch in ("mlp", "simba"):
        for units in (16, 32):
            assert f"| arch={arch} units={units} |" in page, (arch, units)
    # What the names leave out (each family's preset values), e.g. SimBa's obs-norm.
    assert "follow from their names" in page and "obs_norm" in page
