"""The CPU's floating-point mode for training: denormal floats flushed to zero.

Intermediate values of an update fall below float32's smallest normal number (1.2e-38):
the gradients of saturated SiLU and tanh units, for example. x86 computes with such
denormals many times slower than with normal numbers, and they carry nothing an update
needs. Flushing them to zero (the FTZ/DAZ modes, as TensorFlow's CPU threads run by
default) took a compiled paper-S learning step on Hopper-v5 from 41 to 31 ms in a real run
(benchmarks/README.md).

torch sets the mode for the calling thread only; OpenMP's worker threads inherit it when
they are created after the call. So the command line sets it before any torch work, and a
run set up through the Python API sets it for its own thread when it is built.
"""

from __future__ import annotations

import torch


def flush_denormals() -> bool:
    """Flush denormal floats to zero in this thread (and in threads started after it);
    False where the CPU has no such mode."""
    return bool(torch.set_flush_denormal(True))
