"""The trainer: it only sequences the run's parts (build.Run): random warm-up (A.4), the
feature learner's pre-training, then learning steps, with an evaluation row and a checkpoint
every `eval_every` updates.

Ctrl-C or SIGTERM stops at a clean point and saves; a non-finite loss, Q value or parameter
stops the run without overwriting the last finite checkpoint (`Diverged`). With
`--checkpoint-replay` a checkpoint holds everything the rest of the run depends on, so an
interrupted run resumes as the run that was not interrupted (on CPU, `--actors 0`).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from widerl.build import Run, build, derive_seeds
from widerl.checkpoint import load_checkpoint, pack_run, save_atomic, unpack_run
from widerl.config import Config
from widerl.device import resolve_device
from widerl.divergence import FiniteCheck
from widerl.errors import CollectorsFailed, Diverged
from widerl.layout import CHECKPOINT
from widerl.logger import MetricMeans, RunLogger, make_progress
from widerl.plot import plot_learning_curve
from widerl.rows import evaluation_row
from widerl.rundir import write_config, write_divergence
from widerl.signals import StopSignals

__all__ = ["Progress", "RunResult", "Trainer", "derive_seeds", "resolve_device"]

PROGRESS_EVERY = 100  # updates between progress-bar refreshes


@dataclass
class RunResult:
    run_dir: Path
    grad_step: int
    env_step: int
    last_eval: float | None
    interrupted: bool
    curve: Path | None


@dataclass
class Progress:
    """The trainer's counters (checkpointed with the run, checkpoint.pack_run)."""

    means: MetricMeans
    grad_step: int = 0
    logged_step: int = -1  # grad_step of the last metrics row written; -1: none yet
    pretrain_steps: int = 0  # feature-learner pre-training updates done
    pretrained: bool = False
    saved_step: int | None = None  # grad_step of the last checkpoint written
    last_eval: float | None = None
    last_idx: torch.Tensor | None = None  # the rows of the last batch (weight_age)


