"""The learner loop: random warm-up (A.4), OFENet pre-training, then gradient updates,
evaluating and checkpointing every `eval_every` updates. Ctrl-C or SIGTERM saves a
checkpoint and stops cleanly; a non-finite loss, Q value or parameter stops the run without
overwriting the last finite checkpoint (`Diverged`). With `--checkpoint-replay` a checkpoint
holds everything the rest of the run depends on, so an interrupted run resumes as the run that
was not interrupted (on CPU, `--actors 0`).

Transitions come from one of two sources, behind the same `ingest` and `learn_step`:
`--actors 0` steps one env inline, one env step per update (the paper's "w/o Ape-X");
`--actors N` keeps N Ray collector processes busy and ingests their chunks as they arrive,
learning without waiting for them (Ape-X-like, Sec. 3.2; distributed.py)."""

from __future__ import annotations

import contextlib
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from widerl.agents import make_agent
from widerl.checkpoint import CHECKPOINT, FORMAT_VERSION, load_checkpoint, save_atomic
from widerl.collect import Chunk, Collector
from widerl.config import Config, ConfigError
from widerl.envs import env_dims, make_vec_env
from widerl.errors import CollectorsFailed, Diverged
from widerl.evaluate import Evaluator
from widerl.logger import MetricMeans, RunLogger, Window, make_progress
from widerl.plot import plot_learning_curve
from widerl.replay import ReplayBuffer
from widerl.rundir import write_config, write_divergence
from widerl.signals import StopSignals

PROGRESS_EVERY = 100  # updates between progress-bar refreshes
HOLDOUT_SIZE = 10_000  # held-out transitions kept for OFENet's test loss
HOLDOUT_BATCH = 1_024
HOLDOUT_EVERY = 100  # with OFENet, one transition in this many goes to the held-out buffer
PROBE_SIZE = 2_048  # replay transitions for the critic's srank and loss landscapes


def _to_cpu(d: dict[str, torch.Tensor] | None) -> dict[str, torch.Tensor] | None:
    return None if d is None else {k: v.cpu() for k, v in d.items()}


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is available here; use cpu or auto")
    return torch.device(name)


def derive_seeds(seed: int) -> dict[str, int]:
    """Independent seeds for each consumer of randomness, from one root (SeedSequence.spawn)."""
    names = ("torch", "collect", "eval", "replay", "actors", "srank")
    children = np.random.SeedSequence(seed).spawn(len(names))
    return {n: int(c.generate_state(1)[0]) for n, c in zip(names, children, strict=True)}


@dataclass
class RunResult:
    run_dir: Path
    grad_step: int
    env_step: int
    last_eval: float | None
    interrupted: bool
    curve: Path | None


