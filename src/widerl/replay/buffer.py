"""Replay buffer: one preallocated tensor storage, a uniform or a prioritized sampler.

Storage and sampling are separate (the storage x sampler split TorchRL uses): ``TensorStorage``
(storage.py: each observation stored once) only knows rows and the ring position; a
sampler only chooses row indices. ``ReplayBuffer`` is the facade the agents use.

Prioritized sampling is the proportional variant of Schaul et al. 2016 ("Prioritized Experience
Replay", sec. 3.3): ``P(i) = p_i ** alpha / sum_j p_j ** alpha`` with ``p_i = |delta_i| + eps``,
new transitions enter with the largest priority seen so far unless the caller gives an initial
priority, which is how Ape-X (Horgan et al. 2018) actors hand over locally computed priorities.

``sample`` and ``update_priorities`` never read a tensor value on the host: the learner can run
them on CUDA every step without stalling the stream. Host control flow uses only python ints
that the buffer tracks itself (``size``, ``pos``).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
import torch

import widerl.replay.generators as generators
from widerl.config import registries
from widerl.replay.storage import TensorStorage, compact_reserve, rows_of, storage_nbytes
from widerl.replay.sumtree import SumTree, tree_nbytes

__all__ = [
    "TRANSITION_FIELDS",
    "Batch",
    "PrioritizedSampler",
    "ReplayBuffer",
    "TensorStorage",
    "UniformSampler",
    "compact_reserve",
    "replay_nbytes",
    "replay_rows",
]

TensorLike = torch.Tensor | np.ndarray

# 2: each observation once (replay_storage); 1: next_obs in every slot, converted on loading.
_STATE_VERSION = 2


def replay_nbytes(
    obs_dim: int, act_dim: int, capacity: int, prioritized: bool, reserve: int | None = None
) -> int:
    """What a ``ReplayBuffer`` of these sizes allocates (``TensorStorage``'s slots and pool
    of `reserve` rows, plus the sampler's sum tree), computed without allocating it: the
    check before a run starts."""
    tree = tree_nbytes(capacity) + 4 if prioritized else 0  # + the running max priority
    return storage_nbytes(obs_dim, act_dim, capacity, reserve) + tree


# The fields of a transition, in the order storage, chunks and batches hold them.
TRANSITION_FIELDS = ("obs", "act", "rew", "next_obs", "term")


class Batch(NamedTuple):
    obs: torch.Tensor
    act: torch.Tensor
    rew: torch.Tensor  # with --n-step K: the discounted sum of up to K rewards
    next_obs: torch.Tensor  # with --n-step K: the state the target bootstraps from
    term: torch.Tensor
    weight: torch.Tensor | None
    idx: torch.Tensor
    # With --n-step K: gamma^k of each sample's bootstrap (k <= K steps taken); None: gamma.
    discount: torch.Tensor | None = None
    # For a feature learner trained over a horizon H (MR.Q's encoder): the H steps from each
    # sampled transition on, along its env's stream (storage.sequence); None otherwise.
    seq: Steps | None = None


class Steps(NamedTuple):
    """H consecutive steps of one env from each sampled transition (step 0 is the sampled
    one): actions `[..., H, A]`, rewards and terminations `[..., H]`, next states
    `[..., H, obs_dim]`, and `mask` `[..., H]`: 1 where step h exists (no termination before
    it and each successor stored; a time-limit end or the replay's newest step stops it)."""

    act: torch.Tensor
    rew: torch.Tensor
    next_obs: torch.Tensor
    term: torch.Tensor
    mask: torch.Tensor


def _resolve_device(device: torch.device | str) -> torch.device:
    device = torch.device(device)
    # A generator must live on a concrete device; "cuda" means the current one.
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return device


def _fit(x: TensorLike, name: str, shape: tuple[int, ...]) -> TensorLike:
    """A tensor or an array of `shape`, a trailing 1 dropped; otherwise a ValueError naming
    `name`."""
    got = tuple(x.shape)
    if got == shape:
        return x
    if math.prod(got) == math.prod(shape) and len(got) == len(shape) + 1 and got[-1] == 1:
        return x.reshape(shape)
    raise ValueError(f"{name}: expected shape {shape}, got {got}")


def _as_tensor(x: TensorLike | float, name: str, shape: tuple[int, ...]) -> torch.Tensor:
    return _fit(torch.as_tensor(x), name, shape).detach()  # type: ignore[union-attr]


def _as_rows(x: TensorLike | float, name: str, shape: tuple[int, ...]) -> TensorLike:
    """`x` checked as `_as_tensor` checks it, and kept as it is: the storage writes host
    arrays (storage.py), so a numpy row is never made a tensor only to be made numpy again
    (a quarter of an env step's replay write did that)."""
    if isinstance(x, torch.Tensor):
        return _as_tensor(x, name, shape)
    return _fit(np.asarray(x), name, shape)


def draw_uniform(generator: torch.Generator, batch_size: int) -> torch.Tensor:
    """The random numbers of one batch, u ~ U[0, 1) in float64, drawn on the host side of a
    learning step so that the step itself is a deterministic function (and one graph)."""
    return torch.rand(batch_size, dtype=torch.float64, generator=generator, device=generator.device)


class UniformSampler:
    """Indices i.i.d. uniform over the stored rows; no importance weights."""

    @classmethod
    def make(cls, capacity: int, generator: torch.Generator, device: torch.device,
             **priorities: float) -> UniformSampler:  # fmt: skip
        """`priorities` (alpha, eps, beta) are the prioritized sampler's; uniform has none."""
        return cls(capacity, generator, device)

    def __init__(self, capacity: int, generator: torch.Generator, device: torch.device) -> None:
        self.capacity = capacity
        self.generator = generator
        self.device = device

    def choose(
        self, u: torch.Tensor, size: torch.Tensor, start: torch.Tensor, beta: torch.Tensor | float
    ) -> tuple[torch.Tensor, None]:
        """The floor(u * size)-th live row from `start` for each u; float64 keeps every row
        equally likely."""
        k = torch.minimum((u * size).to(torch.int64), size - 1)
        return torch.remainder(k + start, self.capacity), None

    def on_write(
        self, segs: list[tuple[int, int, int]], n: int, priority: torch.Tensor | None
    ) -> None:
        pass

    def on_leave(self, segs: list[tuple[int, int, int]]) -> None:
        pass

    def update(self, idx: torch.Tensor, td_abs: torch.Tensor) -> None:
        pass

    def nbytes(self) -> int:
        return 0

    def beta(self, progress: float) -> float:
        return 0.0

    def state_dict(self, slots: torch.Tensor) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any], slots: torch.Tensor) -> None:
        pass


