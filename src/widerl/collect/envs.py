"""Environment construction: checked ids, actions rescaled to [-1, 1], vectorised stepping.

Termination and truncation stay separate all the way to the replay buffer: only a real
termination stops bootstrapping (a time-limit end is not a terminal state).
"""

from __future__ import annotations

import difflib
import os
import sys
from copy import deepcopy
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector.utils import concatenate
from gymnasium.wrappers import FlattenObservation, RescaleAction

from widerl.collect.playground import PREFIX  # (the module imports JAX only when used)
from widerl.config import ConfigError
from widerl.errors import first_line

# DeepMind Control Suite tasks through Gymnasium (shimmy): `dm_control/<domain>-<task>-v0`.
DMC_PREFIX = "dm_control/"
# MuJoCo Playground envs (JAX), `playground/<EnvName>`: collect/playground.py.
PLAYGROUND_PREFIX = PREFIX


def _register_dmc() -> None:
    """Put shimmy's DeepMind Control ids into Gymnasium's registry (the `dmc` extra)."""
    # dm_control picks its rendering backend on import: EGL renders offscreen on a headless
    # machine (GLFW would warn there is no display).
    os.environ.setdefault("MUJOCO_GL", "egl")
    try:
        import shimmy
    except ImportError:
        raise ConfigError(
            "DeepMind Control tasks need shimmy and dm-control: pip install 'widerl[dmc]'"
        ) from None
    gym.register_envs(shimmy)


# What Gymnasium raises for an env (or its renderer) whose package is not installed.
MISSING_PACKAGE = (gym.error.DependencyNotInstalled, ImportError)


def _make(env_id: str, **kw: object) -> gym.Env:
    """gym.make, with DeepMind Control's dict observations flattened into one vector (the
    order of the task's observation dict; BRO and SimBa use the same flat states). An env
    registered without its package installed (Gymnasium's Box2D tasks, say) is a ConfigError
    naming the package."""
    if env_id.startswith(PLAYGROUND_PREFIX):
        from widerl.collect.playground import PlaygroundEnv

        return PlaygroundEnv(env_id, **kw)  # type: ignore[arg-type]
    dmc = env_id.startswith(DMC_PREFIX)
    if dmc:
        _register_dmc()
    try:
        env = gym.make(env_id, **kw)
    except MISSING_PACKAGE as e:
        raise ConfigError(f"env {env_id!r} cannot be made here: {first_line(e)}") from None
    return FlattenObservation(env) if dmc else env


