"""`widerl experiment --ray-address`: the options, and the Ray task runner's outcome and Ctrl-C
semantics (the same as local --jobs), on a private local Ray instance. The two-node run is in
test_cluster.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import raytools

from widerl.cli import main

ray_tmp = raytools.ray_tmp


def _py(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


@pytest.mark.parametrize(
    "args,words",
    [
        (["--storage", "S"], "--storage needs --ray-address"),
        (["--cpus-per-run", "2"], "--cpus-per-run needs --ray-address"),
        (["--gpus-per-run", "1"], "--gpus-per-run needs --ray-address"),
        (["--ray-address", "127.0.0.1:1"], "needs --storage DIR"),
        (["--ray-address", "127.0.0.1:1", "--storage", "S", "--out", "O"], "--out and --storage"),
        (["--ray-address", "a:1", "--storage", "S", "--cpus-per-run", "0"], "must be positive"),
    ],
)
def test_cluster_options_are_checked_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture, args: list[str], words: str
) -> None:
    os.chdir(tmp_path)
    assert main(["experiment", "depth", "--seeds", "1", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("widerl: error: ") and words in err and "\n" not in err
    assert not (tmp_path / "S").exists()


# Children that, like `widerl train`, save on SIGINT and exit 130; 'b' fails with status 3.
CHILD = """
    import os, signal, sys, time
    d, me, wait = sys.argv[1], sys.argv[2], float(sys.argv[3])
    def stop(*_):
        open(os.path.join(d, me + '.saved'), 'w').close()
        sys.exit(130)
    signal.signal(signal.SIGINT, stop)
    open(os.path.join(d, me + '.started'), 'w').close()
    print('hello from', me, flush=True)
    time.sleep(wait)
    sys.exit(3 if me == 'b' else 0)
"""

DRIVER = """
    import json, sys
    from pathlib import Path
    from widerl.experiments.ray_runner import run_tasks_on_ray
    from widerl.experiments.runner import Task
    from widerl.collect.rayinit import init_ray, shutdown_ray
    d, wait, names, jobs = Path(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
    child = json.loads(sys.argv[5])
    init_ray('', 2)
    try:
        tasks = [Task(n, [*child, str(d), n, wait], d / n / 'train.log') for n in names]
        o = run_tasks_on_ray(tasks, jobs)
    finally:
        shutdown_ray()
    failed = [(label, status, str(log)) for label, status, log in o.failed]
    print(json.dumps([o.finished, o.stopped, failed, o.not_started, o.interrupted]))
"""


def _driver(tmp: Path, wait: float, names: str, jobs: int) -> subprocess.Popen:
    cmd = [*_py(DRIVER), str(tmp), str(wait), names, str(jobs), json.dumps(_py(CHILD))]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_ray_tasks_report_finished_and_failed_runs(tmp_path: Path, ray_tmp: str) -> None:
    proc = _driver(tmp_path, 0.2, "abc", 2)
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err
    finished, stopped, failed, not_started, interrupted = json.loads(out.splitlines()[-1])
    assert sorted(finished) == ["a", "c"] and stopped == [] and not_started == 0
    assert failed == [["b", 3, str(tmp_path / "b" / "train.log")]] and not interrupted
    log = (tmp_path / "b" / "train.log").read_text()
    assert log.startswith("=== ") and " on node " in log and "hello from b" in log


@pytest.mark.slow
def test_ctrl_c_stops_running_ray_tasks_cleanly_and_starts_no_more(
    tmp_path: Path, ray_tmp: str
) -> None:
    """One Ctrl-C: running runs get SIGINT (they save), the one not started never starts."""
    proc = _driver(tmp_path, 120, "acd", 2)
    try:
        deadline = time.monotonic() + 180
        while not all((tmp_path / f"{n}.started").exists() for n in "ac"):
            assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()  # only if the test failed while it still runs
    assert proc.returncode == 0, err
    finished, stopped, failed, not_started, interrupted = json.loads(out.splitlines()[-1])
    assert finished == [] and sorted(stopped) == ["a", "c"] and failed == []
    assert not_started == 1 and interrupted
    assert (tmp_path / "a.saved").exists() and (tmp_path / "c.saved").exists()
    assert not (tmp_path / "d.started").exists()
