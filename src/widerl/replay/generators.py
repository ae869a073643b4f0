"""Random generators' states in checkpoints, readable on any device.

A CPU generator (Mersenne Twister) and a CUDA generator (Philox: seed and offset) keep states
of different formats and sizes (5,056 against 16 bytes), so a state saved on one device cannot
be set on a generator of the other. A checkpoint therefore stores each state as a CPU tensor
with the device type it came from, and `restore_generator` sets it where the types agree and
otherwise seeds the generator deterministically from the saved bytes: a run trained on CUDA
evaluates, loads and resumes on the CPU (and the other way), and two such resumes draw the
same numbers. The two devices' streams never drew the same numbers to begin with (different
algorithms), so nothing a same-device resume keeps exact is lost.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

# The sizes of `Generator.get_state()` by device type: what a state saved before the device
# was stored beside it came from (checkpoints of widerl 0.2 before this module).
_STATE_BYTES = {5_056: "cpu", 16: "cuda"}


def device_generator(device: torch.device | str, seed: int) -> torch.Generator:
    """A generator on `device` seeded with `seed`: what the agents' noise and the replay's
    draws come from. Every generator that lives on the run's device is made here, so the
    suite's fake-CUDA check (tests/fake_cuda.py) can stand in for CUDA's on a CPU build."""
    return torch.Generator(device=device).manual_seed(int(seed))


def generator_state(g: torch.Generator) -> dict[str, Any]:
    """`g`'s state as a CPU tensor, with the device type that can take it back."""
    return {"device": g.device.type, "state": g.get_state().cpu()}


def restore_generator(g: torch.Generator, saved: dict[str, Any] | torch.Tensor) -> None:
    """Set `g` to a `generator_state` (or a bare state tensor of an older checkpoint, whose
    device type its size tells): as saved where the device types agree, else seeded from the
    saved bytes (see the module's docstring)."""
    if isinstance(saved, dict):
        state, kind = saved["state"].cpu(), str(saved["device"])
    else:
        state = saved.cpu()
        kind = _STATE_BYTES.get(state.numel(), "unknown")
    if kind == g.device.type:
        g.set_state(state)
    else:
        g.manual_seed(seed_from_state(state))


def seed_from_state(state: torch.Tensor) -> int:
    """A 63-bit seed that depends on every byte of `state` (numpy's SeedSequence hash)."""
    raw = state.to(torch.uint8).numpy().tobytes()
    words = np.frombuffer(raw + b"\0" * (-len(raw) % 4), dtype=np.uint32)
    return int(np.random.SeedSequence(words.tolist()).generate_state(1, np.uint64)[0] >> 1)