class Trainer:
    def __init__(self, cfg: Config, run_dir: Path) -> None:
        self.cfg, self.run_dir = cfg, Path(run_dir)
        self.parts: Run = build(cfg)
        p = self.parts
        names = list(p.agent.metric_names)
        if p.features.metric_name:
            names.append(p.features.metric_name)
        self.progress = Progress(MetricMeans(names))
        self.check_finite = FiniteCheck(p.agent)
        write_config(self.run_dir, cfg, dims=p.dims)

    # The parts tests and tools look at.
    agent = property(lambda self: self.parts.agent)
    replay = property(lambda self: self.parts.replay)
    means = property(lambda self: self.progress.means)
    grad_step = property(lambda self: self.progress.grad_step)

    def wall_time(self) -> float:
        return self._wall_offset + time.perf_counter() - self._t0

    # --- the steps ----------------------------------------------------------------------------
    def take(self, chunks: list) -> None:
        for chunk in chunks:
            self.parts.intake.add(chunk, self.progress.grad_step)

    def learn_step(self) -> None:
        pr = self.progress
        metrics = self.parts.learner(pr.grad_step, self.cfg.steps)
        pr.means.add(metrics)
        pr.last_idx = metrics["idx"]
        pr.grad_step += 1

    def fill(self, stop: StopSignals) -> None:
        """Random warm-up (A.4). A run resumed without its stored buffer refills it with
        `warmup` steps of the current policy instead. Either way one batch must be there."""
        c, p, pr = self.cfg, self.parts, self.progress
        fresh, intake = pr.grad_step == 0, p.intake
        refill = not fresh and p.replay.size == 0
        while not stop.stop:
            random = fresh and intake.env_steps < c.warmup
            refilling = refill and p.replay.size < min(c.warmup, c.buffer_size)
            if not random and not refilling and p.replay.size >= c.batch_size:
                return
            left = c.warmup - intake.env_steps if random else None
            self.take(p.source.warmup(random, left, pr.grad_step))

    def pretrain(self, stop: StopSignals) -> None:
        """The feature learner's updates on the warm-up data before RL starts (OFENet: 10k,
        Ota et al. 2020)."""
        c, p, pr = self.cfg, self.parts, self.progress
        while pr.pretrain_steps < p.features.pretrain_updates and not stop.stop:
            b = p.replay.sample(c.batch_size)
            p.features.update(b.obs, b.act, b.next_obs)
            pr.pretrain_steps += 1
        pr.pretrained = not stop.stop

    def evaluate_and_log(self, logger: RunLogger, since: tuple[float, int, int]) -> None:
        p, pr = self.parts, self.progress
        # The divergence check comes first: evaluating or measuring srank with non-finite
        # weights would fail or log garbage.
        window = pr.means.read()
        self.check_finite(window, pr.grad_step)
        pr.means.reset()
        sranks = p.probes.sranks(pr.grad_step)
        returns = p.evaluator(p.agent)
        pr.last_eval = float(returns.mean())
        row = evaluation_row(p, pr, returns, since, self.wall_time(), sranks, window.means)
        logger.write(row)
        pr.logged_step = pr.grad_step
        for i, ret in enumerate(p.intake.collector_returns(max(self.cfg.actors, 1))):
            if ret is not None:
                logger.tb.add_scalar(f"collector/{i}/return", ret, pr.grad_step)

    # --- checkpoints --------------------------------------------------------------------------
    def save(self) -> None:
        """Write the checkpoint, unless something became non-finite since the last check:
        then `Diverged`, and the last finite checkpoint stays."""
        self.check_finite(self.progress.means.read(), self.progress.grad_step)
        save_atomic(
            pack_run(self.parts, self.progress, self.wall_time()), self.run_dir / CHECKPOINT
        )
        self.progress.saved_step = self.progress.grad_step

    def restore(self, state: dict | None = None) -> None:
        """Continue from `state` (an already loaded checkpoint) or from the run's checkpoint."""
        if state is None:
            state = load_checkpoint(self.run_dir, map_location=self.parts.device)
        self._wall_offset = unpack_run(state, self.parts, self.progress)

    def _diverged(self, e: Diverged) -> Diverged:
        """Record a divergence in the run folder (so `--resume` can say so); nothing
        non-finite is ever saved (`save` checks first)."""
        saved = self.progress.saved_step
        kept = (
            ""
            if saved is None
            else (f"; the last finite checkpoint (update {saved}) is kept in {self.run_dir}")
        )
        out = Diverged(e.quantity, e.update, e.by, kept)
        write_divergence(self.run_dir, {"quantity": e.quantity, "update": e.update, "by": e.by,
                                        "checkpoint_step": saved, "message": str(out)})  # fmt: skip
        return out

    # --- the run ------------------------------------------------------------------------------
    def run(
        self, resume: bool = False, state: dict | None = None, stop: StopSignals | None = None
    ) -> RunResult:
        """Train to `cfg.steps`. `stop` is the caller's StopSignals when it installed them
        before building the trainer (the CLI does, so that a signal at any moment counts);
        otherwise the run installs its own."""
        c, p, pr = self.cfg, self.parts, self.progress
        self._t0, self._wall_offset = time.perf_counter(), 0.0
        if resume:
            self.restore(state)
        else:
            self.save()  # a run killed before its first evaluation still has a checkpoint
        heldout = [f"{p.features.metric_name}_heldout"] if p.features.has_heldout else []
        logger = RunLogger(
            self.run_dir, pr.means.names + heldout, pr.logged_step if resume else None
        )
        signals = contextlib.nullcontext(stop) if stop is not None else StopSignals()
        interrupted = False
        try:
            with signals as flag, make_progress(c.progress) as bar:
                task = bar.add_task(
                    f"{c.algo} {c.env}",
                    total=c.steps,
                    completed=pr.grad_step,
                    ups=0.0,
                    env_step=p.intake.env_steps,
                    last_eval="-",
                )
                if not flag.stop:
                    bar.update(task, description="starting collection")
                    p.source.start(p.agent, pr.grad_step, stop=lambda: flag.stop)
                    bar.update(task, description="warm-up")
                self.fill(flag)
                if p.replay.size and not flag.stop:  # only a complete warm-up gives the probe
                    p.probes.draw_probe()
                if not pr.pretrained and not flag.stop:
                    bar.update(task, description="feature pre-training")
                    self.pretrain(flag)
                bar.update(task, description=f"{c.algo} {c.env}")
                since = (time.perf_counter(), pr.grad_step, p.intake.env_steps)
                if pr.grad_step == 0 and pr.logged_step < 0 and not flag.stop:
                    self.evaluate_and_log(logger, since)
                    since = (time.perf_counter(), pr.grad_step, p.intake.env_steps)
                bar_t, bar_g = since[0], since[1]
                p.source.begin(pr.grad_step, p.intake.env_steps)
                while pr.grad_step < c.steps and not flag.stop:
                    # BRO's full reset before update g+1 for every g = k * --reset-every (so a
                    # run resumed from the checkpoint at g resets too); the replay stays.
                    if c.reset_every and pr.grad_step and pr.grad_step % c.reset_every == 0:
                        p.agent.reset_networks()
                    if pr.grad_step % c.utd == 0:  # --utd updates per env step
                        self.take(p.source.step(pr.grad_step, p.intake.env_steps))
                    self.learn_step()
                    if pr.grad_step % c.eval_every == 0 or pr.grad_step == c.steps:
                        self.evaluate_and_log(logger, since)
                        self.save()
                        since = (time.perf_counter(), pr.grad_step, p.intake.env_steps)
                    if pr.grad_step % PROGRESS_EVERY == 0:
                        now = time.perf_counter()
                        ups = (pr.grad_step - bar_g) / max(now - bar_t, 1e-9)
                        last = "-" if pr.last_eval is None else f"{pr.last_eval:.1f}"
                        bar.update(task, completed=pr.grad_step, ups=ups,
                                   env_step=p.intake.env_steps, last_eval=last)  # fmt: skip
                        bar_t, bar_g = now, pr.grad_step
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
                f"{e}; checkpoint saved at update {pr.grad_step}, continue with "
                f"`widerl train --resume {self.run_dir}`"
            ) from e
        except Diverged as e:
            raise self._diverged(e) from None
        finally:
            p.close()
            logger.close()
        curve = None
        if not interrupted:
            title = f"{c.algo.upper()} {c.arch} {c.units}x{c.layers}, {c.env}"
            curve = plot_learning_curve(self.run_dir, title)
        return RunResult(
            self.run_dir, pr.grad_step, p.intake.env_steps, pr.last_eval, interrupted, curve
        )
