"""widerl.run.allocator: a CPU learning step keeps freed memory, so repeated temporaries stop
faulting in fresh pages; a user's own malloc settings are left alone. Each case runs in a
fresh interpreter: malloc's thresholds are per process."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only"
)

# Twenty steady-state steps of a DenseNet 256 x 2 SAC update (batch 256), their page faults
# counted; "plain" marks the thresholds as done without setting them, as elsewhere.
STEPS = """
import resource, sys, torch
import widerl.run.allocator as allocator
if sys.argv[1:] == ["plain"]:
    allocator._done = False
from widerl.agents import make_agent
from widerl.bench.update import random_replay
from widerl.config import resolve
from widerl.run.step import LearnStep
torch.set_num_threads(1)
cfg = resolve({"env": "Hopper-v5", "arch": "densenet", "units": 256, "layers": 2})
agent = make_agent(cfg, 11, 3, torch.device("cpu"))
step = LearnStep(random_replay(11, 3, 1000, seed=0), agent.features, agent, 256)
for i in range(5):
    step(i, 100)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for i in range(20):
    step(i, 100)
print(allocator.keep_freed_memory(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def run(code: str, *args: str, env: dict[str, str] | None = None) -> list[str]:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_"))},
           "OMP_NUM_THREADS": "1", **(env or {})}  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_a_cpu_learning_step_keeps_freed_memory_and_stops_faulting_in_pages() -> None:
    kept, faults = run(STEPS)
    plain_kept, plain = run(STEPS, "plain")
    assert (kept, plain_kept) == ("True", "False")
    # Measured: 2,700-13,900 faults in 20 plain steps, 60-330 kept (glibc's thresholds move
    # with the process's history, so the counts vary from process to process).
    assert int(plain) > 1_000
    assert int(faults) < int(plain) / 4


def test_the_users_own_malloc_settings_are_left_alone() -> None:
    kept, _ = run(STEPS, env={"MALLOC_TRIM_THRESHOLD_": "131072"})
    assert kept == "False"
