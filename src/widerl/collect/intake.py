"""Transitions in: a source's chunks into the replay, the same whichever source made them.

One transition in `HOLDOUT_EVERY` goes to a held-out buffer when the feature learner has a
held-out loss (OFENet's `aux_loss_heldout`), never to the replay. The intake also keeps what
the metrics rows report about collection: env steps, episodes and recent returns (overall and
per collector), the weight version of every stored transition (`weight_age`) and how far the
collectors' weights lagged behind the learner when their chunks arrived (`sync_lag`).
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np
import torch

from widerl.collect.collector import Chunk
from widerl.collect.reward_scale import ReturnScale
from widerl.replay.buffer import TRANSITION_FIELDS, ReplayBuffer
from widerl.replay.storage import segments

HOLDOUT_SIZE = 10_000  # held-out transitions kept for OFENet's test loss
HOLDOUT_EVERY = 100  # one transition in this many goes to the held-out buffer
RECENT = 10  # episodes averaged in train_return_mean and collector_returns


class Intake:
    """`returns`: the running statistics of the discounted return (--reward-scaling), fed by
    the chunks' G_t."""

    def __init__(
        self, replay: ReplayBuffer, holdout: ReplayBuffer | None, returns: ReturnScale | None = None
    ) -> None:
        self.replay, self.holdout, self.returns = replay, holdout, returns
        # Updates of the weights that produced each stored transition (for `weight_age`).
        self.versions = np.zeros(replay.capacity, dtype=np.int32)
        self.env_steps = 0
        self.episodes = 0
        self.rows_seen = 0  # transitions taken in, for the held-out split
        self.recent_returns: deque[float] = deque(maxlen=RECENT)
        self.source_returns: dict[int, deque[float]] = {}
        self.source_rows: dict[int, int] = {}  # transitions received from each collector
        self.source_version: dict[int, int] = {}  # newest weights each collector acted with
        self.lag_sum, self.lag_count = 0, 0  # sync lag of the chunks since the last row

    def add(self, chunk: Chunk, grad_step: int) -> None:
        n = len(chunk)
        if self.returns is not None and chunk.disc_return is not None:
            self.returns.add(chunk.disc_return)
        rows = {k: getattr(chunk, k) for k in TRANSITION_FIELDS}
        priority = chunk.priority
        if self.holdout is not None:
            held = (self.rows_seen + np.arange(n)) % HOLDOUT_EVERY == 0
            if held.any():
                self.holdout.add(*(v[held] for v in rows.values()))
                keep = ~held
                rows = {k: v[keep] for k, v in rows.items()}
                priority = None if priority is None else priority[keep]
        self.rows_seen += n
        k = len(rows["rew"])
        if k:
            for d, _, length in segments(self.replay.pos, k, self.replay.capacity):
                self.versions[d : d + length] = chunk.version
            self.replay.add(*rows.values(), priority=priority)
        self.env_steps += n
        self.episodes += len(chunk.returns)
        self.recent_returns.extend(chunk.returns)
        self.source_returns.setdefault(chunk.source, deque(maxlen=RECENT)).extend(chunk.returns)
        self.source_rows[chunk.source] = self.source_rows.get(chunk.source, 0) + n
        self.source_version[chunk.source] = max(
            self.source_version.get(chunk.source, 0), chunk.version
        )
        self.lag_sum += grad_step - chunk.version
        self.lag_count += 1

    # --- what a row reads ---------------------------------------------------------------------
    def weight_age(self, idx: torch.Tensor | None, grad_step: int) -> float | None:
        """Mean updates between the weights that acted and now, over the rows `idx`."""
        if idx is None:
            return None
        return float(np.mean(grad_step - self.versions[idx.cpu().numpy()]))

    def take_sync_lag(self) -> float | None:
        """Mean lag of the chunks since the last call, which starts a new window."""
        lag = self.lag_sum / self.lag_count if self.lag_count else None
        self.lag_sum, self.lag_count = 0, 0
        return lag

    def train_return(self) -> float | None:
        return float(np.mean(self.recent_returns)) if self.recent_returns else None

    def collector_returns(self, n: int) -> list[float | None]:
        return [
            float(np.mean(self.source_returns[i])) if self.source_returns.get(i) else None
            for i in range(n)
        ]

    # --- checkpoints -----------------------------------------------------------------------
    def state_dict(self, with_versions: bool) -> dict[str, Any]:
        return {
            "env_steps": self.env_steps,
            "episodes": self.episodes,
            "rows_seen": self.rows_seen,
            "recent_returns": list(self.recent_returns),
            # What the next row reads besides the replay (for an exact resume).
            "source_returns": {i: list(r) for i, r in self.source_returns.items()},
            "source_rows": dict(self.source_rows),
            "source_version": dict(self.source_version),
            "lag": [self.lag_sum, self.lag_count],
            "versions": torch.from_numpy(self.versions) if with_versions else None,
            "returns": None if self.returns is None else self.returns.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.env_steps, self.episodes = int(state["env_steps"]), int(state["episodes"])
        self.rows_seen = int(state.get("rows_seen", 0))
        self.recent_returns.extend(state["recent_returns"])
        for i, rets in state.get("source_returns", {}).items():
            self.source_returns[int(i)] = deque(rets, maxlen=RECENT)
        self.source_rows = {int(i): int(n) for i, n in state.get("source_rows", {}).items()}
        self.source_version = {int(i): int(v) for i, v in state.get("source_version", {}).items()}
        self.lag_sum, self.lag_count = (int(x) for x in state.get("lag", (0, 0)))
        if state.get("versions") is not None:
            self.versions[:] = state["versions"].numpy()
        if self.returns is not None and state.get("returns") is not None:
            self.returns.load_state_dict(state["returns"])
