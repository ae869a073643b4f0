"""--n-step K: the replay's n-step returns, against a hand-computed case with a termination
and a time-limit truncation inside the window, two envs interleaved, across chunks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from widerl.agents import td
from widerl.nets.critic_heads import ScalarHead
from widerl.replay.buffer import Batch, ReplayBuffer

# (s, a, r, s', terminated) of env A (1 -> 2 -> 3 -> 4 -> 5, terminated at the last step) and
# env B (10 -> 11 -> 12 -> 13 truncated by the time limit; reset to 20 -> 21 -> 22), in the
# order they arrive.
ROWS = [
    ("A0", 1.0, 1.0, 2.0, False),
    ("B0", 10.0, 10.0, 11.0, False),
    ("A1", 2.0, 2.0, 3.0, False),
    ("B1", 11.0, 20.0, 12.0, False),
    ("A2", 3.0, 3.0, 4.0, False),
    ("B2", 12.0, 30.0, 13.0, False),  # truncated: s' = 13 is the final observation
    ("A3", 4.0, 4.0, 5.0, True),
    ("B3", 20.0, 40.0, 21.0, False),  # the reset's observation, not 13
    ("B4", 21.0, 50.0, 22.0, False),  # the last stored: no successor yet
]
G = 0.5
# name: (return, state bootstrapped from, terminated, gamma^k) for K = 3
EXPECTED = {
    "A0": (1 + G * 2 + G**2 * 3, 4.0, 0.0, G**3),
    "A1": (2 + G * 3 + G**2 * 4, 5.0, 1.0, G**3),  # A3 terminates inside the window
    "A2": (3 + G * 4, 5.0, 1.0, G**2),
    "A3": (4.0, 5.0, 1.0, G),
    "B0": (10 + G * 20 + G**2 * 30, 13.0, 0.0, G**3),  # the truncation ends the window
    "B1": (20 + G * 30, 13.0, 0.0, G**2),  # ... early: bootstrap from 13 with gamma^2
    "B2": (30.0, 13.0, 0.0, G),
    "B3": (40 + G * 50, 22.0, 0.0, G**2),  # the stream stops at B4 (stored so far)
    "B4": (50.0, 22.0, 0.0, G),
}


def filled(n_step: int, chunks: tuple[slice, ...]) -> ReplayBuffer:
    buf = ReplayBuffer(1, 1, 32, n_step=n_step, gamma=G)
    for part in chunks:
        rows = ROWS[part]
        buf.add(
            np.array([[r[1]] for r in rows], np.float32),
            np.zeros((len(rows), 1), np.float32),
            np.array([r[2] for r in rows], np.float32),
            np.array([[r[3]] for r in rows], np.float32),
            np.array([r[4] for r in rows], np.float32),
        )
    return buf


@pytest.mark.parametrize("chunks", [(slice(None),), (slice(0, 4), slice(4, 7), slice(7, None))])
def test_three_step_returns_match_the_hand_computed_ones(chunks: tuple[slice, ...]) -> None:
    buf = filled(3, chunks)
    idx = torch.arange(len(ROWS))
    rew, next_obs, term, discount = buf.storage.multi_step(idx, 3, G)
    for i, (name, *_rest) in enumerate(ROWS):
        want = EXPECTED[name]
        got = (float(rew[i]), float(next_obs[i, 0]), float(term[i]), float(discount[i]))
        assert got == pytest.approx(want), name


def test_one_step_is_the_plain_transition_and_k_steps_reach_the_batch() -> None:
    one, three = filled(1, (slice(None),)), filled(3, (slice(None),))
    u = one.draw(64)
    plain, multi = one.gather(u), three.gather(u)
    assert plain.discount is None  # the one-step target keeps gamma (bit-identical runs)
    assert torch.equal(plain.idx, multi.idx) and torch.equal(plain.obs, multi.obs)
    names = [ROWS[i][0] for i in multi.idx.tolist()]
    assert multi.rew.tolist() == pytest.approx([EXPECTED[n][0] for n in names])
    assert multi.discount.tolist() == pytest.approx([EXPECTED[n][3] for n in names])
    assert plain.rew.tolist() == [ROWS[i][2] for i in plain.idx.tolist()]


def test_the_target_bootstraps_with_each_samples_discount() -> None:
    """r + discount * (1 - terminated) * V(s'), discount = gamma^k of the batch."""
    batch = filled(3, (slice(None),)).gather(torch.linspace(0, 0.999, 9).unsqueeze(0)[0])
    k = Batch(*(t.unsqueeze(0) if t is not None and t.dim() else t for t in batch[:5]),
              batch.weight, batch.idx, batch.discount.unsqueeze(0))  # fmt: skip
    v_next = torch.full((1, 2, 9, 1), 8.0)  # both critics value s' at 8
    target = td.bootstrap(ScalarHead(), 0.99, k, v_next, None)
    expected = k.rew + k.discount * (1 - k.term) * 8.0
    torch.testing.assert_close(target, expected)
    assert not torch.allclose(target, k.rew + 0.99 * (1 - k.term) * 8.0)
