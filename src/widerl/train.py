"""The learner loop (`--actors 0`, the paper's "w/o Ape-X"): random warm-up (A.4), then one
env step and one gradient update at a time, evaluating and checkpointing every
`eval_every` updates. Ctrl-C or SIGTERM saves a checkpoint and stops cleanly."""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from widerl.agents import make_agent
from widerl.checkpoint import CHECKPOINT, FORMAT_VERSION, load_checkpoint, save_atomic
from widerl.collect import Collector
from widerl.config import Config, ConfigError
from widerl.envs import make_vec_env
from widerl.evaluate import Evaluator
from widerl.logger import MetricMeans, RunLogger, make_progress
from widerl.plot import plot_learning_curve
from widerl.replay import ReplayBuffer
from widerl.rundir import write_config

PROGRESS_EVERY = 100  # updates between progress-bar refreshes
HOLDOUT_SIZE = 10_000  # held-out transitions kept for OFENet's test loss
HOLDOUT_BATCH = 1_024


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is available here; use cpu or auto")
    return torch.device(name)


def derive_seeds(seed: int) -> dict[str, int]:
    """Independent seeds for each consumer of randomness, from one root (SeedSequence.spawn)."""
    names = ("torch", "collect", "eval", "replay")
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


class _StopFlag:
    """Turns SIGINT/SIGTERM into a flag the loop checks, so a stop is a clean save."""

    def __init__(self) -> None:
        self.stop = False
        self._old: dict[int, object] = {}

    def __enter__(self) -> _StopFlag:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: object) -> None:
        self.stop = True

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]


