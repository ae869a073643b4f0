"""Where transitions come from: one interface, two sources, so that the trainer has no
branch on how collection happens.

- `InlineSource` (`--actors 0`, the paper's "w/o Ape-X"): one env per seed stepped in the
  learner, one env step per update (A.4); with `--num-envs N` a vector of N envs per seed
  (the FastTD3 regime); with --seeds every seed's actions come from one forward pass of the
  stacked policies.
- `RaySource` (`--actors N`, Ape-X-like, Sec. 3.2): N Ray collector processes kept busy
  (ray_collectors.RayCollectors); their chunks are taken in as they arrive and the learner never
  waits for them.

Both hand back `collector.Chunk`s, one list per seed, which the trainer's intakes put into
each seed's replay the same way.
"""

from __future__ import annotations

import abc
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from widerl.agents.base import Agent
from widerl.collect.collector import Chunk, Collector, noise_range, return_gamma
from widerl.collect.envs import make_vec_env
from widerl.config import Config, registries

Lanes = list[list[Chunk]]  # chunks per seed, in the run's order of seeds


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


class Source(abc.ABC):
    """What the trainer drives: `start`, `warmup` (until the replays hold enough), `begin`
    and `step` (once per learning step), `close`; `restarts` and `waiting` for the rows.
    Chunks come back as one list per seed (`Lanes`), in the order of the run's seeds."""

    restarts = 0  # collectors replaced after dying
    waiting = 0  # collectors that cannot be placed for want of resources

    def start(self, agent: Agent, grad_step: int, stop: Callable[[], bool]) -> None:
        """Get ready to collect with `agent`'s policy (acting in eval mode)."""
        self.agent = agent

    @abc.abstractmethod
    def warmup(self, random: bool, left: int | None, grad_step: int) -> Lanes:
        """Chunks of one round of warm-up collection: random actions (A.4) for at most `left`
        more env steps, or the current policy (a resumed run refilling its replay)."""

    def begin(self, grad_step: int, env_steps: int) -> None:  # noqa: B027 - optional
        """The learning loop starts (or resumes) here: budgets count from this point."""

    @abc.abstractmethod
    def step(self, grad_step: int, env_steps: int) -> Lanes:
        """The chunks that arrive during one learning step."""

    def state_dict(self, lane: int = 0) -> dict[str, Any] | None:
        """What seed number `lane`'s checkpoint keeps of the collection."""
        return None

    def load_state_dict(  # noqa: B027 - optional
        self, state: dict[str, Any] | None, continue_episodes: bool, lane: int = 0
    ) -> None:
        """Restore; with `continue_episodes` (an exact resume) the running episodes go on."""

    def close(self) -> None:  # noqa: B027 - optional
        """Stop collecting and free what was started."""


class InlineSource(Source):
    """`--num-envs` envs per seed in the learner's process, stepped together once per
    `--utd` learning steps."""

    @classmethod
    def from_config(cls, cfg: Config, seeds: list[dict[str, int]], device: torch.device
                    ) -> InlineSource:  # fmt: skip
        return cls(cfg, [s["collect"] for s in seeds], device)

    def __init__(self, cfg: Config, seeds: list[int], device: torch.device) -> None:
        self.cfg, self.device = cfg, device
        noise = noise_range(cfg)
        self.collectors = [
            Collector(make_vec_env(cfg.env, cfg.num_envs), s, device, noise, return_gamma(cfg))
            for s in seeds
        ]
        self._warned = False

    @property
    def collector(self) -> Collector:
        """The first seed's collector (the only one in a single run)."""
        return self.collectors[0]

    def _chunks(self, random: bool, grad_step: int) -> Lanes:
        if random:  # each seed's warm-up actions from its own collector's generator (A.4)
            acts = [c.policy_actions(None) for c in self.collectors]
        else:
            obs = (self.collector.obs[None] if len(self.collectors) == 1  # [K, num_envs, obs_dim]
                   else np.stack([c.obs for c in self.collectors]))  # fmt: skip
            x = torch.as_tensor(obs, dtype=torch.float32, device=self.device)
            scale = None
            if self.collector.noise_scale is not None:  # [K, num_envs, 1]
                scales = np.stack([c.noise_scale for c in self.collectors])
                scale = torch.as_tensor(scales, device=self.device)
            acts = list(self.agent.act(x, deterministic=False, noise_scale=scale).cpu().numpy())
        lanes: Lanes = []
        for collector, act in zip(self.collectors, acts, strict=True):
            chunk = collector.advance(act)
            chunk.version = grad_step
            lanes.append([chunk])
        return lanes

    def warmup(self, random: bool, left: int | None, grad_step: int) -> Lanes:
        return self._chunks(random, grad_step)

    def step(self, grad_step: int, env_steps: int) -> Lanes:
        return self._chunks(False, grad_step)

    def state_dict(self, lane: int = 0) -> dict[str, Any]:
        state = self.collectors[lane].state_dict()
        envs = state["envs"]
        if self.cfg.checkpoint_replay and (envs is None or any(e is None for e in envs)):
            self._warn_capture()
        return state

    def load_state_dict(
        self, state: dict[str, Any] | None, continue_episodes: bool, lane: int = 0
    ) -> None:
        collector = self.collectors[lane]
        if state:
            collector.load_state_dict(state)
        # Without the stored replay the run refills it with the current policy, from fresh
        # episodes (documented); with it, the episodes that were running go on.
        if not (continue_episodes and collector.restore_episodes(state or {})):
            if continue_episodes:
                self._warn_capture()
            collector.reset()

    def _warn_capture(self) -> None:
        if not self._warned:
            self._warned = True
            print(
                f"widerl: warning: the state of {self.cfg.env}'s simulator cannot be captured; "
                "a resumed run starts fresh episodes there (not an exact resume)",
                file=sys.stderr,
            )

    def close(self) -> None:
        for collector in self.collectors:
            collector.envs.close()


