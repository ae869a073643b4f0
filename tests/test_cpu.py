"""Denormal floats are flushed to zero in every thread of a run (widerl/cpu.py), in fresh
processes: this test process set the mode itself (conftest.py)."""

from __future__ import annotations

import subprocess
import sys

# Counts the products of denormals that stay non-zero over two threads: 0 when every
# thread flushes them.
COUNT = """
torch.set_num_threads(2)
x = torch.full((1_000_000,), 1e-39)
print(int((x * 1.0).ne(0).sum()))
"""


def _run(code: str) -> int:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return int(out.stdout.split()[-1])


def test_denormals_are_kept_without_widerl() -> None:
    """The control: a plain torch process computes with denormals (so the tests below can
    fail)."""
    assert _run("import torch\n" + COUNT) > 0


def test_the_command_line_flushes_denormals_in_every_thread() -> None:
    code = (
        "import torch\nfrom widerl.cli import main\n"
        "main(['summary', '--obs-dim', '3', '--act-dim', '1'])\n" + COUNT
    )
    assert _run(code) == 0


def test_a_run_built_through_the_api_flushes_denormals_in_its_thread() -> None:
    code = (
        "import torch\ntorch.set_num_threads(1)\n"
        "from widerl.build import build\nfrom widerl.config import resolve\n"
        "build(resolve({'env': 'Pendulum-v1', 'units': 8, 'layers': 1, 'buffer_size': 1000}))\n"
        "x = torch.full((1000,), 1e-39)\nprint(int((x * 1.0).ne(0).sum()))\n"
    )
    assert _run(code) == 0
