"""The replay's storage, which keeps each observation once.

A transition (s, a, r, s', terminated) takes one slot of a ring of `capacity` slots: s, a, r
and the flag live in the slot, s' is found through the slot's `next` pointer (int32). Within
an episode s' of step t is s of step t + 1 of the same env, so the pointer names the slot of
that later transition and s' costs 4 bytes instead of a second observation (1M Humanoid-v5
transitions with the sum tree: 2.862 GB -> 1.495 GB, see `compact_reserve`). Where s' is no
later stored transition's s, it gets a row of its own in `extra`, a pool of `reserve` rows:

- an episode end, terminated or truncated: s' is the env's true final observation, while the
  next step's s is the reset's;
- a transition whose successor was diverted (OFENet's held-out split) or never came (a
  collector replaced after dying, the last step before a checkpoint);
- the last step of each env in a chunk, until the chunk that continues it arrives.

Which slot continues which is found from the data alone, so chunks may interleave envs and
collectors in any order (Ape-X) and nothing about streams needs to be declared: a pointer
names a slot only if that slot's s equals s' bit for bit (proposed by a hash of the
bytes, then compared exactly) and the slot was written after the transition, hence is
overwritten after it too. A link therefore never changes a sampled value. When the
continuing row arrives, a pooled s' moves back to a pointer and its row is free again.

The pool is fixed in size, so the sampling graph's shapes never change (torch.compile). If
more transitions need a row of their own than the pool holds, the oldest transitions leave
the buffer early: the live transitions stay one contiguous run of the ring, `start`
(device tensor) is where it begins, and `size` falls below the capacity. Under
`compact_reserve` (which adds a row per transition OFENet's split diverts) that takes more
than 1 in 64 stored transitions ending an episode: episodes shorter than 64 steps on average
over the whole buffer.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np
import torch

__all__ = ["TensorStorage", "compact_reserve", "rows_of", "segments", "storage_nbytes"]

COMPACT_DIVISOR = 64  # pool rows per stored transition in a run's replay: 1 in this many
COMPACT_MIN = 8_192  # buffers up to this size keep a row for every transition


def compact_reserve(capacity: int, held_out_every: int | None = None) -> int:
    """The pool a run's replay gets (build.py, memory.py): 1/64 of the capacity, plus a row
    for each transition whose successor goes to OFENet's held-out buffer (one in
    `held_out_every`); at least 8,192 rows (all of a small buffer: the saving is small there
    and short test episodes would otherwise shrink it)."""
    diverted = -(-capacity // held_out_every) if held_out_every else 0
    return max(capacity // COMPACT_DIVISOR + diverted, min(capacity, COMPACT_MIN))


def storage_nbytes(obs_dim: int, act_dim: int, capacity: int, reserve: int | None = None) -> int:
    """What a TensorStorage allocates, without allocating it: per slot s, a, r (float32), the
    terminated flag (bool) and the next pointer (int32); the pool's rows (float32)."""
    pool = capacity if reserve is None else reserve
    return capacity * (4 * (obs_dim + act_dim + 1) + 1 + 4) + pool * 4 * obs_dim


def segments(pos: int, n: int, capacity: int) -> list[tuple[int, int, int]]:
    """``(dst_start, src_start, length)`` slices that write ``n`` rows into a ring at ``pos``.

    Only the last ``capacity`` rows of an oversized batch survive, exactly as if the rows had been
    appended one by one; at most two contiguous slices are needed.
    """
    skip = max(0, n - capacity)
    m = n - skip
    start = (pos + skip) % capacity
    first = min(m, capacity - start)
    segs = [(start, skip, first)]
    if m > first:
        segs.append((0, skip + first, m - first))
    return segs


def _keys(x: np.ndarray) -> list[int]:
    """A hash of each float32 row's bytes. It only proposes links; each is then checked bit
    for bit, so a collision costs a missed link, never a wrong value."""
    return [hash(r.tobytes()) for r in x]


