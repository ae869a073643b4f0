"""--sampler lap (Loss-Adjusted Prioritization, Fujimoto et al. 2020): priorities
max(|delta|, 1)^alpha against hand-computed values, sampling in proportion to them without
importance weights, and the selection rules of --sampler and --prioritized."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import widerl
from widerl.config import sampler_of
from widerl.replay.buffer import ReplayBuffer

ALPHA = 0.4  # LAP's and TD7's


def filled(sampler: str, n: int = 4) -> ReplayBuffer:
    buf = ReplayBuffer(1, 1, 64, sampler=sampler, alpha=ALPHA, seed=0)
    x = np.arange(n, dtype=np.float32)[:, None]
    buf.add(x, np.zeros((n, 1), np.float32), np.zeros(n, np.float32), x + 100, np.zeros(n))
    return buf


def test_lap_priorities_are_max_abs_td_1_to_the_alpha() -> None:
    buf = filled("lap")
    buf.update_priorities(torch.arange(4), torch.tensor([0.5, -1.0, 3.0, -10.0]))
    leaves = buf.sampler.tree.leaves[:4]
    expected = torch.tensor([1.0, 1.0, 3.0**ALPHA, 10.0**ALPHA])  # |delta| below 1 counts as 1
    torch.testing.assert_close(leaves, expected)
    # New transitions enter at the running max priority (10), as in prioritized replay.
    buf.add(np.full((1, 1), 7, np.float32), np.zeros((1, 1), np.float32), np.zeros(1, np.float32),
            np.full((1, 1), 8, np.float32), np.zeros(1))  # fmt: skip
    assert float(buf.sampler.tree.leaves[4]) == pytest.approx(10.0**ALPHA)


def test_lap_draws_in_proportion_to_its_priorities_without_weights() -> None:
    buf = filled("lap")
    buf.update_priorities(torch.arange(4), torch.tensor([0.0, 2.0, 4.0, 8.0]))
    batch = buf.sample(20_000)
    assert batch.weight is None  # LAP corrects through the Huber loss, not weights
    freq = torch.bincount(batch.idx, minlength=4).double() / 20_000
    p = torch.tensor([1.0, 2.0**ALPHA, 4.0**ALPHA, 8.0**ALPHA], dtype=torch.float64)
    torch.testing.assert_close(freq, p / p.sum(), atol=0.015, rtol=0)
    per = filled("prioritized")
    assert per.sample(8).weight is not None  # prioritized replay keeps its weights


def test_a_replay_state_loads_only_into_the_same_sampler() -> None:
    state = filled("lap").state_dict()
    with pytest.raises(ValueError, match="sampler mismatch: state has lap"):
        filled("prioritized").load_state_dict(state)
    filled("lap").load_state_dict(state)


def test_prioritized_is_the_short_form_of_sampler_prioritized() -> None:
    assert sampler_of(widerl.resolve({"prioritized": True})) == "prioritized"
    assert sampler_of(widerl.resolve({"sampler": "prioritized"})) == "prioritized"
    assert sampler_of(widerl.resolve({"sampler": "lap"})) == "lap"
    assert sampler_of(widerl.resolve({})) == "uniform"
    with pytest.raises(widerl.ConfigError, match="name two samplers"):
        widerl.resolve({"prioritized": True, "sampler": "lap"})
