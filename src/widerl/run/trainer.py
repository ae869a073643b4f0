"""The trainer: it only sequences the run's parts (build.Run): random warm-up (A.4), the
feature learner's pre-training, then learning steps, with an evaluation row and a checkpoint
every `eval_every` updates.

Ctrl-C or SIGTERM stops at a clean point and saves; a non-finite loss, Q value or parameter
stops the run without overwriting the last finite checkpoint (`Diverged`). With
`--checkpoint-replay` a checkpoint holds everything the rest of the run depends on, so an
interrupted run resumes as the run that was not interrupted (on CPU, `--actors 0`).

With `seeds` (`widerl train --seeds`) the trainer runs one independent agent per seed in one
process: the networks of all seeds stacked along the members dimension and trained by one
learning step, everything else per seed (build.Lane). Each seed writes its own run folder
`<out>/s<seed>/`, exactly a single run's; a single run is the case of one seed.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from widerl.collect.sources import Lanes
from widerl.config import Config
from widerl.record.folder import write_config
from widerl.record.logger import MetricMeans, RunBar, RunLogger
from widerl.record.names import RUN_LOG
from widerl.record.plot import plot_learning_curve
from widerl.record.seeds import seed_dir, write_seeds
from widerl.record.tracking import open_tracker
from widerl.replay.buffer import Batch
from widerl.run.build import Run, build, derive_seeds
from widerl.run.compiling import CompileChoice, start_second_graph, start_warm_up, step_key
from widerl.run.device import resolve_device
from widerl.run.divergence import FiniteCheck
from widerl.run.members import Layout
from widerl.run.rows import write_rows
from widerl.run.saving import Saving
from widerl.run.signals import StopSignals
from widerl.run.step import stack_batches

__all__ = ["Progress", "RunResult", "Trainer", "derive_seeds", "resolve_device"]


@dataclass
class RunResult:
    """A run's end; with several seeds `last_eval` and `curve` are the first seed's, and
    `last_evals`, `curves` every seed's."""

    run_dir: Path
    grad_step: int
    env_step: int
    last_eval: float | None
    interrupted: bool
    curve: Path | None
    last_evals: list[float | None] = field(default_factory=list)
    curves: list[Path | None] = field(default_factory=list)


@dataclass
class Progress:
    """The trainer's counters (checkpointed with the run, checkpoint.pack_run); `means` and
    `last_eval` have one entry per seed."""

    means: list[MetricMeans]
    grad_step: int = 0
    logged_step: int = -1  # grad_step of the last metrics row written; -1: none yet
    pretrain_steps: int = 0  # feature-learner pre-training updates done
    pretrained: bool = False
    saved_step: int | None = None  # grad_step of the last checkpoint written
    last_eval: list[float | None] = field(default_factory=list)
    last_idx: torch.Tensor | None = None  # the rows of the last batch `[K, B]` (weight_age)


