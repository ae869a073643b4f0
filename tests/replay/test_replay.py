from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from widerl.replay.buffer import Batch, ReplayBuffer
from widerl.replay.sumtree import SumTree

OBS, ACT = 3, 2


def rows(ids: np.ndarray | range) -> tuple[np.ndarray, ...]:
    """Transitions whose every field encodes the row id, so storage positions can be checked."""
    ids = np.asarray(ids, dtype=np.float64)
    n = len(ids)
    obs = np.repeat(ids[:, None], OBS, axis=1)
    act = np.repeat(ids[:, None], ACT, axis=1) / 1000.0
    term = (ids % 3 == 0).astype(np.float32)
    return obs, act, ids.copy(), obs + 0.5, term.reshape(n)


def fill(rb: ReplayBuffer, ids: np.ndarray | range, **kw: object) -> None:
    rb.add(*rows(ids), **kw)


def sample_idx(rb: ReplayBuffer, draws: int, batch: int = 4096, beta: float = 0.4) -> torch.Tensor:
    out = [rb.sample(batch, beta).idx for _ in range(math.ceil(draws / batch))]
    return torch.cat(out)[:draws]


def chi2_threshold(dof: int, z: float = 4.75) -> float:
    """Wilson-Hilferty approximation of the chi-square quantile; z = 4.75 is a ~1e-6 tail."""
    c = 2.0 / (9.0 * dof)
    return dof * (1.0 - c + z * math.sqrt(c)) ** 3


def pooled(p: np.ndarray, n: int, min_expected: float = 5.0) -> list[np.ndarray]:
    """Bins for a chi-square test: rare categories are pooled so every bin expects >= 5."""
    rare = n * p < min_expected
    bins = [np.array([i]) for i in np.flatnonzero(~rare)]
    if rare.any():
        bins.append(np.flatnonzero(rare))
    return bins


def chi2(counts: np.ndarray, p: np.ndarray, bins: list[np.ndarray]) -> float:
    n = counts.sum()
    obs = np.array([counts[b].sum() for b in bins], dtype=np.float64)
    exp = np.array([n * p[b].sum() for b in bins])
    return float(((obs - exp) ** 2 / exp).sum())


# ---------------------------------------------------------------- storage / ring buffer


def test_ring_overwrites_oldest_and_wraps_with_batch_across_end() -> None:
    rb = ReplayBuffer(OBS, ACT, capacity=10)
    fill(rb, range(7))
    assert (rb.size, rb.pos) == (7, 7)
    fill(rb, range(7, 13))  # 3 rows fit before the end, 3 wrap to the front
    assert (rb.size, rb.pos) == (10, 3)
    assert rb.storage.rew.tolist() == [10, 11, 12, 3, 4, 5, 6, 7, 8, 9]
    assert torch.equal(rb.storage.next_obs[:, 0], rb.storage.rew + 0.5)
    b = rb.sample(2000)
    assert set(b.rew.tolist()) == set(range(3, 13))
    assert torch.equal(b.rew, rb.storage.rew[b.idx])


@pytest.mark.parametrize("prioritized", [False, True])
def test_batched_add_equals_row_by_row(prioritized: bool) -> None:
    rng = np.random.default_rng(0)
    big = ReplayBuffer(OBS, ACT, capacity=7, prioritized=prioritized)
    ref = ReplayBuffer(OBS, ACT, capacity=7, prioritized=prioritized)
    start = 0
    for n in [3, 1, 6, 7, 20, 2, 9]:  # includes n == capacity and n > capacity
        ids = np.arange(start, start + n)
        prio = rng.uniform(0.0, 5.0, size=n)
        fill(big, ids, priority=prio)
        for i in range(n):
            fill(ref, ids[i : i + 1], priority=prio[i : i + 1])
        start += n
        assert (big.size, big.pos) == (ref.size, ref.pos)
        for name, t in big.storage.fields().items():
            assert torch.equal(t, ref.storage.fields()[name]), name
        if prioritized:
            assert torch.equal(big.sampler.tree.leaves, ref.sampler.tree.leaves)
            assert torch.allclose(big.sampler.tree.total(), ref.sampler.tree.total(), rtol=1e-12)


