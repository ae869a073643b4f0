"""A real two-node Ray cluster: the head here, the second node in a network namespace
of its own (netns_cluster.TwoNodes), token authentication on, traffic on a veth pair of
10.211.x addresses. Skipped, with the reason, where namespaces cannot be made.

One cluster serves the module (starting one takes ~15 s on a loaded 2-core machine); it is
torn down by name and PID whatever happens, and the module checks that nothing of it is left.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from netns_cluster import TwoNodes, unavailable
from raytools import TINY_FLAGS, ray_pids, rows, train_cmd

from widerl.experiments.plan import DONE, run_state

pytestmark = pytest.mark.slow
WHY_NOT = unavailable()
STOPPED = (128 + signal.SIGTERM,)  # SIGTERM: 128 + the signal, as a shell reports it


@pytest.fixture(scope="module")
def cluster() -> Iterator[TwoNodes]:
    if WHY_NOT:
        pytest.skip(f"two-node cluster: {WHY_NOT}")
    c = TwoNodes(head_cpus=1, node_cpus=2)
    try:
        yield c.start()
    finally:
        c.close()
        left = c.leftovers()
        assert not left, f"left behind by the cluster test: {left}"


def wait_for(
    what: str,
    check: Callable[[], object],
    proc: subprocess.Popen | None = None,
    timeout: float = 120,
) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert proc is None or proc.poll() is None, f"ended while waiting for {what}"
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.2)


def collectors(c: TwoNodes) -> tuple[int, int]:
    """This cluster's collector processes on (the head, the second node)."""
    head = node = 0
    ours = ray_pids(c.head_tmp)  # other sessions may run collectors on this machine too
    for d in Path("/proc").iterdir():
        try:
            if d.name.isdigit() and (d / "comm").read_text().startswith("ray::CollectorW"):
                if c.in_node(int(d.name)):
                    node += 1
                elif int(d.name) in ours:
                    head += 1
        except OSError:
            continue
    return head, node


def lines(path: Path, words: str) -> list[str]:
    return [x for x in path.read_text().splitlines() if words in x] if path.exists() else []


def test_collectors_on_both_nodes_survive_losing_one(tmp_path: Path, cluster: TwoNodes) -> None:
    c = cluster
    out, err = tmp_path / "run", tmp_path / "run.err"
    flags = [*TINY_FLAGS, "--actors=3", "--envs-per-actor=2", f"--ray-address={c.address}"]
    cmd = train_cmd(out, *flags, "--steps=1000000", "--eval-every=100")
    with err.open("w") as e:
        learner = subprocess.Popen(
            cmd, env=c.env(), stdout=subprocess.DEVNULL, stderr=e, start_new_session=True
        )
    try:
        # Placed on both nodes: 1 CPU on the head, 2 on the second node.
        wait_for("rows", lambda: len(rows(out)) >= 2, learner)
        wait_for("collectors on both nodes", lambda: collectors(c) == (1, 2), learner)

        c.kill_node()
        wait_for("the waiting report", lambda: len(lines(err, "waits for resources")) == 2, learner)
        failed = [x for x in lines(err, "failed") if x.startswith("collector ")]
        assert len(failed) == 2 and all("starting a replacement" in x for x in failed), failed
        # Learning goes on from the head's collector, and metrics.csv counts the waiting two.
        at = int(rows(out)[-1]["grad_step"])
        wait_for(
            "rows with 2 waiting",
            lambda: [
                r
                for r in rows(out)
                if int(r["grad_step"]) > at + 200 and r["collectors_waiting"] == "2"
            ],
            learner,
        )
        before = int(rows(out)[-1]["env_step"])
        wait_for("new env steps", lambda: int(rows(out)[-1]["env_step"]) > before, learner)

        # Another run cannot place its only collector: it says so once, waits --collector-wait
        # seconds, saves and stops in one line with the --resume command (exit 1).
        starved = tmp_path / "starved"
        cmd2 = train_cmd(
            starved,
            *TINY_FLAGS,
            "--actors=1",
            "--envs-per-actor=2",
            f"--ray-address={c.address}",
            "--steps=100",
            "--collector-wait=5",
        )
        done = subprocess.run(cmd2, env=c.env(), capture_output=True, text=True, timeout=180)
        assert done.returncode == 1, done.stderr
        assert done.stderr.count("collector 0 waits for resources") == 1, done.stderr
        last = [x for x in done.stderr.splitlines() if x.startswith("widerl: error:")]
        assert len(last) == 1 and "no collector ran for 5 s (--collector-wait)" in last[0]
        assert f"widerl train --resume {starved}" in last[0] and "Traceback" not in done.stderr
        assert torch.load(starved / "checkpoint.pt", weights_only=True)["grad_step"] == 0

        # The node comes back: the two waiting collectors start there.
        c.start_node()
        wait_for("the start report", lambda: len(lines(err, "started after waiting")) == 2, learner)
        wait_for("collectors on both nodes again", lambda: collectors(c) == (1, 2), learner)
        wait_for(
            "rows with none waiting", lambda: rows(out)[-1]["collectors_waiting"] == "0", learner
        )

        # Lost again; SIGTERM while two collectors wait stops the run cleanly.
        c.kill_node()
        wait_for(
            "the second waiting report",
            lambda: len(lines(err, "waits for resources")) == 4,
            learner,
        )
        learner.send_signal(signal.SIGTERM)
        learner.wait(timeout=120)
        text = err.read_text()
        assert learner.returncode in STOPPED, text
        stop = [x for x in text.splitlines() if x.startswith("stopped at")]
        assert len(stop) == 1 and "Traceback" not in text, text
        assert torch.load(out / "checkpoint.pt", weights_only=True)["grad_step"] == int(
            stop[0].split()[2]
        )
    finally:
        learner.kill()
        learner.wait()