class RaySource(Source):
    """N collector processes on Ray (ray_collectors.RayCollectors), each with a pipeline of
    requests, weights published every --sync-every updates, collection bounded by
    --max-env-per-update."""

    @classmethod
    def from_config(cls, cfg: Config, seeds: list[dict[str, int]], device: torch.device
                    ) -> RaySource:  # fmt: skip
        if len(seeds) != 1:  # cli refuses --actors with several seeds
            raise ValueError("Ray collectors serve a single seed")
        return cls(cfg, seeds[0]["actors"])

    def __init__(self, cfg: Config, seed: int) -> None:
        self.cfg, self.seed = cfg, seed
        self.remote: Any = None

    def start(self, agent: Agent, grad_step: int, stop: Callable[[], bool]) -> None:
        from widerl.collect.ray_collectors import RayCollectors

        super().start(agent, grad_step, stop)
        self.remote = RayCollectors(self.cfg, self.seed, agent, version=grad_step, stop=stop)

    @property
    def restarts(self) -> int:  # type: ignore[override]
        return self.remote.restarts if self.remote else 0

    @property
    def waiting(self) -> int:  # type: ignore[override]
        return self.remote.waiting if self.remote else 0

    def _in_flight(self) -> int:
        return len(self.remote.inflight) * self.remote.per_request

    def warmup(self, random: bool, left: int | None, grad_step: int) -> Lanes:
        if random and left is not None:
            left -= self._in_flight()
        max_new = None if left is None else _ceil_div(max(left, 0), self.remote.per_request)
        self.remote.fill_pipeline(random, max_new=max_new)
        return [self.remote.poll(timeout=0.2)]

    def begin(self, grad_step: int, env_steps: int) -> None:  # noqa: B027 - optional
        self._start = (grad_step, env_steps)

    def step(self, grad_step: int, env_steps: int) -> Lanes:
        c, remote = self.cfg, self.remote
        if grad_step % c.sync_every == 0:
            remote.publish(self.agent, grad_step)
        chunks = remote.poll(timeout=0.0)
        env_steps += sum(len(ch) for ch in chunks)
        max_new = None
        # --utd U > 1 without an explicit bound: at most 1/U env steps per update.
        per_update = c.max_env_per_update or (1.0 / c.utd if c.utd > 1 else 0.0)
        if per_update > 0:
            # Collected plus requested env steps may run at most this far ahead of learning.
            start_grad, start_env = self._start
            done = grad_step - start_grad + 1  # updates of this session
            left = start_env + per_update * done - env_steps - self._in_flight()
            max_new = _ceil_div(max(int(left), 0), remote.per_request)
        remote.fill_pipeline(random=False, max_new=max_new)
        remote.maybe_inject_fault(grad_step)
        return [chunks]

    def close(self) -> None:
        if self.remote is not None:
            self.remote.close()


def acting_inputs(cfg: Config, k: int, obs_dim: int, act_dim: int, device: torch.device
                  ) -> list[tuple[torch.Tensor | None, ...]]:  # fmt: skip
    """`Agent.policy`'s arguments `(obs, noise, noise_scale)` (zeros) shaped as those of the
    acting a run's collection does in its own process (`InlineSource._chunks`: one forward
    pass over every seed's envs, with exploration noise; none with Ray collectors, which act
    in theirs): what the compiled acting is prepared with (run/step.py, `acting_calls`)."""
    if cfg.actors:
        return []
    scale = torch.zeros(k, cfg.num_envs, 1, device=device) if noise_range(cfg) else None
    obs = torch.zeros(k, cfg.num_envs, obs_dim, device=device)
    return [(obs, torch.zeros(k, cfg.num_envs, act_dim, device=device), scale)]


def make_source(cfg: Config, seeds: list[dict[str, int]], device: torch.device) -> Source:
    """The source of a run whose seeds' streams are `seeds` (build.derive_seeds, one per
    seed): Ray collectors with --actors > 0, else the learner's own envs (registered as
    `source` in config/registries.py)."""
    name = "ray" if cfg.actors else "inline"
    return registries.load("source", name).from_config(cfg, seeds, device)