@pytest.mark.parametrize("prioritized", [False, True])
def test_samples_only_stored_rows(prioritized: bool) -> None:
    rb = ReplayBuffer(OBS, ACT, capacity=100, prioritized=prioritized)
    fill(rb, range(7))
    idx = sample_idx(rb, 20_000)
    assert set(idx.tolist()) == set(range(7))


def test_inputs_torch_numpy_and_shapes() -> None:
    rb = ReplayBuffer(OBS, ACT, capacity=8)
    obs, act, rew, nxt, term = rows(range(4))
    rb.add(
        torch.from_numpy(obs).requires_grad_(),  # float64, with grad: must be detached + cast
        act.astype(np.float32),
        torch.from_numpy(rew).reshape(4, 1),  # (n, 1) rewards are accepted
        nxt,
        torch.from_numpy(term).bool(),
    )
    assert rb.storage.term.dtype == torch.bool
    assert rb.storage.term[:4].tolist() == [True, False, False, True]
    assert rb.storage.rew[:4].tolist() == [0, 1, 2, 3]
    rb.add(obs, act, rew.reshape(4, 1) + 4, nxt, term)  # numpy rows are checked alike
    assert rb.storage.rew[4:].tolist() == [4, 5, 6, 7]
    with pytest.raises(ValueError, match=r"rew: expected shape \(4,\), got \(4, 2\)"):
        rb.add(obs, act, np.stack([rew, rew], 1), nxt, term)
    with pytest.raises(ValueError):
        rb.add(obs[:, :2], act, rew, nxt, term)
    with pytest.raises(ValueError):
        rb.add(obs, act, rew[:3], nxt, term)
    with pytest.raises(RuntimeError):
        ReplayBuffer(OBS, ACT, capacity=8).sample(4)


# ---------------------------------------------------------------- uniform sampling


def test_uniform_batch_types_and_reachability() -> None:
    rb = ReplayBuffer(OBS, ACT, capacity=20, seed=3)
    fill(rb, range(20))
    b = rb.sample(64)
    assert isinstance(b, Batch)
    assert b.weight is None
    assert b.obs.shape == (64, OBS) and b.next_obs.shape == (64, OBS)
    assert b.act.shape == (64, ACT)
    assert b.rew.shape == b.term.shape == b.idx.shape == (64,)
    for t in (b.obs, b.act, b.rew, b.next_obs, b.term):
        assert t.dtype == torch.float32
    assert b.idx.dtype == torch.int64
    assert torch.equal(b.term, (b.rew % 3 == 0).float())
    assert torch.equal(b.obs[:, 0], b.rew) and torch.equal(b.next_obs[:, 0], b.rew + 0.5)
    assert torch.allclose(b.act[:, 0], b.rew / 1000)
    counts = torch.bincount(sample_idx(rb, 40_000), minlength=20)
    assert counts.min() > 0
    p = np.full(20, 1 / 20)
    assert chi2(counts.numpy(), p, pooled(p, 40_000)) < chi2_threshold(19)


def test_update_priorities_is_noop_for_uniform() -> None:
    rb = ReplayBuffer(OBS, ACT, capacity=4)
    fill(rb, range(4))
    rb.update_priorities(torch.tensor([0, 1]), torch.tensor([5.0, 1.0]))
    assert rb.sample(8).weight is None


# ---------------------------------------------------------------- prioritized sampling

TD = np.concatenate(
    [
        [0.0, 0.0, 0.0],  # priority is eps alone
        [1e-3] * 5,
        np.linspace(0.01, 1.0, 32),
        [2, 3, 5, 8, 13, 21, 34, 55, 89, 144],
    ]
)


def probs(td: np.ndarray, alpha: float, eps: float = 1e-6) -> np.ndarray:
    v = (np.abs(td) + eps) ** alpha
    return v / v.sum()