class Trainer:
    def __init__(self, cfg: Config, run_dir: Path, seeds: list[int] | None = None) -> None:
        """A run of `cfg` in `run_dir`, or with `seeds` one run per seed in
        `run_dir/s<seed>/` (each seed's config is `cfg` with that seed)."""
        self.cfg, self.run_dir = cfg, Path(run_dir)
        self.parts: Run = build(cfg, seeds)
        p = self.parts
        if seeds is None:
            self.run_dirs = [self.run_dir]
        else:
            self.run_dirs = [seed_dir(self.run_dir, s) for s in seeds]
            for lane, d in zip(p.lanes, self.run_dirs, strict=True):
                lane.cfg.out = str(d)
                d.mkdir(parents=True, exist_ok=True)
            write_seeds(self.run_dir, list(seeds))
        names = list(p.agent.metric_names)
        if p.features.metric_name:
            names.append(p.features.metric_name)
        self.progress = Progress([MetricMeans(names) for _ in p.lanes])
        self.progress.last_eval = [None] * len(p.lanes)
        self.check_finite = FiniteCheck(p.agent)
        # Which parts of the stacked agent's state are whose (a single run keeps it whole).
        self.layout = None
        if len(p.lanes) > 1:
            self.layout = Layout(cfg, p.dims["obs_dim"], p.dims["act_dim"], len(p.lanes))
        for lane, d in zip(p.lanes, self.run_dirs, strict=True):
            write_config(d, lane.cfg, dims=p.dims)
        self.saving = Saving(p, self.progress, self.run_dir, self.run_dirs, self.layout,
                             self.wall_time)  # fmt: skip
        # --compile: on from the first update, off, or auto's decision by payoff.
        key = step_key(cfg, p.dims, p.device, len(p.lanes))
        self.compile_choice = CompileChoice(
            cfg.compile, p.learner, key, p.device, self.log,
            warm_up=lambda: start_warm_up(cfg, seeds, p.dims, p.device, key), per_call=cfg.utd,
            second_graph=lambda at, backend: start_second_graph(
                cfg, seeds, p.dims, p.device, key, at, backend),
        )  # fmt: skip

    # The parts tests and tools look at (the first seed's, a single run's only ones).
    agent = property(lambda self: self.parts.agent)
    replay = property(lambda self: self.parts.replay)
    means = property(lambda self: self.progress.means[0])
    grad_step = property(lambda self: self.progress.grad_step)

    def log(self, line: str) -> None:
        """One line of the run's own account (run.log of every seed's folder)."""
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        for d in self.run_dirs:
            with (d / RUN_LOG).open("a") as f:
                f.write(f"{stamp} {line}\n")

    def wall_time(self) -> float:
        return self._wall_offset + time.perf_counter() - self._t0

    # --- the steps ----------------------------------------------------------------------------
    def take(self, lanes: Lanes) -> None:
        for lane, chunks in zip(self.parts.lanes, lanes, strict=True):
            for chunk in chunks:
                lane.intake.add(chunk, self.progress.grad_step)
        self.parts.agent.set_reward_scale([lane.intake.returns for lane in self.parts.lanes])

    def learn_step(self) -> None:
        """The next update, or with --utd K the K updates of this env step (`updates_now`),
        in one call of the learning step (run/step.py)."""
        pr = self.progress
        n = self.updates_now()
        metrics = self.compile_choice(pr.grad_step, self.cfg.steps, n)
        values = torch.stack([metrics[name] for name in pr.means[0].names])  # [names, (n,) K]
        if n == 1:
            values = values.unsqueeze(1)
        for j in range(n):
            for k, means in enumerate(pr.means):
                means.add_values(values[:, j, k])
        pr.last_idx = metrics["idx"] if n == 1 else metrics["idx"][-1]
        pr.grad_step += n

    def updates_now(self) -> int:
        """--utd K: the K updates of an env step in one call, unless they would cross an
        evaluation, a reset (--reset-every) or the end of the run: then one at a time."""
        c, g = self.cfg, self.progress.grad_step
        k = c.utd
        if k == 1 or g % k:
            return 1
        bounds = [c.steps, (g // c.eval_every + 1) * c.eval_every]
        if c.reset_every:
            bounds.append((g // c.reset_every + 1) * c.reset_every)
        return k if g + k <= min(bounds) else 1

    def fill(self, stop: StopSignals) -> None:
        """Random warm-up (A.4). A run resumed without its stored buffer refills it with
        `warmup` steps of the current policy instead. Either way one batch must be there.
        Every seed's replay fills alike (one env step per seed per round)."""
        c, p, pr = self.cfg, self.parts, self.progress
        fresh = pr.grad_step == 0
        refill = not fresh and min(lane.replay.size for lane in p.lanes) == 0
        while not stop.stop:
            env_steps = min(lane.intake.env_steps for lane in p.lanes)
            size = min(lane.replay.size for lane in p.lanes)
            random = fresh and env_steps < c.warmup
            refilling = refill and size < min(c.warmup, c.buffer_size)
            if not random and not refilling and size >= c.batch_size:
                return
            left = c.warmup - env_steps if random else None
            self.take(p.source.warmup(random, left, pr.grad_step))

    def sample(self) -> Batch:
        """A batch of every seed's replay, stacked `[K, B, ...]`."""
        return stack_batches([lane.replay.sample(self.cfg.batch_size) for lane in self.parts.lanes])

    def pretrain(self, stop: StopSignals) -> None:
        """The feature learner's updates on the warm-up data before RL starts (OFENet: 10k,
        Ota et al. 2020)."""
        p, pr = self.parts, self.progress
        while pr.pretrain_steps < p.features.pretrain_updates and not stop.stop:
            b = self.sample()
            p.features.learn(b)
            pr.pretrain_steps += 1
        pr.pretrained = not stop.stop

    def evaluate_and_log(
        self, loggers: list[RunLogger], since: list[tuple[float, int, int]]
    ) -> None:
        """Every seed's row (run/rows.py), after the divergence check."""
        write_rows(self.parts, self.progress, loggers, since, self.wall_time(), self.check_finite)

    def _since(self) -> list[tuple[float, int, int]]:
        now = time.perf_counter()
        return [(now, self.progress.grad_step, lane.intake.env_steps) for lane in self.parts.lanes]

    # --- checkpoints (run/saving.py) ----------------------------------------------------------
    def save(self) -> None:
        """Every seed's checkpoint, unless something became non-finite since the last check:
        then `Diverged`, and the last finite checkpoints stay."""
        self.saving.save(self.check_finite)

    def restore(self, state: dict | list[dict] | None = None) -> None:
        """Continue from `state` (already loaded checkpoints: one, or one per seed) or from the
        seeds' checkpoints."""
        self._wall_offset = self.saving.restore(state)

    # --- the run ------------------------------------------------------------------------------
    def run(
        self,
        resume: bool = False,
        state: dict | list[dict] | None = None,
        stop: StopSignals | None = None,
    ) -> RunResult:
        """Train to `cfg.steps`: warm-up, the feature learner's pre-training, the first row,
        the learning loop, the curves. `stop` is the caller's StopSignals when it installed
        them before building the trainer (the CLI does, so that a signal at any moment
        counts); otherwise the run installs its own."""
        p, pr = self.parts, self.progress
        self._t0, self._wall_offset = time.perf_counter(), 0.0
        if resume:
            self.restore(state)
        else:
            self.save()  # a run killed before its first evaluation still has a checkpoint
        loggers: list[RunLogger] = []
        signals = contextlib.nullcontext(stop) if stop is not None else StopSignals()
        interrupted = False
        try:
            with self.saving.failures(self.save, self.check_finite):
                self.compile_choice.start()  # --compile on: a cold compile's second process
                loggers = self._loggers(resume)
                with signals as flag, self._bar() as bar:
                    self.warm_up(flag, bar)
                    since = self._since()
                    if pr.grad_step == 0 and pr.logged_step < 0 and not flag.stop:
                        self.evaluate_and_log(loggers, since)
                        since = self._since()
                    self.learn(flag, bar, loggers, since)
                    interrupted = flag.stop
                    if interrupted:
                        self.save()
        finally:
            p.close()
            self.compile_choice.close()
            for logger in loggers:
                logger.close()
        return self._finish(interrupted)

    def warm_up(self, flag: StopSignals, bar: RunBar) -> None:
        """Start collection, fill the replay (A.4), draw the srank probe from the complete
        warm-up and pre-train the feature learner (OFENet)."""
        p, pr = self.parts, self.progress
        if not flag.stop:
            bar.stage("starting collection")
            p.source.start(p.agent, pr.grad_step, stop=lambda: flag.stop)
            bar.stage("warm-up")
        self.fill(flag)
        if p.replay.size and not flag.stop:  # only a complete warm-up gives the probe
            for lane in p.lanes:
                lane.probes.draw_probe()
        if not pr.pretrained and not flag.stop:
            bar.stage("feature pre-training")
            self.pretrain(flag)
        bar.stage()

    def learn(self, flag: StopSignals, bar: RunBar, loggers: list[RunLogger],
              since: list[tuple[float, int, int]]) -> None:  # fmt: skip
        """Learning steps to --steps (or a stop), --utd of them per env step, with a row and a
        checkpoint every --eval-every."""
        c, p, pr = self.cfg, self.parts, self.progress
        bar.start(since[0][:2])
        p.source.begin(pr.grad_step, p.intake.env_steps)
        while pr.grad_step < c.steps and not flag.stop:
            # BRO's full reset before update g+1 for every g = k * --reset-every (so a run
            # resumed from the checkpoint at g resets too); the replay stays.
            if c.reset_every and pr.grad_step and pr.grad_step % c.reset_every == 0:
                p.agent.reset_networks()
            if pr.grad_step % c.utd == 0:  # --utd updates per env step
                self.take(p.source.step(pr.grad_step, p.intake.env_steps))
            self.learn_step()
            if pr.grad_step % c.eval_every == 0 or pr.grad_step == c.steps:
                self.evaluate_and_log(loggers, since)
                self.save()
                since = self._since()
            bar.tick(pr.grad_step, p.intake.env_steps, pr.last_eval)

    def _loggers(self, resume: bool) -> list[RunLogger]:
        p, pr = self.parts, self.progress
        heldout = [f"{p.features.metric_name}_heldout"] if p.features.has_heldout else []
        names = pr.means[0].names + heldout
        seeds_run = self.run_dirs != [self.run_dir]
        return [
            RunLogger(d, names, pr.logged_step if resume else None,
                      open_tracker(lane.cfg, d, seeds_run))  # --wandb, else None
            for lane, d in zip(p.lanes, self.run_dirs, strict=True)
        ]  # fmt: skip

    def _bar(self) -> RunBar:
        c, pr = self.cfg, self.progress
        seeds = "" if self.layout is None else f" seeds {','.join(self._seed_names())}"
        return RunBar(c.progress, f"{c.algo} {c.env}{seeds}", c.steps, pr.grad_step,
                      self.parts.intake.env_steps)  # fmt: skip

    def _finish(self, interrupted: bool) -> RunResult:
        """Each seed's learning curve (not for a run stopped early) and the result."""
        c, p, pr = self.cfg, self.parts, self.progress
        curves: list[Path | None] = [None] * len(self.run_dirs)
        if not interrupted:
            for k, (lane, d) in enumerate(zip(p.lanes, self.run_dirs, strict=True)):
                title = f"{c.algo.upper()} {c.arch} {c.units}x{c.layers}, {c.env}"
                if self.layout is not None:
                    title += f", seed {lane.cfg.seed}"
                curves[k] = plot_learning_curve(d, title)
        return RunResult(self.run_dir, pr.grad_step, p.intake.env_steps, pr.last_eval[0],
                         interrupted, curves[0], last_evals=list(pr.last_eval),
                         curves=curves)  # fmt: skip

    def _seed_names(self) -> list[str]:
        return [str(lane.cfg.seed) for lane in self.parts.lanes]
