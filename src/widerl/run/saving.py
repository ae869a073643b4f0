"""A run's checkpoints, one per seed: written whole (after the finiteness check), restored
(the seeds' shares stacked back into one agent), and what a run that stops for a divergence
or a folder that stops taking writes leaves behind, with the one line the user reads."""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from widerl.errors import CollectorsFailed, ConfigError, Diverged, OutputFailed
from widerl.record.checkpoint import load_checkpoint, pack_run, save_atomic, unpack_run
from widerl.record.folder import write_divergence
from widerl.record.names import CHECKPOINT
from widerl.run.build import Run
from widerl.run.divergence import FiniteCheck
from widerl.run.members import Layout


class Saving:
    """The checkpoints of `parts`' seeds in `run_dirs` (`layout`: which share of the stacked
    agent is whose; None for a single run)."""

    def __init__(
        self,
        parts: Run,
        progress: Any,
        run_dir: Path,
        run_dirs: list[Path],
        layout: Layout | None,
        wall_time: Callable[[], float],
    ) -> None:
        self.parts, self.progress, self.layout = parts, progress, layout
        self.run_dir, self.run_dirs = run_dir, run_dirs
        self.wall_time = wall_time

    def save(self, check_finite: FiniteCheck) -> None:
        """Every seed's checkpoint, unless something became non-finite since the last check:
        then `Diverged`, and the last finite checkpoints stay."""
        pr = self.progress
        check_finite([m.read() for m in pr.means], pr.grad_step)
        self.save_lanes(range(len(self.parts.lanes)))

    def save_lanes(self, lanes: Iterable[int]) -> None:
        p, pr = self.parts, self.progress
        wall = self.wall_time()
        full = p.agent.checkpoint_state()
        for k in lanes:
            agent = full if self.layout is None else self.layout.take(full, k)
            save_atomic(pack_run(p, pr, wall, lane=k, agent=agent), self.run_dirs[k] / CHECKPOINT)
        pr.saved_step = pr.grad_step

    def restore(self, state: dict | list[dict] | None) -> float:
        """Continue from `state` (already loaded checkpoints: one, or one per seed) or from the
        seeds' checkpoints; returns the wall time so far."""
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
        return unpack_run(states, self.parts, self.progress, agent)

    def diverged(self, e: Diverged, check_finite: FiniteCheck) -> Diverged:
        """Record a divergence in the diverged seed's folder (so `--resume` can say so);
        nothing non-finite is ever saved (`save` checks first). The other seeds save their
        checkpoints now: they are finite and continue alone with `--resume` of their
        folders."""
        k, pr = e.lane, self.progress
        run_dir = self.run_dirs[k]
        saved = pr.saved_step
        kept = "" if saved is None else (
            f"; the last finite checkpoint (update {saved}) is kept in {run_dir}")  # fmt: skip
        bad = {d.lane for d in check_finite.failures([m.read() for m in pr.means], pr.grad_step)}
        others = [i for i in range(len(self.run_dirs)) if i != k and i not in bad]
        if others:
            kept += (
                f"; the other seeds' checkpoints are saved at update {pr.grad_step} (continue "
                "each with `widerl train --resume` of its folder)"
            )
            with contextlib.suppress(Exception):  # the divergence is what the user must see
                self.save_lanes(others)
        out = Diverged(e.quantity, e.update, e.by, kept)
        out.lane = k
        write_divergence(run_dir, {"quantity": e.quantity, "update": e.update, "by": e.by,
                                   "checkpoint_step": saved, "message": str(out)})  # fmt: skip
        return out

    @contextlib.contextmanager
    def failures(self, save: Callable[[], None], check_finite: FiniteCheck) -> Iterator[None]:
        """A run's failures as the user reads them (exit 1, one line each): collectors that
        keep dying (what was learned since the last row is saved first), a divergence
        (`diverged`), a folder that stops taking writes (`output_failed`)."""
        try:
            yield
        except CollectorsFailed as e:
            # Keep what was learned since the last evaluation: the run resumes once the
            # cause (an env or collector bug) is fixed.
            try:
                save()
            except Diverged as d:
                raise self.diverged(d, check_finite) from None
            raise CollectorsFailed(
                f"{e}; checkpoint saved at update {self.progress.grad_step}, continue with "
                f"`widerl train --resume {self.run_dir}`"
            ) from e
        except Diverged as e:
            raise self.diverged(e, check_finite) from None
        except OSError as e:
            failed = self.output_failed(e)
            if failed is None:
                raise
            raise failed from None

    def output_failed(self, e: OSError) -> OutputFailed | None:
        """The one line for a write into the run's folders that failed (a full disk, a lost
        permission, a read-only remount); None for an OSError of anything else (an env's)."""
        name = str(e.filename or "")
        ours = any(name.startswith(str(d)) for d in (self.run_dir, *self.run_dirs))
        if not ours and e.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
            return None
        pr = self.progress
        kept = "none yet" if pr.saved_step is None else f"update {pr.saved_step}"
        return OutputFailed(
            f"cannot write {e.filename or self.run_dir!s} ({e.strerror or e}); the run stopped "
            f"at update {pr.grad_step} and its last checkpoint ({kept}) is kept: once the folder "
            f"takes writes again, continue with `widerl train --resume {self.run_dir}`"
        )