@pytest.mark.parametrize("alpha", [0.6, 1.0])
def test_prioritized_frequencies_follow_p_alpha(alpha: float) -> None:
    n_items, draws = len(TD), 200_000
    rb = ReplayBuffer(OBS, ACT, capacity=n_items, prioritized=True, alpha=alpha, seed=1)
    fill(rb, range(n_items))
    rb.update_priorities(torch.arange(n_items), torch.as_tensor(TD, dtype=torch.float32))
    p = probs(TD, alpha)
    bins = pooled(p, draws)
    threshold = chi2_threshold(len(bins) - 1)
    # Power check of the test itself: a sampler that ignores alpha, uses another alpha or is
    # uniform would produce a chi-square around dof + noncentrality, far above the threshold.
    for wrong_alpha in {1.0, 0.6, 0.0} - {alpha}:
        q = probs(TD, wrong_alpha)
        noncentrality = sum(draws * (q[b].sum() - p[b].sum()) ** 2 / p[b].sum() for b in bins)
        assert noncentrality > 20 * threshold, (wrong_alpha, noncentrality)

    counts = torch.bincount(sample_idx(rb, draws), minlength=n_items).numpy()
    stat = chi2(counts, p, bins)
    assert stat < threshold, (stat, threshold)


def test_prioritized_draws_are_iid_not_stratified() -> None:
    # Item 0 carries half the mass. With i.i.d. draws its count per batch of 64 is
    # Binomial(64, 1/2) with variance 16; stratified (one draw per mass segment) sampling pins it
    # near 32 with variance < 1. The ratio's standard error over 2000 batches is ~0.03.
    n_items, batch, batches = 33, 64, 2000
    td = np.ones(n_items)
    td[0] = n_items - 1
    rb = ReplayBuffer(OBS, ACT, capacity=n_items, prioritized=True, alpha=1.0, eps=0.0, seed=2)
    fill(rb, range(n_items))
    rb.update_priorities(torch.arange(n_items), torch.as_tensor(td))
    per_batch = torch.stack([(rb.sample(batch).idx == 0).sum() for _ in range(batches)]).double()
    assert abs(per_batch.mean().item() - 32) < 0.5
    ratio = per_batch.var().item() / (batch * 0.25)
    assert 0.8 < ratio < 1.25, ratio


def test_importance_weights_exact() -> None:
    rb = ReplayBuffer(OBS, ACT, capacity=4, prioritized=True, alpha=0.5, eps=0.0)
    fill(rb, range(4), priority=np.array([1.0, 2.0, 3.0, 4.0]))
    # v = p ** 0.5 = [1, sqrt 2, sqrt 3, 2]; weight_i = (4 P(i)) ** -beta / max over the batch;
    # item 0 has the smallest P, so when it is in the batch weight_i = (v_i / v_0) ** -beta.
    expected = {
        0.4: [1.0, 2**-0.2, 3**-0.2, 2**-0.4],  # 1, 0.870551, 0.802742, 0.757858
        1.0: [1.0, 2**-0.5, 3**-0.5, 0.5],
    }
    for beta, w in expected.items():
        b = rb.sample(256, beta=beta)
        assert set(b.idx.tolist()) == {0, 1, 2, 3}
        assert b.weight is not None and b.weight.dtype == torch.float32
        torch.testing.assert_close(b.weight, torch.tensor(w)[b.idx], rtol=1e-6, atol=0)
        assert b.weight.max().item() == 1.0

    # A batch without item 0 is normalised by its own max, following the formula literally.
    v = np.sqrt([1.0, 2.0, 3.0, 4.0])
    for _ in range(50):
        b = rb.sample(2, beta=0.4)
        ids = b.idx.tolist()
        raw = [(4 * v[i] / v.sum()) ** -0.4 for i in ids]
        want = torch.tensor([r / max(raw) for r in raw], dtype=torch.float32)
        torch.testing.assert_close(b.weight, want, rtol=1e-6, atol=0)


