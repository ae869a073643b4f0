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
import errno
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from widerl.collect.sources import Lanes
from widerl.config import Config, ConfigError
from widerl.errors import CollectorsFailed, Diverged, OutputFailed
from widerl.record.checkpoint import load_checkpoint, pack_run, save_atomic, unpack_run
from widerl.record.folder import write_config, write_divergence
from widerl.record.logger import MetricMeans, RunLogger, make_progress
from widerl.record.names import CHECKPOINT
from widerl.record.plot import plot_learning_curve
from widerl.record.seeds import seed_dir, write_seeds
from widerl.replay.buffer import Batch
from widerl.run.build import Run, build, derive_seeds
from widerl.run.device import resolve_device
from widerl.run.divergence import FiniteCheck
from widerl.run.members import Layout
from widerl.run.probes import sranks as probe_sranks
from widerl.run.rows import evaluation_row, heldout_losses
from widerl.run.signals import StopSignals
from widerl.run.step import stack_batches

__all__ = ["Progress", "RunResult", "Trainer", "derive_seeds", "resolve_device"]

PROGRESS_EVERY = 100  # updates between progress-bar refreshes


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

    # The parts tests and tools look at (the first seed's, a single run's only ones).
    agent = property(lambda self: self.parts.agent)
    replay = property(lambda self: self.parts.replay)
    means = property(lambda self: self.progress.means[0])
    grad_step = property(lambda self: self.progress.grad_step)

    def wall_time(self) -> float:
        return self._wall_offset + time.perf_counter() - self._t0

    # --- the steps ----------------------------------------------------------------------------
    def take(self, lanes: Lanes) -> None:
        for lane, chunks in zip(self.parts.lanes, lanes, strict=True):
            for chunk in chunks:
                lane.intake.add(chunk, self.progress.grad_step)

    def learn_step(self) -> None:
        pr = self.progress
        metrics = self.parts.learner(pr.grad_step, self.cfg.steps)
        values = torch.stack([metrics[n] for n in pr.means[0].names])  # [names, K]
        for k, means in enumerate(pr.means):
            means.add_values(values[:, k])
        pr.last_idx = metrics["idx"]
        pr.grad_step += 1

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
            p.features.update(b.obs, b.act, b.next_obs)
            pr.pretrain_steps += 1
        pr.pretrained = not stop.stop

    def evaluate_and_log(
        self, loggers: list[RunLogger], since: list[tuple[float, int, int]]
    ) -> None:
        p, pr = self.parts, self.progress
        # The divergence check comes first: evaluating or measuring srank with non-finite
        # weights would fail or log garbage.
        windows = [m.read() for m in pr.means]
        self.check_finite(windows, pr.grad_step)
        for m in pr.means:
            m.reset()
        sranks = probe_sranks([lane.probes for lane in p.lanes], p.agent, pr.grad_step)
        returns = p.evaluator(p.agent)  # [K, episodes]
        heldout = heldout_losses(p)
        for lane, logger in zip(p.lanes, loggers, strict=True):
            k = lane.index
            pr.last_eval[k] = float(returns[k].mean())
            row = evaluation_row(p, lane, pr, returns[k], since[k], self.wall_time(), sranks[k],
                                 windows[k].means)  # fmt: skip
            if heldout[k] is not None:
                row[f"{p.features.metric_name}_heldout"] = heldout[k]
            logger.write(row)
            for i, ret in enumerate(lane.intake.collector_returns(max(self.cfg.actors, 1))):
                if ret is not None:
                    logger.tb.add_scalar(f"collector/{i}/return", ret, pr.grad_step)
        pr.logged_step = pr.grad_step

    def _since(self) -> list[tuple[float, int, int]]:
        now = time.perf_counter()
        return [(now, self.progress.grad_step, lane.intake.env_steps) for lane in self.parts.lanes]

    # --- checkpoints --------------------------------------------------------------------------
    def save(self) -> None:
        """Write every seed's checkpoint, unless something became non-finite since the last
        check: then `Diverged`, and the last finite checkpoints stay."""
        pr = self.progress
        self.check_finite([m.read() for m in pr.means], pr.grad_step)
        self._save_lanes(range(len(self.parts.lanes)))

    def _save_lanes(self, lanes: Iterable[int]) -> None:
        p, pr = self.parts, self.progress
        wall = self.wall_time()
        full = p.agent.checkpoint_state()
        for k in lanes:
            agent = full if self.layout is None else self.layout.take(full, k)
            save_atomic(pack_run(p, pr, wall, lane=k, agent=agent), self.run_dirs[k] / CHECKPOINT)
        pr.saved_step = pr.grad_step

    def restore(self, state: dict | list[dict] | None = None) -> None:
        """Continue from `state` (already loaded checkpoints: one, or one per seed) or from the
        seeds' checkpoints."""
        if state is None:
            # On the CPU, as the CLI loads them: each part moves what it keeps to its device,
            # and the host-side states (replay rows, envs, collectors) stay numpy-readable.
            states = [load_checkpoint(d) for d in self.run_dirs]
        else:
            states = state if isinstance(state, list) else [state]
        agent = states[0]["agent"]
        if self.layout is not None:
            where = [str(d / CHECKPOINT) for d in self.run_dirs]
            steps = {int(s["grad_step"]) for s in states}
            if len(steps) > 1:
                raise ConfigError(
                    f"the seeds' checkpoints in {str(self.run_dir)!r} are at different updates "
                    f"({', '.join(str(int(s['grad_step'])) for s in states)}), so they cannot "
                    "continue as one run of several seeds: resume each seed's folder alone"
                )
            agent = self.layout.stack([s["agent"] for s in states], where)
        self._wall_offset = unpack_run(states, self.parts, self.progress, agent)

    def _diverged(self, e: Diverged) -> Diverged:
        """Record a divergence in the diverged seed's folder (so `--resume` can say so);
        nothing non-finite is ever saved (`save` checks first). The other seeds save their
        checkpoints now: they are finite and continue alone with `--resume` of their
        folders."""
        k = e.lane
        run_dir = self.run_dirs[k]
        saved = self.progress.saved_step
        kept = (
            ""
            if saved is None
            else (f"; the last finite checkpoint (update {saved}) is kept in {run_dir}")
        )
        pr = self.progress
        bad = {d.lane for d in self.check_finite.failures([m.read() for m in pr.means],
                                                          pr.grad_step)}  # fmt: skip
        others = [i for i in range(len(self.run_dirs)) if i != k and i not in bad]
        if others:
            kept += (
                f"; the other seeds' checkpoints are saved at update "
                f"{self.progress.grad_step} (continue each with `widerl train --resume` of its "
                "folder)"
            )
            with contextlib.suppress(Exception):  # the divergence is what the user must see
                self._save_lanes(others)
        out = Diverged(e.quantity, e.update, e.by, kept)
        out.lane = k
        write_divergence(run_dir, {"quantity": e.quantity, "update": e.update, "by": e.by,
                                   "checkpoint_step": saved, "message": str(out)})  # fmt: skip
        return out

    # --- the run ------------------------------------------------------------------------------
    def run(
        self,
        resume: bool = False,
        state: dict | list[dict] | None = None,
        stop: StopSignals | None = None,
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
        loggers: list[RunLogger] = []
        signals = contextlib.nullcontext(stop) if stop is not None else StopSignals()
        interrupted = False
        try:
            for d in self.run_dirs:
                names = pr.means[0].names + heldout
                loggers.append(RunLogger(d, names, pr.logged_step if resume else None))
            with signals as flag, make_progress(c.progress) as bar:
                seeds = "" if self.layout is None else f" seeds {','.join(self._seed_names())}"
                title = f"{c.algo} {c.env}{seeds}"
                task = bar.add_task(
                    title,
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
                    for lane in p.lanes:
                        lane.probes.draw_probe()
                if not pr.pretrained and not flag.stop:
                    bar.update(task, description="feature pre-training")
                    self.pretrain(flag)
                bar.update(task, description=title)
                since = self._since()
                if pr.grad_step == 0 and pr.logged_step < 0 and not flag.stop:
                    self.evaluate_and_log(loggers, since)
                    since = self._since()
                bar_t, bar_g = since[0][0], since[0][1]
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
                        self.evaluate_and_log(loggers, since)
                        self.save()
                        since = self._since()
                    if pr.grad_step % PROGRESS_EVERY == 0:
                        now = time.perf_counter()
                        ups = (pr.grad_step - bar_g) / max(now - bar_t, 1e-9)
                        last = "/".join("-" if v is None else f"{v:.1f}" for v in pr.last_eval)
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
        except OSError as e:
            if not self._is_output_error(e):
                raise
            saved = pr.saved_step
            kept = "none yet" if saved is None else f"update {saved}"
            raise OutputFailed(
                f"cannot write {e.filename or self.run_dir!s} ({e.strerror or e}); the run "
                f"stopped at update {pr.grad_step} and its last checkpoint ({kept}) is kept: "
                f"once the folder takes writes again, continue with `widerl train --resume "
                f"{self.run_dir}`"
            ) from None
        finally:
            p.close()
            for logger in loggers:
                logger.close()
        curves: list[Path | None] = [None] * len(self.run_dirs)
        if not interrupted:
            for k, (lane, d) in enumerate(zip(p.lanes, self.run_dirs, strict=True)):
                title = f"{c.algo.upper()} {c.arch} {c.units}x{c.layers}, {c.env}"
                if self.layout is not None:
                    title += f", seed {lane.cfg.seed}"
                curves[k] = plot_learning_curve(d, title)
        return RunResult(
            self.run_dir,
            pr.grad_step,
            p.intake.env_steps,
            pr.last_eval[0],
            interrupted,
            curves[0],
            last_evals=list(pr.last_eval),
            curves=curves,
        )

    def _is_output_error(self, e: OSError) -> bool:
        """Whether `e` is a write into the run's folders failing (not an env's own error)."""
        if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
            return True
        name = str(e.filename or "")
        return any(name.startswith(str(d)) for d in (self.run_dir, *self.run_dirs))

    def _seed_names(self) -> list[str]:
        return [str(lane.cfg.seed) for lane in self.parts.lanes]