class Trainer:
    def __init__(self, cfg: Config, run_dir: Path) -> None:
        self.cfg, self.run_dir = cfg, Path(run_dir)
        self.device = resolve_device(cfg.device)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.seeds = seeds = derive_seeds(cfg.seed)
        torch.manual_seed(seeds["torch"])
        obs_dim, act_dim = env_dims(cfg.env)
        self.agent = make_agent(cfg, obs_dim, act_dim, self.device)
        self.replay = ReplayBuffer(
            obs_dim,
            act_dim,
            cfg.buffer_size,
            self.device,
            prioritized=cfg.prioritized,
            alpha=cfg.per_alpha,
            seed=seeds["replay"],
        )
        # Updates of the weights that produced each stored transition (for `weight_age`).
        self.versions = np.zeros(cfg.buffer_size, dtype=np.int32)
        self.ofenet = self.agent.features if cfg.ofenet_units else None
        # Held-out transitions for OFENet's test loss: diverted from the replay, never trained on.
        self.holdout = (
            ReplayBuffer(obs_dim, act_dim, HOLDOUT_SIZE, self.device, seed=seeds["replay"] + 1)
            if self.ofenet
            else None
        )
        self.inline = (
            Collector(make_vec_env(cfg.env, 1), seeds["collect"], self.device)
            if cfg.actors == 0
            else None
        )
        self.remote = None  # RayCollectors, started in run()
        self.evaluator = Evaluator(cfg.env, seeds["eval"] % 2**31, cfg.eval_episodes)
        self.means = MetricMeans(
            list(self.agent.metric_names) + (["aux_loss"] if self.ofenet else [])
        )
        self.pretrained = False
        self.pretrain_steps = 0  # OFENet pre-training updates done (a stop may cut them short)
        write_config(
            self.run_dir,
            cfg,
            dims={
                "obs_dim": obs_dim,
                "act_dim": act_dim,
                "z_s_dim": self.agent.features.s_dim,
                "z_sa_dim": self.agent.features.sa_dim,
            },
        )
        self.grad_step = 0
        self.env_steps = 0
        self.episodes = 0
        self.rows_seen = 0  # transitions ingested, for the held-out split
        self.recent_returns: deque[float] = deque(maxlen=10)
        self.source_returns: dict[int, deque[float]] = {}
        self.source_rows: dict[int, int] = {}  # transitions received from each collector
        self.source_version: dict[int, int] = {}  # newest weights each collector acted with
        self.lag_sum, self.lag_count = 0, 0  # sync lag of the chunks since the last row
        self.last_idx: torch.Tensor | None = None
        self.probe: dict[str, torch.Tensor] | None = None
        self.wall_offset = 0.0  # wall time of earlier parts of a resumed run
        self.last_eval: float | None = None
        self.logged_step = -1  # grad_step of the last metrics row written; -1: none yet
        self.saved_step: int | None = None  # grad_step of the last checkpoint written
        self._warned_capture = False
        # What the divergence check reads at a row: every float tensor the agent (OFENet
        # included) trains or keeps, as one list for one fused reduction.
        named = [*self.agent.named_parameters(), *self.agent.named_buffers()]
        named = [(n, t) for n, t in named if t.is_floating_point()]
        self._tensor_names = [n for n, _ in named]
        self._tensors = [t for _, t in named]

    # --- transitions in: the same whichever collector produced them ------------------------
    def ingest(self, chunk: Chunk) -> None:
        n = len(chunk)
        rows = {k: getattr(chunk, k) for k in ("obs", "act", "rew", "next_obs", "term")}
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
            slots = (self.replay.pos + np.arange(k)) % self.replay.capacity
            self.versions[slots] = chunk.version
            self.replay.add(*rows.values(), priority=priority)
        self.env_steps += n
        self.episodes += len(chunk.returns)
        self.recent_returns.extend(chunk.returns)
        self.source_returns.setdefault(chunk.source, deque(maxlen=10)).extend(chunk.returns)
        self.source_rows[chunk.source] = self.source_rows.get(chunk.source, 0) + n
        self.source_version[chunk.source] = max(
            self.source_version.get(chunk.source, 0), chunk.version
        )
        self.lag_sum += self.grad_step - chunk.version
        self.lag_count += 1

    def collect_inline(self, random: bool) -> None:
        chunk = self.inline.step(None if random else self.agent)
        chunk.version = self.grad_step
        self.ingest(chunk)

    # --- one step of learning: the same whichever collector fills the replay ------------
    def learn_step(self) -> None:
        c = self.cfg
        beta = c.per_beta + (1.0 - c.per_beta) * min(1.0, self.grad_step / c.steps)
        batch = self.replay.sample(c.batch_size, beta)
        aux = self.ofenet.update(batch.obs, batch.act, batch.next_obs) if self.ofenet else None
        metrics = self.agent.update(batch)
        if aux is not None:
            metrics["aux_loss"] = aux
        if self.replay.prioritized:
            self.replay.update_priorities(batch.idx, metrics["td_abs"])
        self.means.add(metrics)
        self.last_idx = batch.idx
        self.grad_step += 1

    # --- checkpoints ----------------------------------------------------------------------
    def save(self) -> None:
        """Write the checkpoint, unless something became non-finite since the last check:
        then `Diverged`, and the last finite checkpoint stays."""
        c = self.cfg
        self.check_finite(self.means.read())
        inline = self.inline.state_dict() if self.inline else None
        if c.checkpoint_replay and inline is not None and not self._warned_capture:
            envs = inline["envs"]
            if envs is None or any(e is None for e in envs):
                self._warn_capture()
        state = {
            "format": FORMAT_VERSION,
            "env": c.env,
            "algo": c.algo,
            "grad_step": self.grad_step,
            "wall_time": self.wall_time(),
            "agent": self.agent.checkpoint_state(),
            "collector": {
                "env_steps": self.env_steps,
                "episodes": self.episodes,
                "rows_seen": self.rows_seen,
                "recent_returns": list(self.recent_returns),
                "inline": inline,
                # What the next row reads besides the replay (for an exact resume).
                "source_returns": {i: list(r) for i, r in self.source_returns.items()},
                "source_rows": dict(self.source_rows),
                "source_version": dict(self.source_version),
                "lag": [self.lag_sum, self.lag_count],
            },
            "means": self.means.state_dict(),
            "logged_step": self.logged_step,
            "pretrain_steps": self.pretrain_steps,
            "rng": {"torch": torch.get_rng_state()},
            "replay": self.replay.state_dict() if c.checkpoint_replay else None,
            "versions": torch.from_numpy(self.versions) if c.checkpoint_replay else None,
            "holdout": self.holdout.state_dict() if c.checkpoint_replay and self.holdout else None,
            "probe": _to_cpu(self.probe),
            # What the run trained on, for `widerl landscape` (A.3): refreshed at each save.
            "sample": _to_cpu(self.spread_sample()),
            "pretrained": self.pretrained,
        }
        if self.device.type == "cuda":
            state["rng"]["cuda"] = torch.cuda.get_rng_state(self.device)
        save_atomic(state, self.run_dir / CHECKPOINT)
        self.saved_step = self.grad_step

    def _warn_capture(self) -> None:
        self._warned_capture = True
        print(
            f"widerl: warning: the state of {self.cfg.env}'s simulator cannot be captured; "
            "a resumed run starts fresh episodes there (not an exact resume)",
            file=sys.stderr,
        )

    def restore(self, state: dict | None = None) -> None:
        """Continue from `state` (an already loaded checkpoint) or from the run's checkpoint."""
        if state is None:
            state = load_checkpoint(self.run_dir, map_location=self.device)
        self.agent.load_checkpoint_state(state["agent"])
        col = state["collector"]
        self.env_steps, self.episodes = int(col["env_steps"]), int(col["episodes"])
        self.rows_seen = int(col.get("rows_seen", 0))
        self.recent_returns.extend(col["recent_returns"])
        for i, rets in col.get("source_returns", {}).items():
            self.source_returns[int(i)] = deque(rets, maxlen=10)
        self.source_rows = {int(i): int(n) for i, n in col.get("source_rows", {}).items()}
        self.source_version = {int(i): int(v) for i, v in col.get("source_version", {}).items()}
        self.lag_sum, self.lag_count = (int(x) for x in col.get("lag", (0, 0)))
        if self.inline is not None:
            saved = col.get("inline") or {}
            if saved:
                self.inline.load_state_dict(saved)
            # Without the stored replay the run refills it with the current policy, from fresh
            # episodes (documented); with it, the episodes that were running go on.
            if not (self.cfg.checkpoint_replay and self.inline.restore_episodes(saved)):
                if self.cfg.checkpoint_replay:
                    self._warn_capture()
                self.inline.reset()
        if state.get("means") is not None:
            self.means.load_state_dict(state["means"], self.device)
        self.logged_step = int(state.get("logged_step", state["grad_step"]))
        self.pretrain_steps = int(state.get("pretrain_steps", 0))
        torch.set_rng_state(state["rng"]["torch"].cpu())
        if "cuda" in state["rng"] and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng"]["cuda"].cpu(), self.device)
        if state.get("replay") is not None:
            self.replay.load_state_dict(state["replay"])
            if state.get("versions") is not None:
                self.versions[:] = state["versions"].numpy()
        if state.get("holdout") is not None and self.holdout is not None:
            self.holdout.load_state_dict(state["holdout"])
        if state.get("probe") is not None:
            self.probe = {k: v.to(self.device) for k, v in state["probe"].items()}
        self.pretrained = bool(state.get("pretrained", False))
        self.grad_step = int(state["grad_step"])
        self.saved_step = self.grad_step
        self.wall_offset = float(state["wall_time"])

    def _diverged(self, e: Diverged) -> Diverged:
        """Record a divergence in the run folder (so `--resume` can say so) and describe what
        was kept; nothing non-finite is ever saved (`save` checks first)."""
        kept = (
            f"; the last finite checkpoint (update {self.saved_step}) is kept in {self.run_dir}"
            if self.saved_step is not None
            else ""
        )
        out = Diverged(e.quantity, e.update, e.by, kept)
        write_divergence(
            self.run_dir,
            {
                "quantity": e.quantity,
                "update": e.update,
                "by": e.by,
                "checkpoint_step": self.saved_step,
                "message": str(out),
            },
        )
        return out

    def wall_time(self) -> float:
        return self.wall_offset + time.perf_counter() - self._t0

    # --- the loop -------------------------------------------------------------------------
    def fill(self) -> None:
        """Random warm-up (A.4). A run resumed without its stored buffer refills it with
        `warmup` steps of the current policy instead. Either way one batch must be there."""
        c, flag = self.cfg, self._flag
        fresh = self.grad_step == 0
        refill = not fresh and self.replay.size == 0

        def enough() -> bool:
            if fresh and self.env_steps < c.warmup:
                return False
            if refill and self.replay.size < min(c.warmup, c.buffer_size):
                return False
            return self.replay.size >= c.batch_size

        while not enough() and not flag.stop:
            random = fresh and self.env_steps < c.warmup
            if self.remote is None:
                self.collect_inline(random)
            else:
                left = c.warmup - self.env_steps - self._inflight_steps() if random else None
                self.remote.fill_pipeline(
                    random,
                    max_new=None
                    if left is None
                    else _ceil_div(max(left, 0), self.remote.per_request),
                )
                for chunk in self.remote.poll(timeout=0.2):
                    self.ingest(chunk)

    def spread_sample(self) -> dict[str, torch.Tensor] | None:
        """PROBE_SIZE transitions spread evenly over the replay's contents (no RNG used)."""
        if self.replay.size == 0:
            return None
        n = min(PROBE_SIZE, self.replay.size)
        idx = torch.linspace(0, self.replay.size - 1, n).long().to(self.replay.device)
        values = self.replay.storage.gather(idx)
        names = ("obs", "act", "rew", "next_obs", "term")
        return {k: v.float() for k, v in zip(names, values, strict=True)}

    def draw_probe(self) -> None:
        """The fixed batch of replay states on which the critic's effective rank is tracked
        at every evaluation (A.4), drawn once after warm-up and kept in checkpoints."""
        self.probe = self.spread_sample()

    def srank_sample(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """PROBE_SIZE distinct transitions drawn uniformly from the replay as it is now, for
        srank at this row (Kumar et al. 2021 measure on the replay). The generator is seeded
        from the seed and grad_step alone: measuring never moves the training's random
        streams, and a resumed run draws the same sample."""
        if self.replay.size == 0:
            return None
        seed = np.random.SeedSequence([self.seeds["srank"], self.grad_step]).generate_state(1)
        g = torch.Generator().manual_seed(int(seed[0]))
        n = min(PROBE_SIZE, self.replay.size)
        idx = torch.randperm(self.replay.size, generator=g)[:n].to(self.replay.device)
        obs, act, *_ = self.replay.storage.gather(idx)
        return obs, act

    def critic_srank(self, sample: tuple[torch.Tensor, torch.Tensor] | None) -> int | None:
        if sample is None:
            return None
        from widerl.analysis.srank import critic_penultimate_features, srank

        phi = critic_penultimate_features(self.agent, *sample)
        if not bool(torch.isfinite(phi).all()):  # a row's read; the SVD would fail on them
            raise Diverged("the critic's features on replay states", self.grad_step, by=True)
        return srank(phi)

    def check_finite(self, window: Window) -> None:
        """`Diverged` if a metric since the last row or any parameter is inf or NaN: one read
        of the metric sums (done for the row anyway) and one fused reduction over the
        parameters. A huge but finite value is no divergence by this definition."""
        if window.first_nonfinite:
            name, pos = min(window.first_nonfinite.items(), key=lambda kv: kv[1])
            raise Diverged(name, self.grad_step - window.count + pos)
        # max |x| per tensor: finite exactly when every element is (a 2-norm could overflow).
        norms = torch._foreach_norm(self._tensors, float("inf"))
        finite = torch.isfinite(torch.stack(norms)).cpu().tolist()
        for name, ok in zip(self._tensor_names, finite, strict=True):
            if not ok:
                raise Diverged(f"parameter {name}", self.grad_step, by=True)

    def pretrain_ofenet(self) -> None:
        """OFENet's updates on the warm-up data before RL starts (10k in Ota et al. 2020)."""
        c = self.cfg
        while self.pretrain_steps < c.ofenet_pretrain:
            if self._flag.stop:
                return
            b = self.replay.sample(c.batch_size)
            self.ofenet.update(b.obs, b.act, b.next_obs)
            self.pretrain_steps += 1
        self.pretrained = True

    def evaluate_and_log(self, logger: RunLogger, since: tuple[float, int, int]) -> None:
        # The divergence check comes first: evaluating or measuring srank with non-finite
        # weights would fail or log garbage.
        window = self.means.read()
        self.check_finite(window)
        self.means.reset()
        srank_now = self.critic_srank(self.srank_sample())
        srank_probe = (
            self.critic_srank((self.probe["obs"], self.probe["act"])) if self.probe else None
        )
        returns = self.evaluator(self.agent)
        self.last_eval = float(returns.mean())
        t, g, e = since
        dt = max(time.perf_counter() - t, 1e-9)
        weight_age = None
        if self.last_idx is not None:
            idx = self.last_idx.cpu().numpy()
            weight_age = float(np.mean(self.grad_step - self.versions[idx]))
        row: dict[str, object] = {
            "grad_step": self.grad_step,
            "env_step": self.env_steps,
            "wall_time": round(self.wall_time(), 3),
            "eval_return_mean": self.last_eval,
            "eval_return_std": float(returns.std()),
            "train_return_mean": float(np.mean(self.recent_returns))
            if self.recent_returns
            else None,
            "episodes": self.episodes,
            "updates_per_s": (self.grad_step - g) / dt if self.grad_step > g else None,
            "env_steps_per_s": (self.env_steps - e) / dt if self.env_steps > e else None,
            "replay_size": self.replay.size,
            "weight_age": weight_age,
            "sync_lag": self.lag_sum / self.lag_count if self.lag_count else None,
            "collector_returns": ";".join(
                f"{np.mean(self.source_returns[i]):.6g}" if self.source_returns.get(i) else ""
                for i in range(max(self.cfg.actors, 1))
            ),
            "restarts": self.remote.restarts if self.remote else 0,
            "collectors_waiting": self.remote.waiting if self.remote else 0,
            "srank": srank_now,
            "srank_probe": srank_probe,
            **window.means,
        }
        self.lag_sum, self.lag_count = 0, 0
        if self.ofenet is not None and self.holdout.size:
            h = self.holdout.sample(min(HOLDOUT_BATCH, self.holdout.size))
            row["aux_loss_heldout"] = float(self.ofenet.eval_loss(h.obs, h.act, h.next_obs))
        logger.write(row)
        self.logged_step = self.grad_step
        for i, rets in self.source_returns.items():
            if rets:
                logger.tb.add_scalar(f"collector/{i}/return", float(np.mean(rets)), self.grad_step)

    def _pump(self) -> None:
        """Ape-X path: take in every chunk that has arrived, keep the collectors busy
        (within --max-env-per-update), publish weights every --sync-every updates."""
        c, remote = self.cfg, self.remote
        if self.grad_step % c.sync_every == 0:
            remote.publish(self.agent, self.grad_step)
        for chunk in remote.poll(timeout=0.0):
            self.ingest(chunk)
        max_new = None
        if c.max_env_per_update > 0:
            # Collected plus requested env steps may run at most this far ahead of learning.
            done = self.grad_step - self._loop_grad_start + 1  # updates of this session
            bound = self._loop_env_start + c.max_env_per_update * done
            left = bound - self.env_steps - self._inflight_steps()
            max_new = _ceil_div(max(int(left), 0), remote.per_request)
        remote.fill_pipeline(random=False, max_new=max_new)
        remote.maybe_inject_fault(self.grad_step)

    def _inflight_steps(self) -> int:
        return len(self.remote.inflight) * self.remote.per_request if self.remote else 0

    def run(
        self, resume: bool = False, state: dict | None = None, stop: StopSignals | None = None
    ) -> RunResult:
        """Train to `cfg.steps`. `stop` is the caller's StopSignals when it installed them
        before building the trainer (the CLI does, so that a signal at any moment counts);
        otherwise the run installs its own."""
        c = self.cfg
        self._t0 = time.perf_counter()
        if resume:
            self.restore(state)
        else:
            self.save()  # a run killed before its first evaluation still has a checkpoint
        logger = RunLogger(
            self.run_dir,
            self.means.names + (["aux_loss_heldout"] if self.ofenet else []),
            resume_step=self.logged_step if resume else None,
        )
        interrupted = False
        signals = contextlib.nullcontext(stop) if stop is not None else StopSignals()
        try:
            with signals as flag, make_progress(c.progress) as progress:
                self._flag = flag
                task = progress.add_task(
                    f"{c.algo} {c.env}",
                    total=c.steps,
                    completed=self.grad_step,
                    ups=0.0,
                    env_step=self.env_steps,
                    last_eval="-",
                )
                if c.actors and not flag.stop:
                    from widerl.distributed import RayCollectors

                    progress.update(task, description=f"starting {c.actors} collectors")
                    self.remote = RayCollectors(
                        c,
                        self.seeds["actors"],
                        self.agent,
                        version=self.grad_step,
                        stop=lambda: flag.stop,
                    )
                    progress.update(task, description="warm-up")
                self.fill()
                # Only a complete warm-up gives the probe and pre-training their data.
                if self.probe is None and self.replay.size and not flag.stop:
                    self.draw_probe()
                if self.ofenet is not None and not self.pretrained and not flag.stop:
                    progress.update(task, description="OFENet pre-training")
                    self.pretrain_ofenet()
                progress.update(task, description=f"{c.algo} {c.env}")
                since = (time.perf_counter(), self.grad_step, self.env_steps)
                if self.grad_step == 0 and self.logged_step < 0 and not flag.stop:
                    self.evaluate_and_log(logger, since)
                    since = (time.perf_counter(), self.grad_step, self.env_steps)
                bar_t, bar_g = since[0], since[1]
                self._loop_env_start, self._loop_grad_start = self.env_steps, self.grad_step
                while self.grad_step < c.steps and not flag.stop:
                    if self.remote is None:
                        self.collect_inline(random=False)
                    else:
                        self._pump()
                    self.learn_step()
                    if self.grad_step % c.eval_every == 0 or self.grad_step == c.steps:
                        self.evaluate_and_log(logger, since)
                        self.save()
                        since = (time.perf_counter(), self.grad_step, self.env_steps)
                    if self.grad_step % PROGRESS_EVERY == 0:
                        now = time.perf_counter()
                        progress.update(
                            task,
                            completed=self.grad_step,
                            ups=(self.grad_step - bar_g) / max(now - bar_t, 1e-9),
                            env_step=self.env_steps,
                            last_eval="-" if self.last_eval is None else f"{self.last_eval:.1f}",
                        )
                        bar_t, bar_g = now, self.grad_step
                interrupted = flag.stop
                if interrupted:
                    self.save()
        except CollectorsFailed as e:
            # Keep what was learned since the last evaluation: the run resumes once the
            # cause (an env or collector bug) is fixed.
            try:
                self.save()
            except Diverged as d:
                raise self._diverged(d) from None
            raise CollectorsFailed(
                f"{e}; checkpoint saved at update {self.grad_step}, continue with "
                f"`widerl train --resume {self.run_dir}`"
            ) from e
        except Diverged as e:
            raise self._diverged(e) from None
        finally:
            if self.remote is not None:
                self.remote.close()
            logger.close()
            self.evaluator.close()
            if self.inline is not None:
                self.inline.envs.close()
        curve = (
            plot_learning_curve(
                self.run_dir, f"{c.algo.upper()} {c.arch} {c.units}x{c.layers}, {c.env}"
            )
            if not interrupted
            else None
        )
        return RunResult(
            self.run_dir,
            self.grad_step,
            self.env_steps,
            self.last_eval,
            interrupted,
            curve,
        )