def test_new_transitions_get_max_priority() -> None:
    rb = ReplayBuffer(OBS, ACT, capacity=10, prioritized=True, alpha=0.6, eps=1e-6)
    leaves = rb.sampler.tree.leaves
    fill(rb, range(3))
    assert leaves[:3].tolist() == [1.0, 1.0, 1.0]  # 1 before any update
    rb.update_priorities(torch.tensor([0]), torch.tensor([3.0]))
    rb.update_priorities(torch.tensor([1]), torch.tensor([0.5]))  # lower: max stays
    fill(rb, range(3, 5))
    want = (3.0 + 1e-6) ** 0.6
    torch.testing.assert_close(leaves[3:5], torch.full((2,), want))
    torch.testing.assert_close(rb.sampler.max_priority, torch.tensor(3.0 + 1e-6))
    rb.update_priorities(torch.tensor([2]), torch.tensor([-7.0]))  # signed TD errors: |td|
    fill(rb, range(5, 6))
    torch.testing.assert_close(leaves[5], torch.tensor((7.0 + 1e-6) ** 0.6))
    rb.update_priorities(torch.tensor([1]), torch.tensor([0.0]))  # eps keeps it sampleable
    torch.testing.assert_close(leaves[1], torch.tensor(1e-6**0.6))


def test_explicit_initial_priorities_ape_x() -> None:
    rb = ReplayBuffer(OBS, ACT, capacity=6, prioritized=True, alpha=1.0, eps=0.0)
    fill(rb, range(6), priority=torch.tensor([0.0, 0.0, 1.0, 0.0, 3.0, 0.0]))
    counts = torch.bincount(sample_idx(rb, 40_000), minlength=6)
    assert counts[[0, 1, 3, 5]].sum() == 0
    assert abs(counts[4].item() / 40_000 - 0.75) < 0.01
    # Explicit priorities also raise the running max used for later default-priority adds.
    torch.testing.assert_close(rb.sampler.max_priority, torch.tensor(3.0))


def test_update_priorities_changes_sampling() -> None:
    rb = ReplayBuffer(OBS, ACT, capacity=16, prioritized=True, alpha=1.0, seed=5)
    fill(rb, range(16))
    counts = torch.bincount(sample_idx(rb, 16_000), minlength=16)
    assert counts.min() > 800  # all at the initial max priority: uniform
    rb.update_priorities(torch.arange(16), torch.full((16,), 0.01))
    rb.update_priorities(torch.tensor([9]), torch.tensor([1.5]))
    counts = torch.bincount(sample_idx(rb, 16_000), minlength=16)
    expected = 1.5 / (1.5 + 15 * 0.01)
    assert abs(counts[9].item() / 16_000 - expected) < 0.01


@pytest.mark.parametrize("capacity", [1, 3, 5, 15, 16, 17, 21, 100, 1000])
def test_never_samples_padding_or_zero_priority(capacity: int) -> None:
    rb = ReplayBuffer(OBS, ACT, capacity=capacity, prioritized=True, alpha=0.6, eps=0.0)
    stored = max(1, capacity - 2)
    fill(rb, range(stored))
    positive = torch.arange(stored) % 4 == 1 if stored > 1 else torch.ones(1, dtype=torch.bool)
    gen = torch.Generator().manual_seed(capacity)
    td = torch.where(positive, torch.rand(stored, generator=gen) * 10 + 0.5, torch.zeros(stored))
    rb.update_priorities(torch.arange(stored), td)
    idx = sample_idx(rb, 20_000)
    assert positive[idx].all()
    assert set(idx.tolist()) == set(torch.arange(stored)[positive].tolist())