class PrioritizedSampler:
    """Proportional prioritization (Schaul et al. 2016) over a b-ary ``SumTree``."""

    @classmethod
    def make(cls, capacity: int, generator: torch.Generator, device: torch.device,
             **priorities: float) -> PrioritizedSampler:  # fmt: skip
        return cls(capacity, generator, device, **priorities)

    def __init__(
        self,
        capacity: int,
        generator: torch.Generator,
        device: torch.device,
        alpha: float = 0.6,
        eps: float = 1e-6,
        beta: float = 0.4,
    ) -> None:
        if alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {alpha}")
        if eps < 0:
            raise ValueError(f"eps must be >= 0, got {eps}")
        self.alpha = float(alpha)
        self.eps = float(eps)
        self.beta0 = float(beta)
        self.generator = generator
        self.device = device
        self.tree = SumTree(capacity, device=device)
        # Kept on the device so that update() never has to read it back (Schaul et al. 2016
        # start new transitions at the running max priority, initially 1).
        self.max_priority = torch.ones((), dtype=torch.float32, device=device)

    def beta(self, progress: float) -> float:
        """The importance-sampling exponent at `progress` in [0, 1] of the run: annealed
        linearly from its initial value to 1 (Schaul et al. 2016, sec. 3.4)."""
        return self.beta0 + (1.0 - self.beta0) * min(max(progress, 0.0), 1.0)

    def _raw(self, td_abs: torch.Tensor) -> torch.Tensor:
        p = td_abs.detach().to(device=self.device, dtype=torch.float32).reshape(-1).abs()
        return p + self.eps

    def choose(
        self, u: torch.Tensor, size: torch.Tensor, start: torch.Tensor, beta: torch.Tensor | float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The leaf whose prefix-sum interval holds u * total (P(i) proportional to p_i^alpha),
        and importance weights for exponent `beta`."""
        idx = self.tree.find(u * self.tree.total())
        v = self.tree.leaves.index_select(0, idx).to(torch.float64)
        # (size * P(i)) ** -beta normalised by its batch max equals (v_i / min_batch v) ** -beta:
        # size and the tree total cancel, which saves ops and any read of the total.
        weight = (v / v.amin()).pow(-beta).to(torch.float32)
        return idx, weight

    def on_write(
        self, segs: list[tuple[int, int, int]], n: int, priority: torch.Tensor | None
    ) -> None:
        if priority is None:
            values = self.max_priority.pow(self.alpha).expand(n)
        else:
            p = self._raw(priority)
            self.max_priority.copy_(torch.maximum(self.max_priority, p.amax()))
            values = p.pow(self.alpha)
        for d, s, length in segs:
            self.tree.set_range(d, values[s : s + length])

    def on_leave(self, segs: list[tuple[int, int, int]]) -> None:
        """Transitions that left the storage early are never drawn again."""
        for d, _, length in segs:
            self.tree.set_range(d, torch.zeros(length, device=self.device))

    def update(self, idx: torch.Tensor, td_abs: torch.Tensor) -> None:
        idx = idx.to(device=self.device, dtype=torch.int64).reshape(-1)
        if idx.numel() == 0:
            return
        p = self._raw(td_abs)
        if p.shape != idx.shape:
            raise ValueError(f"idx has {idx.shape[0]} entries but td_abs has {p.shape[0]}")
        self.max_priority.copy_(torch.maximum(self.max_priority, p.amax()))
        self.tree.update(idx, p.pow(self.alpha))

    def nbytes(self) -> int:
        return self.tree.nbytes() + self.max_priority.element_size()

    def state_dict(self, slots: torch.Tensor) -> dict[str, Any]:
        """Priorities of the live `slots`, in the storage state's order."""
        return {
            "priorities": self.tree.leaves.index_select(0, slots.to(self.device)).cpu(),
            "max_priority": self.max_priority.to("cpu", copy=True),
        }

    def load_state_dict(self, state: dict[str, Any], slots: torch.Tensor) -> None:
        leaves = state["priorities"]
        if leaves.shape != slots.shape:
            raise ValueError(f"priorities: shape {tuple(leaves.shape)} does not match size "
                             f"{slots.shape[0]}")  # fmt: skip
        self.tree.leaves.zero_()
        self.tree.leaves.index_copy_(0, slots.to(self.device), leaves.to(self.device))
        self.tree.rebuild()
        self.max_priority.copy_(state["max_priority"])


class LAPSampler(PrioritizedSampler):
    """Loss-Adjusted Prioritization (Fujimoto et al. 2020, Sec. 5; TD7's sampler): priorities
    p_i = max(|delta_i|, 1)^alpha, i.e. max(|delta_i|^alpha, 1), and no importance weights.
    The floor of 1 keeps every transition drawable; the bias that prioritized sampling puts on
    the loss is what LAP's paper removes by pairing it with a Huber loss of threshold 1
    (`--critic-loss huber`): sampled in proportion to max(|delta|, 1) and weighted by Huber,
    the expected gradient is the mean squared error's under uniform sampling."""

    MIN_PRIORITY = 1.0

    def beta(self, progress: float) -> float:
        return 0.0

    def _raw(self, td_abs: torch.Tensor) -> torch.Tensor:
        p = td_abs.detach().to(device=self.device, dtype=torch.float32).reshape(-1).abs()
        return p.clamp(min=self.MIN_PRIORITY)

    def choose(
        self, u: torch.Tensor, size: torch.Tensor, start: torch.Tensor, beta: torch.Tensor | float
    ) -> tuple[torch.Tensor, None]:
        """The leaf whose prefix-sum interval holds u * total; no importance weights."""
        return self.tree.find(u * self.tree.total()), None


class ReplayBuffer:
    """Ring replay buffer with uniform or proportional prioritized sampling.

    ``add`` takes batches (leading dim ``n``), numpy arrays or tensors on any device;
    ``sample`` returns a ``Batch`` on the buffer's device. With ``prioritized=True`` the learner
    feeds TD errors back through ``update_priorities``.
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        capacity: int,
        device: torch.device | str = "cpu",
        prioritized: bool = False,
        alpha: float = 0.6,
        eps: float = 1e-6,
        seed: int = 0,
        beta: float = 0.4,
        reserve: int | None = None,
        n_step: int = 1,
        gamma: float = 0.99,
        sampler: str | None = None,
        horizon: int = 0,
    ) -> None:
        """`reserve`: rows for next observations that no later transition's observation
        holds (episode ends, storage.py); by default one per slot, which any data fits.
        A run's replay gets ``compact_reserve(capacity)``, 1/64 of it. `n_step` > 1: batches
        hold n-step returns discounted by `gamma` (storage.multi_step). `sampler`: a name of
        the sampler registry (uniform, prioritized, lap); by default `prioritized` picks.
        `horizon` > 0: batches also hold the `horizon` steps from each sampled one (`seq`)."""
        self.n_step, self.gamma, self.horizon = int(n_step), float(gamma), int(horizon)
        self.device = _resolve_device(device)
        self.capacity = int(capacity)
        self.sampler_name = sampler or ("prioritized" if prioritized else "uniform")
        self.prioritized = self.sampler_name != "uniform"  # priorities are kept and updated
        self.storage = TensorStorage(obs_dim, act_dim, self.capacity, self.device, reserve)
        self.generator = generators.device_generator(self.device, seed)
        sampler = registries.load("sampler", self.sampler_name)
        self.sampler: UniformSampler | PrioritizedSampler = sampler.make(
            self.capacity, self.generator, self.device, alpha=alpha, eps=eps, beta=beta
        )
        self.alpha = float(alpha)
        self.eps = float(eps)

    @property
    def obs_dim(self) -> int:
        return self.storage.obs_dim

    @property
    def act_dim(self) -> int:
        return self.storage.act_dim

    @property
    def size(self) -> int:
        return self.storage.size

    @property
    def pos(self) -> int:
        return self.storage.pos

    def slots(self, k: torch.Tensor) -> torch.Tensor:
        """Slots of the stored transitions at positions `k` in 0..size-1 (the storage's live
        run of slots need not start at slot 0)."""
        return self.storage.slots(k.to(self.device))

    def __len__(self) -> int:
        return self.storage.size

    def add(
        self,
        obs: TensorLike,
        act: TensorLike,
        rew: TensorLike,
        next_obs: TensorLike,
        term: TensorLike,
        priority: TensorLike | None = None,
    ) -> None:
        """Append ``n`` transitions (every argument has leading dim ``n``).

        ``term`` is 1/True only for true terminations; time-limit truncations must be stored as
        0 so the critic still bootstraps through them. ``priority`` are raw initial priorities
        (``|td|``-like, before ``** alpha``; ``eps`` is added), e.g. computed by Ape-X actors;
        without them new transitions get the running max priority. Ignored when uniform.

        Rows may come from several envs, interleaved in any way: which row's observation is
        another's next observation is found from the values (storage.py).
        """
        shape = tuple(obs.shape) if isinstance(obs, torch.Tensor) else np.shape(obs)
        if len(shape) != 2 or shape[0] < 1:
            raise ValueError(f"obs: expected shape (n, {self.obs_dim}), got {shape}")
        n = int(shape[0])
        rows = {
            "obs": _as_rows(obs, "obs", (n, self.obs_dim)),
            "act": _as_rows(act, "act", (n, self.act_dim)),
            "rew": _as_rows(rew, "rew", (n,)),
            "next_obs": _as_rows(next_obs, "next_obs", (n, self.obs_dim)),
            "term": _as_rows(term, "term", (n,)),
        }
        prio = None if priority is None else _as_tensor(priority, "priority", (n,))
        segs, left = self.storage.write(rows, n)
        self.sampler.on_write(segs, n, prio)
        self.sampler.on_leave(left)

    def sample(self, batch_size: int, beta: float = 0.4) -> Batch:
        """Draw ``batch_size`` transitions i.i.d. (with replacement).

        Prioritized: ``P(i) = p_i^alpha / sum_j p_j^alpha`` and importance weights
        ``(size * P(i)) ** -beta`` divided by their batch max (Schaul et al. 2016, sec. 3.4).
        """
        return self.gather(self.draw(batch_size), beta)

    def draw(self, batch_size: int) -> torch.Tensor:
        """The random numbers of one batch (from the buffer's own generator)."""
        if self.size == 0:
            raise RuntimeError("cannot sample from an empty replay buffer")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        return draw_uniform(self.generator, batch_size)

    def gather(self, u: torch.Tensor, beta: torch.Tensor | float = 0.4) -> Batch:
        """The batch that the numbers `u` of `draw` select: device ops only, no Python value
        of the buffer's that changes between steps, so it can sit inside a compiled step."""
        idx, weight = self.sampler.choose(u, self.storage.size_t, self.storage.start_t, beta)
        seq = None if not self.horizon else Steps(*self.storage.sequence(idx, self.horizon))
        if self.n_step == 1:
            return Batch(*self.storage.gather(idx), weight, idx, seq=seq)
        obs, act = self.storage.obs.index_select(0, idx), self.storage.act.index_select(0, idx)
        rew, next_obs, term, discount = self.storage.multi_step(idx, self.n_step, self.gamma)
        return Batch(obs, act, rew, next_obs, term, weight, idx, discount, seq)

    def beta(self, progress: float) -> float:
        """The sampler's importance-sampling exponent at `progress` (0..1) of the run."""
        return self.sampler.beta(progress)

    def update_priorities(self, idx: torch.Tensor, td_abs: torch.Tensor) -> None:
        """Set ``p_i = |td_i| + eps`` for the sampled ``idx``; a no-op for uniform buffers.

        ``idx`` must come from ``sample`` since the last ``add`` that could have overwritten
        those rows; duplicate indices are fine (one of the values is kept).
        """
        self.sampler.update(idx, td_abs)

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "version": _STATE_VERSION,
            "obs_dim": self.obs_dim,
            "act_dim": self.act_dim,
            "capacity": self.capacity,
            "prioritized": self.prioritized,
            "sampler": self.sampler_name,
            "alpha": self.alpha,
            "eps": self.eps,
            "rng_device": self.device.type,
            "rng_state": self.generator.get_state().cpu(),
            **self.storage.state_dict(),
        }
        state.update(self.sampler.state_dict(self.storage.live_slots()))
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("version") not in (1, _STATE_VERSION):
            raise ValueError(f"unsupported replay state version {state.get('version')!r}")
        for key in ("obs_dim", "act_dim", "capacity", "prioritized"):
            if state[key] != getattr(self, key):
                raise ValueError(
                    f"{key} mismatch: state has {state[key]}, buffer has {getattr(self, key)}"
                )
        named = state.get("sampler", "prioritized" if state["prioritized"] else "uniform")
        if named != self.sampler_name:  # LAP's and PER's priorities mean different things
            raise ValueError(f"sampler mismatch: state has {named}, buffer has {self.sampler_name}")
        # Stored priorities are p ** alpha; reinterpreting them under another alpha would
        # silently change the sampling distribution.
        if self.prioritized and state["alpha"] != self.alpha:
            raise ValueError(f"alpha mismatch: state has {state['alpha']}, buffer has {self.alpha}")
        if state["version"] == 1:
            # s' in every slot: the transitions are written again, oldest first, into their
            # slots; priorities were kept by slot from 0.
            left = self.storage.load_rows(state)
            self.sampler.load_state_dict(state, torch.arange(int(state["size"])))
            self.sampler.on_leave(left)
        else:
            self.storage.load_state_dict(state)
            self.sampler.load_state_dict(state, self.storage.live_slots())
        # Saved on another device type, the state seeds the generator (generators.py).
        saved = {"device": state["rng_device"], "state": state["rng_state"]}
        generators.restore_generator(self.generator, saved)

    def nbytes(self) -> int:
        """Bytes held by the storage and sampler tensors."""
        return self.storage.nbytes() + self.sampler.nbytes()


def replay_rows(state: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The stored transitions of a ``ReplayBuffer.state_dict()`` of any version, with s'
    rebuilt: obs, act, rew, next_obs, term (for analyses of a run's checkpoint)."""
    if state.get("version") == 1:
        n = int(state["size"])
        return {k: state[k][:n] for k in TRANSITION_FIELDS}
    return rows_of(state)