def test_experiment_runs_as_ray_tasks_on_both_nodes(
    tmp_path: Path, cluster: TwoNodes, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = cluster
    c.start_node()  # the previous test lost it
    # Its collectors hold the head's one CPU until they have exited (slower on a loaded
    # machine); until then SPREAD can only place both runs on the second node.
    wait_for("the previous test's collectors to exit", lambda: collectors(c) == (0, 0))
    storage = tmp_path / "shared"
    args = ["experiment", "activation", "--envs", "Pendulum-v1", "--seeds", "1"]
    args += ["--steps", "30", "--unit-scale", "0.0625", "--ray-address", c.address]
    args += ["--storage", str(storage), "--train-args"]
    # Fig. 13's runs without their Ape-X collectors: one CPU each, so one fits either node.
    tiny = "--warmup 50 --eval-episodes 1 --batch-size 32 --buffer-size 5000 --ofenet-pretrain 10"
    args.append(f"{tiny} --actors 0")
    cli = [*train_cmd(tmp_path)[:3], *args]
    done = subprocess.run(cli, env=c.env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 finished, 0 skipped" in done.stdout, done.stdout
    runs = sorted(storage.glob("activation/*/s0"))
    assert len(runs) == 2 and all(run_state(r, 30) == DONE for r in runs)
    # Spread over the cluster: each run's log names the node it ran on.
    nodes = {lines(r / "train.log", " on node ")[0].split(" on node ")[1].split()[0] for r in runs}
    assert nodes == {c.head_ip, c.node_ip}, nodes
    assert all(json.loads((r / "config.json").read_text())["steps"] == 30 for r in runs)

    # A rerun skips both; a larger budget resumes both from their checkpoints.
    again = subprocess.run(cli, env=c.env(), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "0 finished, 2 skipped" in again.stdout, again.stdout
    more = [x if x != "30" else "40" for x in cli]
    done = subprocess.run(more, env=c.env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "2 finished, 0 skipped" in done.stdout, done.stdout
    assert all("--resume" in lines(r / "train.log", "===")[-1] for r in runs)
    assert all(run_state(r, 40) == DONE for r in runs)
    assert os.path.isdir(storage / "activation")
