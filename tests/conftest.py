import os

import pytest
import torch

# Keep tests reproducible and light on a 2-core machine.
torch.set_num_threads(1)
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def tiny_overrides() -> dict:
    return {"units": 16, "layers": 2, "batch_size": 32, "buffer_size": 5_000}