def _bits(x: np.ndarray) -> np.ndarray:
    """float32 rows as their bits: a link must not change a value, not even -0.0 or a NaN."""
    return x.view(np.int32)


def _host(x: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(x, np.ndarray):
        return x
    return (x if x.device.type == "cpu" else x.cpu()).detach().numpy()


def _index(
    values: list[int], device: torch.device, dtype: torch.dtype = torch.int64
) -> torch.Tensor:
    return torch.from_numpy(np.asarray(values, dtype=np.int64)).to(device, dtype)


class TensorStorage:
    """Preallocated ring of transitions on one device, each observation stored once."""

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        capacity: int,
        device: torch.device | str = "cpu",
        reserve: int | None = None,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.obs_dim = int(obs_dim)
        self.act_dim = int(act_dim)
        self.capacity = int(capacity)
        self.reserve = self.capacity if reserve is None else int(reserve)
        if self.reserve < 1:
            raise ValueError(f"reserve must be >= 1, got {self.reserve}")
        self.device = torch.device(device)
        f32 = {"dtype": torch.float32, "device": self.device}
        # Every observation in one tensor: the slots' s, then the pool's rows, so that s' is
        # one index_select of the pointer whichever it names (as cheap as a stored s' was).
        self.states = torch.zeros(self.capacity + self.reserve, self.obs_dim, **f32)
        self.obs = self.states[: self.capacity]
        self.extra = self.states[self.capacity :]
        self.act = torch.zeros(self.capacity, self.act_dim, **f32)
        self.rew = torch.zeros(self.capacity, **f32)
        # bool is one byte instead of four; the Batch gets float32 on the way out.
        self.term = torch.zeros(self.capacity, dtype=torch.bool, device=self.device)
        # Where s' is: a slot (< capacity) or capacity + a row of the pool.
        self.next = torch.zeros(self.capacity, dtype=torch.int32, device=self.device)
        # Size and start as device tensors too: a compiled learning step reads them inside its
        # graph (a Python int that changes every step would recompile it).
        self.size_t = torch.zeros((), dtype=torch.int64, device=self.device)
        self.start_t = torch.zeros((), dtype=torch.int64, device=self.device)
        # On the CPU, writes go through numpy views of the same memory: an add of one env
        # step is a dozen small writes, and numpy's are several times cheaper than torch's.
        named = {"obs": self.obs, "act": self.act, "rew": self.rew, "term": self.term,
                 "next": self.next, "extra": self.extra}  # fmt: skip
        self._np = {k: t.numpy() for k, t in named.items()} if self.device.type == "cpu" else None
        self._t = named
        self._counters: tuple[int, int] | None = None  # what size_t and start_t hold
        # ... written on the CPU through numpy views too (two torch fills were a tenth of a
        # one-row write).
        self._counters_np = (
            (self.size_t.numpy(), self.start_t.numpy()) if self.device.type == "cpu" else None
        )
        self.clear()

    def clear(self) -> None:
        """Empty, as new (in place: the tensors stay the same objects)."""
        for t in (self.states, self.act, self.rew, self.term, self.next):
            t.zero_()
        self.written = 0  # transitions ever written; transition a sits in slot a % capacity
        self.live = 0  # the oldest transition still stored
        # Host bookkeeping of the pool: the transition each row holds s' for (-1: free) and
        # the hash of that s'; free rows in the order they are handed out; open ends by
        # hash (oldest first), which a later transition's s may continue.
        self.owner = np.full(self.reserve, -1, dtype=np.int64)
        self.keys: list[int | None] = [None] * self.reserve
        self.free: deque[int] = deque()
        self.fresh = 0  # rows from here on were never handed out
        self.open: dict[int, list[tuple[int, int]]] = {}
        self._sync_counters()

    @property
    def pos(self) -> int:
        return self.written % self.capacity

    @property
    def size(self) -> int:
        return self.written - self.live

    @property
    def start(self) -> int:
        """Slot of the oldest live transition; 0 when full (every slot is live then)."""
        return 0 if self.size == self.capacity else self.live % self.capacity

    def _sync_counters(self) -> None:
        now = (self.size, self.start)
        if now != self._counters:  # a full ring's stay the same: no tensor writes
            if self._counters_np is not None:
                self._counters_np[0][()] = now[0]
                self._counters_np[1][()] = now[1]
            else:
                self.size_t.fill_(now[0])
                self.start_t.fill_(now[1])
            self._counters = now

    def slots(self, k: torch.Tensor) -> torch.Tensor:
        """Slots of the live transitions at positions `k` (0..size-1) from `start`."""
        return torch.remainder(k + self.start_t, self.capacity)

    # --- reading --------------------------------------------------------------------------
    def next_obs_of(self, idx: torch.Tensor) -> torch.Tensor:
        """s' of the slots `idx`: device ops only (no value read on the host)."""
        return self.states.index_select(0, self.next.index_select(0, idx))

    def gather(self, idx: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (
            self.obs.index_select(0, idx),
            self.act.index_select(0, idx),
            self.rew.index_select(0, idx),
            self.next_obs_of(idx),
            self.term.index_select(0, idx).to(torch.float32),
        )

    def multi_step(
        self, idx: torch.Tensor, n_step: int, gamma: float
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The n-step return of the slots `idx`, following the `next` pointers (device ops
        only): R = sum_{i<k} gamma^i r_{t+i}, the state s_{t+k} to bootstrap from, whether
        step t+k-1 terminated, and gamma^k, where k <= n_step stops early at a termination
        (no bootstrap), at an episode's end by time limit or any other s' without a stored
        successor (bootstrap from that s'). The pointers keep each env's stream apart, and
        a transition's successor stays stored as long as it does (the module's docstring),
        so the whole window is live whenever its first slot is."""
        rew = self.rew.index_select(0, idx)
        term = self.term.index_select(0, idx)
        last = idx
        steps = torch.ones_like(rew)
        nxt = self.next.index_select(0, idx).to(idx.dtype)
        going = (nxt < self.capacity) & ~term  # s' is the s of a stored later step
        for i in range(1, n_step):
            cur = torch.where(going, nxt, last)
            rew = rew + torch.where(going, self.rew.index_select(0, cur) * gamma**i, 0.0)
            term = torch.where(going, self.term.index_select(0, cur), term)
            steps = steps + going.to(steps.dtype)
            last = cur
            nxt = self.next.index_select(0, last).to(idx.dtype)
            going = going & (nxt < self.capacity) & ~term
        next_obs = self.states.index_select(0, self.next.index_select(0, last))
        return rew, next_obs, term.to(torch.float32), torch.pow(gamma, steps)

    def sequence(self, idx: torch.Tensor, horizon: int) -> tuple[torch.Tensor, ...]:
        """The `horizon` steps from each slot of `idx` on, following the `next` pointers
        (device ops only, as `multi_step`): actions `[B, H, A]`, rewards `[B, H]`, next
        states `[B, H, obs_dim]`, terminations `[B, H]` and the mask `[B, H]` of the steps
        that exist: step h > 0 exists when step h-1 did, did not terminate, and its s' is
        the s of a stored later step. Where a step does not exist its slot repeats the last
        one that does (its values are masked out by whoever uses them)."""
        cur = idx
        alive = torch.ones(idx.shape, dtype=torch.bool, device=idx.device)
        acts, rews, nexts, terms, masks = [], [], [], [], []
        for h in range(horizon):
            if h:
                nxt = self.next.index_select(0, cur).to(idx.dtype)
                alive = alive & (nxt < self.capacity) & ~self.term.index_select(0, cur)
                cur = torch.where(alive, nxt, cur)
            acts.append(self.act.index_select(0, cur))
            rews.append(self.rew.index_select(0, cur))
            nexts.append(self.next_obs_of(cur))
            terms.append(self.term.index_select(0, cur).to(torch.float32))
            masks.append(alive.to(torch.float32))
        return (torch.stack(acts, 1), torch.stack(rews, 1), torch.stack(nexts, 1),
                torch.stack(terms, 1), torch.stack(masks, 1))  # fmt: skip

    @property
    def next_obs(self) -> torch.Tensor:
        """s' of every slot, rebuilt (a copy, for inspection; meaningless for slots not live)."""
        return self.next_obs_of(torch.arange(self.capacity, device=self.device))

    def fields(self) -> dict[str, torch.Tensor]:
        """Every slot's transition as the fields of a Batch (s' rebuilt)."""
        return {"obs": self.obs, "act": self.act, "rew": self.rew, "next_obs": self.next_obs,
                "term": self.term}  # fmt: skip

    def nbytes(self) -> int:
        tensors = (self.states, self.act, self.rew, self.term, self.next)
        return sum(t.numel() * t.element_size() for t in tensors)

    # --- writing --------------------------------------------------------------------------
    def write(
        self, rows: dict[str, torch.Tensor | np.ndarray], n: int
    ) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]:
        """Append ``n`` transitions. Returns the slices written (``segments``) and the slices of
        transitions that left early for want of pool rows (``segments`` of slots, whose
        priorities the sampler must clear); an oversized batch keeps its last rows."""
        c = self.capacity
        skip = max(0, n - c)
        if skip:  # written and overwritten at once: only the ring position moves on
            self.written += skip
        host = {k: _host(v)[skip:] for k, v in rows.items()}
        n -= skip
        base = self.written  # transition index of row 0
        floor = base + n - c  # transitions below this are overwritten by this write
        before = max(self.live, floor)
        obs_h = host["obs"] = np.ascontiguousarray(host["obs"], dtype=np.float32)
        nxt_h = np.ascontiguousarray(host["next_obs"], dtype=np.float32)
        k_obs, k_nxt = _keys(obs_h), _keys(nxt_h)

        # s' of row r is s of a later row j of this batch: the first such j.
        ptr = np.zeros(n, dtype=np.int64)
        pooled = list(range(n))
        if n > 1:
            later: dict[int, list[int]] = {}
            for j, key in enumerate(k_obs):
                later.setdefault(key, []).append(j)
            pairs = [(r, next((j for j in later.get(key, ()) if j > r), -1))
                     for r, key in enumerate(k_nxt)]  # fmt: skip
            rs = np.array([r for r, j in pairs if j >= 0], dtype=np.int64)
            js = np.array([j for _, j in pairs if j >= 0], dtype=np.int64)
            ok = (_bits(nxt_h[rs]) == _bits(obs_h[js])).all(1)
            ptr[rs[ok]] = (base + js[ok]) % c
            linked = np.zeros(n, dtype=bool)
            linked[rs[ok]] = True
            pooled = np.flatnonzero(~linked).tolist()

        # Open ends of earlier writes that a row of this batch continues: the newest one
        # with that hash whose transition is still stored (and still holds its row).
        cand: list[tuple[int, int, int]] = []  # (owner, pool row, row j)
        for j, key in enumerate(k_obs):
            ends = self.open.get(key)
            while ends:
                owner, e = ends.pop()
                if owner >= before and self.owner[e] == owner:
                    cand.append((owner, e, j))
                    break
            if ends is not None and not ends:
                del self.open[key]
        relinks: list[tuple[int, int]] = []  # (slot, pointer)
        if cand:
            same = self._same_rows([e for _, e, _ in cand], obs_h[[j for _, _, j in cand]])
            for (owner, e, j), ok in zip(cand, same, strict=True):
                if ok:
                    self._release(e)
                    relinks.append((owner % c, (base + j) % c))
                else:  # a hash collision: it stays open
                    self.open.setdefault(k_obs[j], []).insert(0, (owner, e))
        got = [self._allocate(base + r, k_nxt[r], floor) for r in pooled]
        ptr[pooled] = c + np.asarray(got, dtype=np.int64)

        if pooled:
            self._put("extra", got, nxt_h[pooled])
        host["next"] = ptr.astype(np.int32)
        host["term"] = host["term"] != 0
        segs = segments(self.pos, n, c)
        for name in ("obs", "act", "rew", "term", "next"):
            for d, s, length in segs:
                self._put(name, slice(d, d + length), host[name][s : s + length])
        if relinks:
            slots, to = zip(*relinks, strict=True)
            self._put("next", list(slots), np.asarray(to, dtype=np.int32))

        self.written = base + n
        self.live = max(self.live, self.written - c)
        gone = self.live - before  # left early (those overwritten by this write not counted)
        self._sync_counters()
        if len(self.open) > 2 * self.reserve:
            self._rebuild_open()
        left = segments(before % c, gone, c) if gone > 0 else []
        return [(d, s + skip, length) for d, s, length in segs], left

    def _same_rows(self, rows_e: list[int], mine: np.ndarray) -> list[bool]:
        """Whether pool row rows_e[i] holds mine[i], bit for bit. One row (an env step's)
        is compared as it is: fancy indexing would cost more than the comparison."""
        if self._np is not None and len(rows_e) == 1:
            return [bool((_bits(self._np["extra"][rows_e[0]]) == _bits(mine[0])).all())]
        if self._np is not None:
            held = self._np["extra"][rows_e]
        else:
            held = self.extra.index_select(0, _index(rows_e, self.device)).cpu().numpy()
        return (_bits(held) == _bits(mine)).all(1).tolist()

    def _put(self, name: str, at: slice | list[int], values: np.ndarray) -> None:
        """Write host `values` into rows `at` of tensor `name` (converting the dtype)."""
        if self._np is not None:
            self._np[name][at] = values
            return
        t = self._t[name]
        src = torch.from_numpy(np.ascontiguousarray(values)).to(self.device, t.dtype)
        if isinstance(at, slice):
            t[at] = src
        else:
            t.index_copy_(0, _index(at, self.device), src)

    def _release(self, e: int) -> None:
        self.owner[e] = -1
        self.keys[e] = None
        self.free.append(e)

    def _allocate(self, owner: int, key: int, floor: int) -> int:
        """A pool row for transition `owner`'s s'. When none is free, rows of transitions that
        are gone (overwritten by now) are reclaimed, in row order; failing that, the oldest
        transitions leave until one is."""
        if not self.free and self.fresh < self.reserve:
            self.free.append(self.fresh)
            self.fresh += 1
        if not self.free:
            dead = np.flatnonzero((self.owner >= 0) & (self.owner < max(self.live, floor)))
            if not len(dead):
                held = self.owner[self.owner >= 0]
                self.live = int(held.min()) + 1
                dead = np.flatnonzero((self.owner >= 0) & (self.owner < self.live))
            for e in dead.tolist():
                self._release(e)
        e = self.free.popleft()
        self.owner[e] = owner
        self.keys[e] = key
        self.open.setdefault(key, []).append((owner, e))
        return e

    def _rebuild_open(self) -> None:
        """The open ends from the pool's own records (drops entries of freed rows)."""
        self.open = {}
        held = np.flatnonzero(self.owner >= self.live)
        for e in held[np.argsort(self.owner[held], kind="stable")].tolist():
            key = self.keys[e]
            assert key is not None
            self.open.setdefault(key, []).append((int(self.owner[e]), e))

    # --- checkpoints ----------------------------------------------------------------------
    def live_slots(self) -> torch.Tensor:
        """Slots of the live transitions from `start`, as the state dict orders them."""
        return (self.start + torch.arange(self.size)) % self.capacity

    def state_dict(self) -> dict[str, Any]:
        slots = self.live_slots().to(self.device)
        # Rows of transitions already gone too: the run reclaims them later, in row order, and
        # a resumed run must hand out the same rows.
        held = np.flatnonzero(self.owner >= 0)
        rows = {k: t.index_select(0, slots).cpu() for k, t in
                {"obs": self.obs, "act": self.act, "rew": self.rew, "term": self.term,
                 "next": self.next}.items()}  # fmt: skip
        return {
            "size": self.size,
            "pos": self.pos,
            "start": self.start,
            "written": self.written,
            "reserve": self.reserve,
            **rows,
            "pool_rows": torch.from_numpy(held.copy()),
            "pool_owner": torch.from_numpy(self.owner[held].copy()),
            "pool_obs": self.extra.index_select(0, torch.as_tensor(held, device=self.device)).cpu(),
            "pool_free": torch.as_tensor(list(self.free), dtype=torch.int64),
            "pool_fresh": self.fresh,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        size, written, start = int(state["size"]), int(state["written"]), int(state["start"])
        if not 0 <= size <= min(written, self.capacity):
            raise ValueError(f"size={size} does not fit capacity {self.capacity}")
        if int(state["reserve"]) != self.reserve:
            raise ValueError(f"reserve mismatch: state has {state['reserve']}, "
                             f"buffer has {self.reserve}")  # fmt: skip
        for name, dst in {"obs": self.obs, "act": self.act, "rew": self.rew, "term": self.term,
                          "next": self.next}.items():  # fmt: skip
            if state[name].shape[0] != size or state[name].shape[1:] != dst.shape[1:]:
                raise ValueError(f"{name}: shape {tuple(state[name].shape)} does not fit")
        self.clear()
        self.written, self.live = written, written - size
        if self.start != start % self.capacity:
            raise ValueError(f"start={start} does not fit written={written}, size={size}")
        slots = self.live_slots().to(self.device)
        for name, dst in {"obs": self.obs, "act": self.act, "rew": self.rew, "term": self.term,
                          "next": self.next}.items():  # fmt: skip
            dst.index_copy_(0, slots, state[name].to(self.device, dst.dtype))
        held = state["pool_rows"].long()
        self.extra.index_copy_(0, held.to(self.device), state["pool_obs"].to(self.device))
        self.owner[held.numpy()] = state["pool_owner"].numpy()
        for e, key in zip(held.tolist(), _keys(state["pool_obs"].numpy()), strict=True):
            self.keys[e] = key
        self.free = deque(state["pool_free"].tolist())
        self.fresh = int(state["pool_fresh"])
        self._rebuild_open()
        self._sync_counters()

    def load_rows(self, state: dict[str, Any]) -> list[tuple[int, int, int]]:
        """Transitions stored with s' per slot (replay state version 1), written again oldest
        first into the slots they had, so per-slot state (priorities) still fits. Returns the
        slices of those that did not fit the pool (see `write`)."""
        size, pos = int(state["size"]), int(state["pos"])
        if not 0 <= size <= self.capacity or not 0 <= pos < self.capacity:
            raise ValueError(f"size={size}, pos={pos} do not fit capacity {self.capacity}")
        self.clear()
        first = 0 if size < self.capacity else pos
        order = (first + torch.arange(size)) % self.capacity
        self.written = self.live = first
        self._sync_counters()
        if not size:
            return []
        names = ("obs", "act", "rew", "next_obs", "term")
        return self.write({k: state[k][order] for k in names}, size)[1]


def rows_of(state: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The transitions of a storage state dict in its order (from `start`), with s' rebuilt:
    obs, act, rew, next_obs, term."""
    n, c, start = int(state["size"]), int(state["capacity"]), int(state["start"])
    obs = state["obs"]
    p = state["next"].long()
    at = (p - start) % c  # the row of the pointed-at slot in the state's order
    pool = torch.zeros(int(state["reserve"]), obs.shape[1], dtype=obs.dtype)
    pool[state["pool_rows"].long()] = state["pool_obs"]
    in_ring = obs[at.clamp(max=max(n - 1, 0))] if n else obs
    nxt = torch.where((p < c).unsqueeze(1), in_ring, pool[(p - c).clamp(min=0)])
    return {"obs": obs, "act": state["act"], "rew": state["rew"], "next_obs": nxt,
            "term": state["term"]}  # fmt: skip
