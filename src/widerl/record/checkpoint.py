"""Atomic checkpoint writes and safe loads.

A checkpoint is written to a temporary file in the same folder, flushed to disk and then
renamed over the old one, so a run killed at any moment leaves either the previous or the
new checkpoint, never a torn one. Loading uses `torch.load(weights_only=True)`, which only
rebuilds tensors and plain containers: a checkpoint cannot run code when opened.
"""

from __future__ import annotations

import os
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

from widerl.config import ConfigError
from widerl.record.names import CHECKPOINT

# 2: networks are ensembles (weights [members, in, out], the critics one module); 1 was
# widerl 0.1's separate nn.Linear critics, which this version cannot load.
FORMAT_VERSION = 2


def save_atomic(obj: Any, path: Path) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(run_dir: Path, map_location: str | torch.device = "cpu") -> dict:
    """Load `run_dir/checkpoint.pt`; ConfigError (one line) if missing, unsafe or corrupt."""
    path = Path(run_dir) / CHECKPOINT
    if not path.is_file():
        raise ConfigError(f"no checkpoint in {str(run_dir)!r} (expected {path.name})")
    try:
        with warnings.catch_warnings():  # torch warns (several lines) about foreign pickles
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # pickle errors, truncated files, foreign objects
        raise ConfigError(
            f"cannot load checkpoint {str(path)!r}: {load_failure(e, path)}"
        ) from None
    if isinstance(state, dict) and state.get("format") == 1:
        raise ConfigError(
            f"{str(path)!r} was written by widerl 0.1 (checkpoint format 1, separate critic "
            f"networks); this version's networks are ensembles (format {FORMAT_VERSION}): train "
            "the run again, or load it with widerl 0.1"
        )
    if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION:
        raise ConfigError(f"{str(path)!r} is not a widerl checkpoint (format {FORMAT_VERSION})")
    return state


# --- the run's checkpoint: its schema, in one place ------------------------------------------
def pack_run(
    run: Any, progress: Any, wall_time: float, lane: int = 0, agent: dict | None = None
) -> dict[str, Any]:
    """Everything a resume of seed number `lane` needs, from the built run (`build.Run`) and
    the trainer's counters (`trainer.Progress`): a single run's checkpoint, whichever of a
    run's seeds it is. `agent` is that seed's share of the agent's state (default: the whole
    agent's, a single seed's). With --checkpoint-replay also the replay, the held-out buffer
    and the weight versions, so that a resumed run is the run that was not stopped."""
    part = run.lanes[lane]
    c = part.cfg
    exact = c.checkpoint_replay
    rng: dict[str, torch.Tensor] = {"torch": torch.get_rng_state()}
    if run.device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(run.device)
    intake = part.intake.state_dict(with_versions=exact)
    versions = intake.pop("versions")
    return on_cpu(
        {
            "format": FORMAT_VERSION,
            "env": c.env,
            "algo": c.algo,
            "grad_step": progress.grad_step,
            "wall_time": wall_time,
            "agent": run.agent.checkpoint_state() if agent is None else agent,
            "collector": {**intake, "inline": run.source.state_dict(lane)},
            "means": progress.means[lane].state_dict(),
            "logged_step": progress.logged_step,
            "pretrain_steps": progress.pretrain_steps,
            "pretrained": progress.pretrained,
            "rng": rng,
            "replay": part.replay.state_dict() if exact else None,
            "versions": versions,
            "holdout": part.holdout.state_dict() if exact and part.holdout is not None else None,
            **part.probes.state_dict(),
        }
    )


def on_cpu(tree: Any) -> Any:
    """`tree` with every tensor moved to the CPU: a checkpoint holds no device tensors, so it
    loads on any machine (with or without a GPU) as it is, and the state saved on one device
    restores onto another (generator states: generators.py)."""
    if isinstance(tree, torch.Tensor):
        return tree.detach().cpu()
    if isinstance(tree, dict):
        return {k: on_cpu(v) for k, v in tree.items()}
    if type(tree) in (list, tuple):
        return type(tree)(on_cpu(v) for v in tree)
    return tree


def unpack_run(states: list[dict[str, Any]], run: Any, progress: Any, agent: dict) -> float:
    """Restore the seeds' `pack_run` states (one per lane, in order) into `run` and
    `progress`, with `agent` the agent's state they make together; returns the wall time so
    far (the longest of the seeds')."""
    run.agent.load_checkpoint_state(agent)
    first = states[0]
    progress.grad_step = int(first["grad_step"])
    progress.logged_step = int(first.get("logged_step", first["grad_step"]))
    progress.pretrain_steps = int(first.get("pretrain_steps", 0))
    progress.pretrained = bool(first.get("pretrained", False))
    progress.saved_step = progress.grad_step
    torch.set_rng_state(first["rng"]["torch"].cpu())
    if "cuda" in first["rng"] and run.device.type == "cuda":
        torch.cuda.set_rng_state(first["rng"]["cuda"].cpu(), run.device)
    for lane, state in zip(run.lanes, states, strict=True):
        col = state["collector"]
        lane.intake.load_state_dict({**col, "versions": state.get("versions")})
        run.source.load_state_dict(
            col.get("inline"), continue_episodes=lane.cfg.checkpoint_replay, lane=lane.index
        )
        if state.get("means") is not None:
            progress.means[lane.index].load_state_dict(state["means"], run.device)
        if state.get("replay") is not None:
            lane.replay.load_state_dict(state["replay"])
        if state.get("holdout") is not None and lane.holdout is not None:
            lane.holdout.load_state_dict(state["holdout"])
        lane.probes.load_state_dict(state.get("probe"))
    run.agent.set_reward_scale([lane.intake.returns for lane in run.lanes])
    return max(float(s["wall_time"]) for s in states)


_ZIP_HEAD = b"PK\x03\x04"  # a local file header: torch.save's zip format starts with one
_ZIP_END = b"PK\x05\x06"  # the end-of-central-directory record, within the last 64 KiB + 22
_PICKLE_HEAD = b"\x80"  # the PROTO opcode of pickle protocol 2 and later


def load_failure(e: Exception, path: Path) -> str:
    """Why torch.load failed, as one whole sentence of our own, from the error and the file's
    bytes: torch's messages run over several lines of advice (including to load the file
    unsafely, which we never do) and differ by how the file is broken."""
    # torch 2.6+: "Unsupported global: GLOBAL posix.system was not an allowed global ...";
    # later: "Trying to load unsupported GLOBAL posix.system whose module posix is blocked."
    refused = re.search(r"\bGLOBAL ([\w.]+)", str(e))
    if refused:
        name = refused.group(1).rstrip(".")
        return (
            f"it would load the Python object {name}, which a safe (weights-only) load refuses "
            "because unpickling it could run code; widerl never opens a checkpoint unsafely"
        )
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(4)
            f.seek(max(size - 65_557, 0))
            tail = f.read()
    except OSError as err:
        return f"the file cannot be read ({err.strerror or err})"
    if size == 0:
        return "the file is empty (was it copied or written only in part?)"
    if head == _ZIP_HEAD and _ZIP_END not in tail:
        return (
            "the file is truncated: its torch zip archive has no end record (was it copied or "
            "written only in part?)"
        )
    if head == _ZIP_HEAD:
        return "the torch zip archive in the file is corrupt (a damaged copy?)"
    if head[:1] == _PICKLE_HEAD:
        return (
            "the file is a bare Python pickle (or part of one), not a torch checkpoint, and a "
            "safe (weights-only) load cannot read it"
        )
    return "the file is not a torch checkpoint (neither a torch zip archive nor a pickle)"