class Trainer:
    def __init__(self, cfg: Config, run_dir: Path) -> None:
        self.cfg, self.run_dir = cfg, Path(run_dir)
        self.device = resolve_device(cfg.device)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        seeds = derive_seeds(cfg.seed)
        torch.manual_seed(seeds["torch"])
        self.envs = make_vec_env(cfg.env, 1)
        obs_dim = int(np.prod(self.envs.single_observation_space.shape))
        act_dim = int(np.prod(self.envs.single_action_space.shape))
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
        self.ofenet = self.agent.features if cfg.ofenet_units else None
        # Held-out transitions for OFENet's test loss: diverted from the replay, never trained on.
        self.holdout = (
            ReplayBuffer(obs_dim, act_dim, HOLDOUT_SIZE, self.device, seed=seeds["replay"] + 1)
            if self.ofenet
            else None
        )
        self.collector = Collector(self.envs, seeds["collect"], self.device, self.holdout)
        self.evaluator = Evaluator(cfg.env, seeds["eval"] % 2**31, cfg.eval_episodes)
        self.means = MetricMeans(
            list(self.agent.metric_names) + (["aux_loss"] if self.ofenet else [])
        )
        self.pretrained = False
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
        self.wall_offset = 0.0  # wall time of earlier parts of a resumed run
        self.last_eval: float | None = None

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
        self.grad_step += 1

    # --- checkpoints ----------------------------------------------------------------------
    def save(self) -> None:
        c = self.cfg
        state = {
            "format": FORMAT_VERSION,
            "env": c.env,
            "algo": c.algo,
            "grad_step": self.grad_step,
            "wall_time": self.wall_time(),
            "agent": self.agent.checkpoint_state(),
            "collector": self.collector.state_dict(),
            "rng": {"torch": torch.get_rng_state()},
            "replay": self.replay.state_dict() if c.checkpoint_replay else None,
            "holdout": self.holdout.state_dict() if c.checkpoint_replay and self.holdout else None,
            "pretrained": self.pretrained,
        }
        if self.device.type == "cuda":
            state["rng"]["cuda"] = torch.cuda.get_rng_state(self.device)
        save_atomic(state, self.run_dir / CHECKPOINT)

    def restore(self, state: dict | None = None) -> None:
        """Continue from `state` (an already loaded checkpoint) or from the run's checkpoint."""
        if state is None:
            state = load_checkpoint(self.run_dir, map_location=self.device)
        self.agent.load_checkpoint_state(state["agent"])
        self.collector.load_state_dict(state["collector"])
        self.collector.reset()
        torch.set_rng_state(state["rng"]["torch"].cpu())
        if "cuda" in state["rng"] and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng"]["cuda"].cpu(), self.device)
        if state.get("replay") is not None:
            self.replay.load_state_dict(state["replay"])
        if state.get("holdout") is not None and self.holdout is not None:
            self.holdout.load_state_dict(state["holdout"])
        self.pretrained = bool(state.get("pretrained", False))
        self.grad_step = int(state["grad_step"])
        self.wall_offset = float(state["wall_time"])

    def wall_time(self) -> float:
        return self.wall_offset + time.perf_counter() - self._t0

    # --- the loop -------------------------------------------------------------------------
    def fill(self) -> None:
        """Random warm-up (A.4). A run resumed without its stored buffer refills it with
        `warmup` steps of the current policy instead. Either way one batch must be there."""
        c, flag = self.cfg, self._flag
        if self.grad_step == 0:
            while self.collector.env_steps < c.warmup and not flag.stop:
                self.collector.step(None, self.replay)
        elif self.replay.size == 0:
            while self.replay.size < min(c.warmup, c.buffer_size) and not flag.stop:
                self.collector.step(self.agent, self.replay)
        while self.replay.size < c.batch_size and not flag.stop:
            self.collector.step(self.agent, self.replay)

    def pretrain_ofenet(self) -> None:
        """OFENet's updates on the warm-up data before RL starts (10k in Ota et al. 2020)."""
        c = self.cfg
        for _ in range(c.ofenet_pretrain):
            if self._flag.stop:
                return
            b = self.replay.sample(c.batch_size)
            self.ofenet.update(b.obs, b.act, b.next_obs)
        self.pretrained = True

    def evaluate_and_log(self, logger: RunLogger, since: tuple[float, int, int]) -> None:
        returns = self.evaluator(self.agent)
        self.last_eval = float(returns.mean())
        t, g, e = since
        dt = max(time.perf_counter() - t, 1e-9)
        col = self.collector
        row: dict[str, object] = {
            "grad_step": self.grad_step,
            "env_step": col.env_steps,
            "wall_time": round(self.wall_time(), 3),
            "eval_return_mean": self.last_eval,
            "eval_return_std": float(returns.std()),
            "train_return_mean": float(np.mean(col.recent_returns)) if col.recent_returns else None,
            "episodes": col.episodes,
            "updates_per_s": (self.grad_step - g) / dt if self.grad_step > g else None,
            "env_steps_per_s": (col.env_steps - e) / dt if col.env_steps > e else None,
            **self.means.pop(),
        }
        if self.ofenet is not None and self.holdout.size:
            h = self.holdout.sample(min(HOLDOUT_BATCH, self.holdout.size))
            row["aux_loss_heldout"] = float(self.ofenet.eval_loss(h.obs, h.act, h.next_obs))
        logger.write(row)

    def run(self, resume: bool = False, state: dict | None = None) -> RunResult:
        c = self.cfg
        self._t0 = time.perf_counter()
        if resume:
            self.restore(state)
        else:
            self.save()  # a run killed before its first evaluation still has a checkpoint
        logger = RunLogger(
            self.run_dir,
            self.means.names + (["aux_loss_heldout"] if self.ofenet else []),
            resume_step=self.grad_step if resume else None,
        )
        interrupted = False
        try:
            with _StopFlag() as flag, make_progress(c.progress) as progress:
                self._flag = flag
                task = progress.add_task(
                    f"{c.algo} {c.env}",
                    total=c.steps,
                    completed=self.grad_step,
                    ups=0.0,
                    env_step=0,
                    last_eval="-",
                )
                self.fill()
                if self.ofenet is not None and not self.pretrained:
                    progress.update(task, description="OFENet pre-training")
                    self.pretrain_ofenet()
                    progress.update(task, description=f"{c.algo} {c.env}")
                since = (time.perf_counter(), self.grad_step, self.collector.env_steps)
                if self.grad_step == 0 and not flag.stop:
                    self.evaluate_and_log(logger, since)
                    since = (time.perf_counter(), self.grad_step, self.collector.env_steps)
                bar_t, bar_g = since[0], since[1]
                while self.grad_step < c.steps and not flag.stop:
                    self.collector.step(self.agent, self.replay)
                    self.learn_step()
                    if self.grad_step % c.eval_every == 0 or self.grad_step == c.steps:
                        self.evaluate_and_log(logger, since)
                        self.save()
                        since = (time.perf_counter(), self.grad_step, self.collector.env_steps)
                    if self.grad_step % PROGRESS_EVERY == 0:
                        now = time.perf_counter()
                        progress.update(
                            task,
                            completed=self.grad_step,
                            ups=(self.grad_step - bar_g) / max(now - bar_t, 1e-9),
                            env_step=self.collector.env_steps,
                            last_eval="-" if self.last_eval is None else f"{self.last_eval:.1f}",
                        )
                        bar_t, bar_g = now, self.grad_step
                interrupted = flag.stop
                if interrupted:
                    self.save()
        finally:
            logger.close()
            self.evaluator.close()
            self.envs.close()
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
            self.collector.env_steps,
            self.last_eval,
            interrupted,
            curve,
        )
