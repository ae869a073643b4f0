"""The peers `widerl bench` times next to our update: Stable-Baselines3 (PyTorch) and sbx
(Stable Baselines Jax, jit-compiled JAX), each with our critics' and policy's widths and depths,
its own default hyperparameters otherwise, and its replay buffer filled directly with the
transitions ours holds. A peer runs the same method where its library has one (`peer_method`):
sbx's CrossQ for `--algo crossq` and sbx's SAC with its SimBa networks for `--arch simba`;
otherwise its plain MLP SAC/TD3.

A peer times one *mode* per call of `time(mode, n)`: ``many_per_call`` is one
``train(gradient_steps=n)`` call (SB3 loops in Python; sbx runs the n updates in one compiled
``fori_loop``), ``one_per_call`` is n calls of ``train(gradient_steps=1)``, as a training loop
that alternates env steps and updates calls it. SB3 is timed many per call only (its
``train`` is a Python loop over the same update either way); sbx both ways.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

import numpy as np
import torch

from widerl.config import ConfigError

__all__ = [
    "MANY",
    "ONE",
    "PEERS",
    "Peer",
    "count_jax_compiles",
    "make_peer",
    "make_sb3_model",
    "peer_method",
    "peer_missing",
    "start_jax",
]

MANY, ONE = "many_per_call", "one_per_call"
# --peer NAME -> (importable module, what the result calls it, the modes it is timed in).
PEERS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "sb3": ("stable_baselines3", "stable-baselines3", (MANY,)),
    # One update per call first: it is what a training loop pays, and the target.
    "sbx": ("sbx", "sbx", (ONE, MANY)),
}


def peer_missing(name: str) -> str | None:
    """None if the peer imports, else a one-line reason with the install command."""
    module = PEERS[name][0]
    try:
        __import__(module)
    except ImportError as e:
        return (
            f"--peer {name} needs {PEERS[name][1]} ({e}): pip install 'widerl[bench]' "
            "(or pass --peer none)"
        )
    return None


def _import(name: str) -> Any:
    reason = peer_missing(name)
    if reason is not None:  # the peers are an optional extra, not dependencies
        raise ImportError(reason.replace("'widerl[bench]'", "widerl[bench]"))
    return __import__(PEERS[name][0])


def _box_env(obs_dim: int, act_dim: int) -> Any:
    """A gymnasium env that only declares Box spaces of the requested sizes: SB3 and sbx need
    an env to build their policies and buffers, and the benchmark never steps it."""
    import gymnasium as gym

    class BoxEnv(gym.Env):
        def __init__(self) -> None:
            self.observation_space = gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32)
            self.action_space = gym.spaces.Box(-1.0, 1.0, (act_dim,), np.float32)

        def reset(
            self, *, seed: int | None = None, options: dict | None = None
        ) -> tuple[np.ndarray, dict]:
            super().reset(seed=seed)
            return self.observation_space.sample(), {}

        def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
            return self.observation_space.sample(), 0.0, False, False, {}

    return BoxEnv()


def _fill(model: Any, data: dict[str, torch.Tensor]) -> None:
    """Put ``data`` into the model's SB3 ReplayBuffer (sbx uses SB3's) and silence its logger."""
    from stable_baselines3.common.logger import Logger

    # train() records to the logger; a Logger without output formats discards the records and,
    # unlike logger.configure(), does not create a folder under /tmp.
    model.set_logger(Logger(folder=None, output_formats=[]))
    rb = model.replay_buffer
    # SB3 stores (buffer_size, n_envs, ...) numpy arrays; one env here.
    rb.observations[:] = data["obs"].numpy()[:, None, :]
    rb.next_observations[:] = data["next_obs"].numpy()[:, None, :]
    rb.actions[:] = data["act"].numpy()[:, None, :]
    rb.rewards[:] = data["rew"].numpy()[:, None]
    rb.dones[:] = data["term"].numpy()[:, None]
    rb.timeouts[:] = 0.0
    rb.pos, rb.full = 0, True


def peer_method(name: str, algo: str, arch: str) -> tuple[str, str]:
    """(the peer library's algorithm class, its policy) for our ``algo`` and ``arch``: the same
    method where the library has it, else its MLP SAC or TD3 (our other bodies have no
    counterpart in either library: the ratio then compares our body with a peer's MLP)."""
    if algo == "crossq":
        if name == "sbx":
            return "CrossQ", "MlpPolicy"  # Batch Renormalization, no targets (sbx/crossq)
        raise ConfigError(
            f"--peer {name} has no CrossQ (Stable-Baselines3 itself has SAC and TD3); "
            "use --peer sbx or --peer none"
        )
    if name == "sbx" and algo == "sac" and arch == "simba":
        # sbx's SimBa networks (sbx.common.policies): input Dense, residual blocks
        # x + Dense(4d -> d)(relu(Dense(d -> 4d)(LayerNorm(x)))), a final LayerNorm; AdamW.
        return "SAC", "SimbaPolicy"
    return algo.upper(), "MlpPolicy"


def make_sb3_model(
    algo: str,
    units: int,
    layers: int,
    obs_dim: int,
    act_dim: int,
    batch_size: int,
    device: torch.device,
    data: dict[str, torch.Tensor],
    seed: int,
    actor_arch: list[int] | None = None,
) -> Any:
    """SB3 SAC/TD3 with our width and depth (the policy's: ``actor_arch``, default the
    critics') and its buffer holding ``data``."""
    sb3 = _import("sb3")
    cls = getattr(sb3, peer_method("sb3", algo, "mlp")[0])
    model = cls(
        "MlpPolicy",
        _box_env(obs_dim, act_dim),
        learning_starts=0,
        batch_size=batch_size,
        # Only as large as the data: SB3's default 1e6 would allocate obs and next_obs for a
        # million rows (0.8 GB at Ant's 105 dims) and change nothing about an update.
        buffer_size=data["obs"].shape[0],
        policy_kwargs={"net_arch": _net_arch(units, layers, actor_arch)},
        device=str(device),
        seed=seed,
        verbose=0,
    )
    _fill(model, data)
    return model


def _net_arch(units: int, layers: int, actor_arch: list[int] | None) -> Any:
    """SB3/sbx's net_arch: one list for policy and critics alike, or pi and qf apart. For the
    SimBa policies every entry is one residual block of that width."""
    critic = [units] * layers
    return critic if actor_arch in (None, critic) else {"pi": actor_arch, "qf": critic}


# --- JAX: which threads, which device, and counting its compilations ----------------------
_jax_started: tuple[int | None, str] | None = None


def start_jax(threads: int | None, platform: str) -> None:
    """(Re)start JAX's backend on ``platform`` with an intra-op pool of ``threads`` threads
    (None: JAX's default, one per core).

    XLA's CPU client has no thread-count option; it sizes its pools by the CPUs the process may
    run on when the client is created. So the client is created while the calling thread is
    pinned to ``threads`` cores, and every thread is unpinned again right after: the pool keeps
    its size, and the scheduler may still move its threads between cores, as it moves torch's.
    A later call with other settings drops the old client (jax.extend.backend.clear_backends).
    """
    global _jax_started
    import jax
    from jax.extend.backend import clear_backends

    if _jax_started == (threads, platform):
        return
    clear_backends()
    jax.config.update("jax_platforms", platform)
    if not hasattr(os, "sched_setaffinity"):  # not on every platform: JAX's default pool
        jax.devices()
    else:
        cores = os.sched_getaffinity(0)
        try:
            if threads is not None and threads < len(cores):
                os.sched_setaffinity(0, set(sorted(cores)[:threads]))
            jax.devices()
        finally:
            # Threads the client started inherited the pinned mask.
            for tid in os.listdir("/proc/self/task"):
                with suppress(OSError):  # a thread that ended meanwhile
                    os.sched_setaffinity(int(tid), cores)
    _jax_started = (threads, platform)


@contextmanager
def count_jax_compiles() -> Iterator[list[float]]:
    """Collects the duration of every XLA compilation in the block (none may fall in a timed
    round: the result reports the count, and the tests check it is 0)."""
    import jax.monitoring

    compiles: list[float] = []

    def listener(event: str, duration: float, **_: Any) -> None:
        if event == "/jax/core/compile/backend_compile_duration":
            compiles.append(duration)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield compiles
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


# --- the peers ----------------------------------------------------------------------------
class Peer:
    """A peer's model and how to time it; `modes` in the order the result reports them."""

    def __init__(self, name: str, model: Any, batch_size: int, sync: Callable[[], None]) -> None:
        _, self.library, self.modes = PEERS[name]
        self.name, self.model, self.batch_size, self._sync = name, model, batch_size, sync
        self.version: str = _import(name).__version__
        self.info: dict[str, Any] = {}

    def time(self, mode: str, n: int) -> float:
        """Updates per second over ``n`` updates in ``mode``."""
        self._sync()
        t0 = time.perf_counter()
        if mode == MANY:
            self.model.train(gradient_steps=n, batch_size=self.batch_size)
        else:
            for _ in range(n):
                self.model.train(gradient_steps=1, batch_size=self.batch_size)
        self._sync()
        return n / (time.perf_counter() - t0)

    def warm_up(self, updates: int, warmup_updates: int) -> None:
        """First calls allocate optimizer state and warm allocators and BLAS code paths;
        ``updates`` is what a timed many-per-call round will pass."""
        if warmup_updates:
            for mode in self.modes:
                self.time(mode, warmup_updates)


class SbxPeer(Peer):
    """sbx's `train` samples on the host, then runs a jit-compiled function; JAX dispatches
    asynchronously, so the clock is read only after the train states are ready."""

    def __init__(self, model: Any, batch_size: int) -> None:
        super().__init__("sbx", model, batch_size, self._block)

    def _block(self) -> None:
        import jax

        jax.block_until_ready((self.model.policy.qf_state, self.model.policy.actor_state))

    def warm_up(self, updates: int, warmup_updates: int) -> None:
        """JAX compiles `_train` once per static argument set: per number of gradient steps
        per call and per policy-delay phase ((n_updates + 1) % policy_delay). The burn-in calls
        each mode in every phase with the timed step counts, so that no compilation is timed."""
        delay = getattr(self.model, "policy_delay", 1)
        for mode in self.modes:
            n = 1 if mode == ONE else updates
            for phase in range(delay):
                self.model._n_updates = phase  # only the phase and sbx's logger read it
                self.time(mode, n)
        if warmup_updates:
            self.time(ONE, warmup_updates)
        self.model._n_updates = 0


def make_peer(
    name: str,
    algo: str,
    units: int,
    layers: int,
    obs_dim: int,
    act_dim: int,
    batch_size: int,
    device: torch.device,
    data: dict[str, torch.Tensor],
    seed: int,
    sync: Callable[[], None],
    threads: int | None,
    arch: str = "mlp",
    actor_arch: list[int] | None = None,
) -> Peer:
    """The peer ``name`` (a key of PEERS) for our ``algo`` and ``arch`` (`peer_method`) with
    critics of ``units`` x ``layers`` and a policy of ``actor_arch`` (default the same)."""
    cls_name, policy = peer_method(name, algo, arch)
    net_arch = _net_arch(units, layers, actor_arch)
    arch_info = {
        "peer_method": f"{cls_name} {policy}",
        "peer_net_arch": [units] * layers,  # the critics'
        "peer_actor_net_arch": actor_arch or [units] * layers,
    }
    if name == "sb3":
        model = make_sb3_model(algo, units, layers, obs_dim, act_dim, batch_size, device, data,
                               seed, actor_arch)  # fmt: skip
        peer = Peer("sb3", model, batch_size, sync)
        peer.info = {
            "peer_threads": torch.get_num_threads(),
            "peer_device": str(device),
            **arch_info,
        }
        return peer
    sbx = _import("sbx")
    platform = "cuda" if device.type == "cuda" else "cpu"
    try:
        start_jax(threads, platform)
    except RuntimeError as e:  # no CUDA build of jaxlib: the bench extra installs the CPU one
        raise ConfigError(
            f"--peer sbx on --device {device.type}: JAX has no {platform} backend here ({e}); "
            "use --device cpu or --peer sb3"
        ) from None
    import jax

    model = getattr(sbx, cls_name)(
        policy,
        _box_env(obs_dim, act_dim),
        learning_starts=0,
        batch_size=batch_size,
        buffer_size=data["obs"].shape[0],
        policy_kwargs={"net_arch": net_arch},
        seed=seed,
        verbose=0,
    )
    _fill(model, data)
    peer = SbxPeer(model, batch_size)
    peer.info = {
        "peer_threads": threads,
        "peer_device": str(jax.devices()[0]),
        **arch_info,
        "jax_version": jax.__version__,
    }
    return peer