@pytest.mark.parametrize("capacity", [5, 37, 1000, 70_000])
def test_sumtree_boundary_queries_stay_on_positive_leaves(capacity: int) -> None:
    tree = SumTree(capacity)
    gen = torch.Generator().manual_seed(0)
    # Wide dynamic range with runs of zeros: the setting where float rounding could walk past the
    # last positive child of a node.
    v = torch.rand(capacity, generator=gen) ** 8 * 1e4
    v[torch.rand(capacity, generator=gen) < 0.5] = 0.0
    v[capacity // 2] = 1.0
    tree.set_range(0, v)
    total = tree.total()
    cs = v.double().cumsum(0)
    u = torch.cat(
        [
            cs,  # exact boundaries
            torch.nextafter(cs, torch.tensor(0.0, dtype=torch.float64)),
            torch.stack([total, torch.nextafter(total, total + 1), total * 2]),  # out of range
            torch.zeros(1, dtype=torch.float64),
            torch.rand(5000, dtype=torch.float64, generator=gen) * total,
        ]
    )
    idx = tree.find(u)
    assert idx.max().item() < capacity
    assert (v[idx] > 0).all()
    # In-range queries select the leaf whose prefix interval contains u.
    inner = torch.rand(2000, dtype=torch.float64, generator=gen) * total
    i = tree.find(inner)
    lo = cs[i] - v[i].double()
    assert (lo <= inner * (1 + 1e-12)).all() and (inner <= cs[i] * (1 + 1e-12)).all()


def test_sumtree_all_zero_returns_leaf_zero() -> None:
    tree = SumTree(20)
    assert tree.sample(8, torch.Generator().manual_seed(0)).tolist() == [0] * 8


def test_sumtree_levels_padding_is_small() -> None:
    tree = SumTree(1_000_000)
    assert [t.numel() for t in tree.levels] == [1_000_000, 62_512, 3_920, 256, 16, 1]
    assert tree.depth == 5
    assert [t.numel() for t in SumTree(17).levels] == [32, 16, 1]
    assert [t.numel() for t in SumTree(3).levels] == [16, 1]
    assert [t.numel() for t in SumTree(16**3 + 1).levels] == [4112, 272, 32, 16, 1]


def test_sumtree_updates_with_duplicates_do_not_drift() -> None:
    gen = torch.Generator().manual_seed(0)
    tree = SumTree(5000)
    tree.set_range(0, torch.rand(5000, generator=gen))
    for _ in range(300):
        idx = torch.randint(0, 5000, (256,), generator=gen)
        idx[:32] = idx[0]  # duplicates within one update
        tree.update(idx, torch.rand(256, generator=gen) * 100)
    assert tree.leaves[idx[0]].item() in set((tree.leaves[idx[:32]]).tolist())
    incremental = [t.clone() for t in tree.internal]
    tree.rebuild()
    for a, b in zip(incremental, tree.internal, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-13, atol=0)
    torch.testing.assert_close(tree.total(), tree.leaves.double().sum(), rtol=1e-12, atol=0)


# ---------------------------------------------------------------- host synchronisation


@contextlib.contextmanager
def forbid_host_reads() -> Iterator[None]:
    """Make the python-level ways of reading tensor values back raise (a CPU proxy for syncs)."""

    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("host read of a tensor value")

    names = ["item", "tolist", "cpu", "numpy", "nonzero", "__bool__", "__int__", "__float__"]
    saved = {n: getattr(torch.Tensor, n) for n in names}
    saved_fns = {n: getattr(torch, n) for n in ("nonzero", "unique", "masked_select")}
    try:
        for n in names:
            setattr(torch.Tensor, n, boom)
        for n in saved_fns:
            setattr(torch, n, boom)
        yield
    finally:
        for n, f in saved.items():
            setattr(torch.Tensor, n, f)
        for n, f in saved_fns.items():
            setattr(torch, n, f)


@pytest.mark.parametrize("prioritized", [False, True])
def test_sample_and_update_do_not_read_tensors_on_host(prioritized: bool) -> None:
    rb = ReplayBuffer(OBS, ACT, capacity=50, prioritized=prioritized)
    fill(rb, range(60))
    td = torch.rand(32)
    with forbid_host_reads():
        b = rb.sample(32, beta=0.5)
        rb.update_priorities(b.idx, td)
        rb.sample(32)


# ---------------------------------------------------------------- checkpointing / memory


@pytest.mark.parametrize("prioritized", [False, True])
@pytest.mark.parametrize("n_added", [7, 23])  # partially filled; wrapped around
def test_state_dict_round_trip(tmp_path, prioritized: bool, n_added: int) -> None:
    cap = 16
    rb = ReplayBuffer(OBS, ACT, capacity=cap, prioritized=prioritized, seed=11)
    fill(rb, range(n_added))
    rb.update_priorities(torch.tensor([1, 2]), torch.tensor([4.0, 0.1]))
    rb.sample(5)  # advance the RNG so its state is not the seed's
    state = rb.state_dict()
    size = min(n_added, cap)
    for key in ("obs", "act", "rew", "next", "term") + (("priorities",) * prioritized):
        t = state[key]
        assert t.shape[0] == size
        assert t.untyped_storage().nbytes() == t.numel() * t.element_size()  # not the capacity
    path = tmp_path / "replay.pt"
    torch.save(state, path)
    loaded = torch.load(path, weights_only=True)

    other = ReplayBuffer(OBS, ACT, capacity=cap, prioritized=prioritized, seed=99)
    other.load_state_dict(loaded)
    assert (other.size, other.pos) == (rb.size, rb.pos)
    for step in range(5):
        a, b = rb.sample(8, beta=0.7), other.sample(8, beta=0.7)
        for x, y in zip(a, b, strict=True):
            assert (x is None and y is None) or torch.equal(x, y)
        td = torch.rand(8) * step
        rb.update_priorities(a.idx, td)
        other.update_priorities(b.idx, td)
        fill(rb, [100 + step])
        fill(other, [100 + step])

    with pytest.raises(ValueError):
        ReplayBuffer(OBS, ACT, capacity=cap + 1, prioritized=prioritized).load_state_dict(loaded)


def test_nbytes_budget() -> None:
    obs, act, cap = 11, 3, 100_000
    rb = ReplayBuffer(obs, act, capacity=cap, prioritized=True)
    assert rb.nbytes() <= (2 * obs + act + 4) * 4 * cap
    uniform = ReplayBuffer(obs, act, capacity=cap)
    # A pool row for every slot (the default), bool terminals, int32 next pointers.
    assert uniform.nbytes() == (2 * obs + act + 1) * 4 * cap + cap + 4 * cap
    # Sampler overhead: float32 leaves plus ~1/15 float64 internal nodes, under 5 bytes a slot.
    assert rb.nbytes() - uniform.nbytes() < 5 * cap


# ---------------------------------------------------------------- CUDA


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")
@pytest.mark.parametrize("prioritized", [False, True])
def test_cuda_add_sample_update_without_sync(prioritized: bool) -> None:
    rb = ReplayBuffer(OBS, ACT, capacity=1000, device="cuda", prioritized=prioritized)
    fill(rb, range(600))  # numpy input
    obs, act, rew, nxt, term = (torch.as_tensor(x, device="cuda") for x in rows(range(600)))
    rb.add(
        obs, act, rew, nxt, term, priority=torch.rand(600, device="cuda") if prioritized else None
    )
    assert rb.size == 1000
    td = torch.rand(256, device="cuda")
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            b = rb.sample(256, beta=0.4)
            rb.update_priorities(b.idx, td)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert b.obs.is_cuda and b.idx.is_cuda and b.term.dtype == torch.float32
    assert torch.equal(b.obs[:, 0], b.rew)
    assert (b.weight is not None) == prioritized
    assert int(b.idx.max()) < 1000
    if prioritized:
        tree = rb.sampler.tree
        torch.testing.assert_close(tree.total(), tree.leaves.double().sum(), rtol=1e-9, atol=0)
    state = rb.state_dict()
    other = ReplayBuffer(OBS, ACT, capacity=1000, device="cuda", prioritized=prioritized)
    other.load_state_dict(state)
    assert torch.equal(rb.sample(64).idx, other.sample(64).idx)


def test_humanoid_million_transitions_fit_in_3_gb() -> None:
    """Issue budget: 1M Humanoid-v5 transitions (obs 348, act 17) in at most 3 GB, counting
    the prioritized tree and the learner's per-transition weight version (int32)."""
    cap = 50_000  # measured at 1/20 of the size; every part grows linearly with capacity
    rb = ReplayBuffer(348, 17, cap, prioritized=True)
    per_transition = rb.nbytes() / cap + np.dtype(np.int32).itemsize
    assert per_transition * 1_000_000 <= 3e9
