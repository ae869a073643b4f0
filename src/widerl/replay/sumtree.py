"""A b-ary sum tree on torch tensors for proportional prioritized replay.

Proportional prioritization (Schaul et al. 2016, "Prioritized Experience Replay", sec. 3.3)
samples transition ``i`` with probability ``P(i) = v_i / sum_j v_j`` where ``v_i = p_i ** alpha``.
The paper uses a binary sum tree; here the branching factor is ``b`` (16 by default) because:

* memory: a binary float64 tree costs 16 bytes per slot on top of the leaves, i.e. as much as
  four float32 observation features. With ``b = 16`` the internal nodes number about
  ``N / 15`` and cost about half a byte per slot; the leaves stay float32.
* speed: at 1M slots the descent takes 5 levels instead of 20, and every level is a handful of
  vectorised tensor ops over ``(batch, b)``, so the per-op dispatch cost dominates and fewer
  levels is what matters.

Layout: ``levels[0]`` are the leaves (float32, capacity padded to a multiple of ``b``);
``levels[k + 1]`` holds one float64 sum per group of ``b`` entries of ``levels[k]``, again padded
to a multiple of ``b`` unless it is the single root. Padding is zero and therefore never sampled.

Nothing here reads a tensor value on the host, so ``find``/``update`` never synchronise with a
CUDA device.
"""

from __future__ import annotations

import torch

__all__ = ["SumTree", "level_lengths", "tree_nbytes"]


def _round_up(n: int, b: int) -> int:
    return -(-n // b) * b


def level_lengths(capacity: int, branching: int = 16) -> list[int]:
    """Entries of each level, leaves first, root (1) last: the layout described above."""
    lengths = [_round_up(capacity, branching)]
    count = lengths[0] // branching
    while True:
        length = 1 if count == 1 else _round_up(count, branching)
        lengths.append(length)
        if count == 1:
            return lengths
        count = length // branching


def tree_nbytes(capacity: int, branching: int = 16) -> int:
    """What a SumTree of this capacity allocates (float32 leaves, float64 internal sums),
    without allocating it: for the memory check before a run starts."""
    leaves, *internal = level_lengths(capacity, branching)
    return 4 * leaves + 8 * sum(internal)


class SumTree:
    """Sum tree with branching factor ``branching`` over ``capacity`` non-negative leaves."""

    def __init__(
        self, capacity: int, device: torch.device | str = "cpu", branching: int = 16
    ) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        if branching < 2:
            raise ValueError(f"branching must be >= 2, got {branching}")
        self.capacity = int(capacity)
        self.branching = int(branching)
        self.device = torch.device(device)
        b = self.branching
        leaves, *internal = level_lengths(self.capacity, b)
        self.leaves = torch.zeros(leaves, dtype=torch.float32, device=device)
        # Internal sums are float64 so that a total over ~1e6 float32 leaves keeps enough
        # precision for u ~ U[0, total) to resolve the smallest leaf.
        self.internal: list[torch.Tensor] = [
            torch.zeros(n, dtype=torch.float64, device=device) for n in internal
        ]
        self._neg_inf = torch.tensor(float("-inf"), dtype=torch.float64, device=device)

    @property
    def levels(self) -> list[torch.Tensor]:
        """All levels, leaves first, root (shape ``(1,)``) last."""
        return [self.leaves, *self.internal]

    @property
    def depth(self) -> int:
        """Number of levels a query descends through (root excluded)."""
        return len(self.internal)

    def total(self) -> torch.Tensor:
        """Sum of all leaves, a float64 0-d device tensor."""
        return self.internal[-1][0]

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.levels)

    def set_range(self, start: int, values: torch.Tensor) -> None:
        """Write ``values`` into leaves ``[start, start + len(values))`` and refresh ancestors."""
        end = start + values.shape[0]
        if not 0 <= start <= end <= self.capacity:
            raise IndexError(f"range [{start}, {end}) outside capacity {self.capacity}")
        if end == start:
            return
        self.leaves[start:end] = values
        b = self.branching
        lo, hi = start, end
        for child, parent in zip(self.levels[:-1], self.internal, strict=True):
            lo, hi = lo // b, (hi - 1) // b + 1
            parent[lo:hi] = child[lo * b : hi * b].view(-1, b).sum(1, dtype=torch.float64)

    def update(self, idx: torch.Tensor, values: torch.Tensor) -> None:
        """Write ``values`` at leaf indices ``idx`` (int64) and refresh their ancestors.

        Each ancestor is recomputed as the exact sum of its children rather than adjusted by a
        delta, so rounding never accumulates over millions of updates. Duplicate indices are
        harmless: whichever write wins, the parents are then recomputed from what was written.
        """
        self.leaves.index_put_((idx,), values.to(torch.float32))
        b = self.branching
        node = idx
        for child, parent in zip(self.levels[:-1], self.internal, strict=True):
            node = torch.div(node, b, rounding_mode="floor")
            sums = child.view(-1, b).index_select(0, node).sum(1, dtype=torch.float64)
            parent.index_put_((node,), sums)

    def rebuild(self) -> None:
        """Recompute every internal node from the leaves."""
        b = self.branching
        for child, parent in zip(self.levels[:-1], self.internal, strict=True):
            n = child.numel() // b
            parent[:n] = child.view(-1, b).sum(1, dtype=torch.float64)
            parent[n:] = 0.0

    def find(self, u: torch.Tensor) -> torch.Tensor:
        """Leaf index for each prefix-sum query ``u`` (float64, values in ``[0, total)``).

        Returns the leaf ``i`` with ``cumsum[i - 1] <= u < cumsum[i]``, so a uniform ``u`` selects
        leaf ``i`` with probability ``leaf_i / total`` exactly (up to float64 rounding). If
        rounding ever puts ``u`` at or past the sum of a node's children, the choice is clamped to
        the last child with a positive sum, so zero leaves (padding, empty or zero-priority
        slots) are never returned while any positive leaf exists.
        """
        b = self.branching
        u = u.to(torch.float64).reshape(-1, 1)
        node = torch.zeros(u.shape, dtype=torch.int64, device=u.device)
        for level in reversed(self.levels[:-1]):
            children = level.view(-1, b).index_select(0, node.view(-1)).to(torch.float64)
            cs = children.cumsum(1)
            # Keep u strictly below this node's cumsum total. Afterwards every chosen child has
            # cs[j] > u >= cs[j - 1], hence a positive sum; without it a u that rounding pushed
            # to the total would run past the last positive child into zeros or padding.
            # (For an all-zero tree u becomes negative and the walk returns leaf 0.)
            u = torch.minimum(u, torch.nextafter(cs[:, -1:], self._neg_inf))
            j = torch.searchsorted(cs, u, right=True)
            u = u - (cs - children).gather(1, j)
            node = torch.add(j, node, alpha=b)
        return node.view(-1)

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` i.i.d. leaf indices with ``P(i) = leaf_i / total`` (not stratified)."""
        u = torch.rand(n, dtype=torch.float64, device=self.device, generator=generator)
        return self.find(u * self.total())