def check_env_id(env_id: str) -> None:
    """Raise ConfigError unless `env_id` is a registered env with a continuous action space."""
    if env_id.startswith(PLAYGROUND_PREFIX):
        from widerl.collect.playground import check_name

        check_name(env_id)  # every Playground env has continuous actions
        return
    if env_id.startswith(DMC_PREFIX):
        _register_dmc()
    if env_id not in gym.registry:
        close = difflib.get_close_matches(env_id, list(gym.registry), n=4, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(
            f"unknown env id {env_id!r} (--env){hint} (continuous-control ids include "
            "Hopper-v5, Walker2d-v5, HalfCheetah-v5, Ant-v5, Humanoid-v5, "
            "InvertedPendulum-v5, Pendulum-v1, dm_control/cheetah-run-v0)"
        )
    env = _make(env_id)
    try:
        if not isinstance(env.action_space, gym.spaces.Box):
            raise ConfigError(
                f"env {env_id!r} has a {type(env.action_space).__name__} action space; "
                "widerl needs continuous (Box) actions"
            )
    finally:
        env.close()


def check_stored_env(env_id: str, run_dir: Path, arg: str) -> None:
    """The env a run's config.json names is one this machine can make (ConfigError naming the
    folder: the user did not type it)."""
    try:
        check_env_id(env_id)
    except ConfigError as e:
        raise ConfigError(f"{arg} {str(run_dir)!r}: the env its config.json names: {e}") from None


def make_env(env_id: str, render_mode: str | None = None) -> gym.Env:
    """One env whose actions are in [-1, 1]^|A| (the agents' convention)."""
    env = _make(env_id, render_mode=render_mode)
    shape, dtype = env.action_space.shape, env.action_space.dtype  # DMC's are float64
    return RescaleAction(env, np.full(shape, -1.0, dtype), np.full(shape, 1.0, dtype))


def make_vec_env(env_id: str, num_envs: int) -> CollectorEnvs:
    """`num_envs` copies stepped together. SAME_STEP autoreset hands back the final
    observation of an ending episode in `info["final_obs"]` in the step it ends, so the
    stored transition has the true next state and the returned obs is already the reset one."""
    if env_id.startswith(PLAYGROUND_PREFIX):  # one jitted call steps them all
        from widerl.collect.playground import PlaygroundVectorEnv

        return PlaygroundVectorEnv(env_id, num_envs)  # type: ignore[return-value]
    if num_envs > 1:
        _mujoco_warnings_once()
    return CollectorEnvs(
        [lambda: make_env(env_id) for _ in range(num_envs)],
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
    )


class CollectorEnvs(gym.vector.SyncVectorEnv):
    """Gymnasium's SyncVectorEnv with SAME_STEP autoreset, whose step hands back of the envs'
    infos only what the collector reads: `final_obs` and its mask `_final_obs`. Gymnasium's
    step turns every key of every env's info into an array and a mask each step
    (`_add_info`), work nothing here reads (benchmarks/README.md, "The env step's host
    path"). The envs are stepped and reset by the same calls in the same order, so the
    observations, rewards and flags are the same. It fills SyncVectorEnv's own buffers
    (`_env_obs`, `_rewards`, ...) as Gymnasium's step does; the test that compares the two
    steps would fail if a Gymnasium release changed them."""

    def step(self, actions: np.ndarray) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray,
                                                 dict[str, Any]]:  # fmt: skip
        infos: dict[str, Any] = {}
        for i, env in enumerate(self.envs):
            obs, self._rewards[i], self._terminations[i], self._truncations[i], _ = env.step(
                actions[i]
            )
            if self._terminations[i] or self._truncations[i]:
                if not infos:  # Gymnasium's layout: an object array and a bool mask
                    infos = {"final_obs": np.full(self.num_envs, None, dtype=object),
                             "_final_obs": np.zeros(self.num_envs, dtype=bool)}  # fmt: skip
                infos["final_obs"][i], infos["_final_obs"][i] = obs, True
                obs, _ = env.reset()
            self._env_obs[i] = obs
        self._observations = concatenate(
            self.single_observation_space, self._env_obs, self._observations
        )
        self._autoreset_envs = np.logical_or(self._terminations, self._truncations)
        return (
            deepcopy(self._observations) if self.copy else self._observations,
            np.copy(self._rewards),
            np.copy(self._terminations),
            np.copy(self._truncations),
            infos,
        )


def _mujoco_warnings_once() -> None:
    """MuJoCo prints its warnings each time (Gymnasium's HalfCheetah-v5 model has a
    deprecated attribute: one line per copy, 64 for --num-envs 64); say each one once, on
    stderr, in this process."""
    try:
        import mujoco
    except ImportError:
        return
    if getattr(mujoco.get_mju_user_warning(), "widerl_once", False):
        return
    seen: set[str] = set()

    def once(message: str) -> None:
        if message not in seen:
            seen.add(message)
            print(f"MuJoCo warning: {message}", file=sys.stderr)

    once.widerl_once = True  # type: ignore[attr-defined]
    mujoco.set_mju_user_warning(once)


def env_dims(env_id: str) -> tuple[int, int]:
    env = _make(env_id)
    try:
        return int(np.prod(env.observation_space.shape)), int(np.prod(env.action_space.shape))
    finally:
        env.close()


# --- an env's state as plain tensors and ints, for exact resume (--checkpoint-replay) --------
# torch is imported where used: check_env_id callers (`experiment --dry-run`) need no torch.
def _plain(value: object) -> object:
    """numpy arrays and scalars (in RNG states) as tensors and Python numbers: checkpoints are
    loaded with weights_only=True, which rebuilds nothing else."""
    import torch

    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value.copy())
    if isinstance(value, np.generic):
        return value.item()
    return value


def _numpy(value: object) -> object:
    import torch

    if isinstance(value, dict):
        return {k: _numpy(v) for k, v in value.items()}
    if isinstance(value, torch.Tensor):
        return value.numpy().copy()
    return value


def _is_mujoco(env: gym.Env) -> bool:
    if not (hasattr(env, "model") and hasattr(env, "data")):
        return False
    import mujoco

    return isinstance(env.model, mujoco.MjModel) and isinstance(env.data, mujoco.MjData)


def _mujoco_state(env: gym.Env) -> dict:
    """The full integration state (qpos, qvel, act, warm-start, time, controls, applied forces:
    mjSTATE_INTEGRATION), plus every float array of mjData whose size the model fixes. The
    latter matter because mj_step leaves kinematic quantities (xpos, xipos, ...) at the state
    before its last substep, and some envs read them before stepping (Ant-v5, Humanoid-v5 take
    the position before an action from xpos / xipos): mj_forward would recompute them at the
    current state instead. Arrays sized by the contacts of a step are recomputed by every step
    and left out."""
    import mujoco
    import torch

    spec = mujoco.mjtState.mjSTATE_INTEGRATION
    model, data = env.model, env.data
    state = np.empty(mujoco.mj_stateSize(model, spec))
    mujoco.mj_getState(model, data, state, spec)
    fresh = mujoco.MjData(model)
    arrays = {}
    for name in dir(data):
        value = getattr(data, name, None) if not name.startswith("_") else None
        if (
            isinstance(value, np.ndarray)
            and value.dtype == np.float64
            and value.size
            and getattr(fresh, name).shape == value.shape
        ):
            arrays[name] = torch.from_numpy(value.copy())
    return {"integration": torch.from_numpy(state), "arrays": arrays}


def _set_mujoco_state(env: gym.Env, sim: dict) -> None:
    import mujoco

    for name, value in sim["arrays"].items():
        dst = getattr(env.data, name, None)
        if isinstance(dst, np.ndarray) and dst.shape == tuple(value.shape):
            dst[...] = value.numpy()
    spec = mujoco.mjtState.mjSTATE_INTEGRATION
    mujoco.mj_setState(env.model, env.data, sim["integration"].numpy(), spec)


def _is_classic(env: gym.Env) -> bool:
    # Classic-control envs keep their whole simulator state in `state` (Pendulum: angle and
    # angular velocity); others with a `state` attribute need not (CarRacing: an image).
    return type(env).__module__.startswith("gymnasium.envs.classic_control") and hasattr(
        env, "state"
    )


def _time_limit(env: gym.Env) -> gym.Env | None:
    while env is not None:
        if hasattr(env, "_elapsed_steps"):
            return env
        env = getattr(env, "env", None)
    return None


def env_state(env: gym.Env) -> dict | None:
    """What the env's next steps depend on, as tensors and ints: the simulator state, the
    time limit's step counter and the env's RNG (episode resets draw from it). None where the
    simulator state cannot be captured (only MuJoCo and classic-control envs are covered)."""
    base = env.unwrapped
    if _is_mujoco(base):
        sim = {"mujoco": _mujoco_state(base)}
    elif _is_classic(base) and base.state is not None:
        sim = {"classic": _plain(np.array(base.state))}
    else:
        return None
    limit = _time_limit(env)
    return {
        "sim": sim,
        "elapsed": None if limit is None else limit._elapsed_steps,
        "rng": _plain(base.np_random.bit_generator.state),
    }


def set_env_state(env: gym.Env, state: dict) -> None:
    """Put an env (already reset once) back into the state `env_state` captured."""
    base = env.unwrapped
    if "mujoco" in state["sim"]:
        _set_mujoco_state(base, state["sim"]["mujoco"])
    else:
        base.state = state["sim"]["classic"].numpy().copy()
    limit = _time_limit(env)
    if limit is not None:
        limit._elapsed_steps = state["elapsed"]
    rng = _numpy(state["rng"])
    bit_generator = getattr(np.random, rng["bit_generator"])()
    bit_generator.state = rng
    base.np_random = np.random.Generator(bit_generator)
