"""A trained policy as one self-contained file: `widerl export RUN --format onnx|torchscript|pt2`.

The artifact is the deterministic policy `load_policy(RUN).act` computes, as one graph:

    obs   float32 [batch, obs_dim], the env's own observation units
      -> the acting features (obs-norm statistics, OFENet's acting copy, BatchNorm and Batch
         Renormalization on their running statistics)
      -> the actor's body and output layer, tanh (SAC and CrossQ: tanh of the Gaussian's mean;
         TD3: the deterministic actor, without exploration noise)
      -> [-1, 1] rescaled to the env's action bounds
    action float32 [batch, act_dim]

with a dynamic batch dimension. Formats: `onnx` (torch.onnx's exporter, which needs the
`export` extra: onnx and onnxscript; run it with onnxruntime), `torchscript` (a traced
ScriptModule, `torch.jit.load`) and `pt2` (a `torch.export` ExportedProgram saved with
`torch.export.save`; run `torch.export.load(f).module()`). Only the networks acting needs go
in: critics, targets, optimizers and the stochastic policy's noise stay behind.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from widerl.config import ConfigError
from widerl.errors import require
from widerl.policy import Policy, load_policy
from widerl.record.names import POLICY_FILES

FORMATS = ("onnx", "torchscript", "pt2")
SUFFIX = {"onnx": ".onnx", "torchscript": ".pt", "pt2": ".pt2"}
INPUT, OUTPUT = "obs", "action"  # the artifact's input and output names (ONNX)
ARG = "widerl export RUN_DIR"  # how messages name the run folder
EXAMPLE_BATCH = 2  # tracing example; 0 and 1 are sizes torch.export would specialise on


class DeterministicPolicy(nn.Module):
    """obs `[n, obs_dim]` -> action `[n, act_dim]` in the env's bounds: `Policy.act` for a
    deterministic policy, as one module holding only what acting reads."""

    def __init__(self, policy: Policy) -> None:
        super().__init__()
        agent = policy.agent
        # Copies, so that exporting leaves the loaded agent as it was.
        self.features = copy.deepcopy(agent.features)
        self.actor = copy.deepcopy(agent.actor)
        self.register_buffer("low", torch.as_tensor(policy.low, dtype=torch.float32))
        self.register_buffer("high", torch.as_tensor(policy.high, dtype=torch.float32))
        self.obs_dim, self.act_dim = policy.obs_dim, policy.act_dim
        self.eval().requires_grad_(False)
        _drop_unread(self)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        z_s = self.features.state(obs.unsqueeze(0))  # one seed: members dimension of 1
        a = self.actor.deterministic(z_s)[0]
        # [-1, 1] -> [low, high], the same float32 arithmetic as Policy.act.
        return self.low + (a + 1.0) * 0.5 * (self.high - self.low)


def _drop_unread(module: DeterministicPolicy) -> None:
    """Zero-size stand-ins for the tensors acting never reads (an OFENet's online copy and
    its state-action half, say), found as the unused inputs of the exported graph: a
    torch.export program and a traced module would otherwise carry them."""
    from torch.export.graph_signature import InputKind

    with _quiet(), torch.no_grad():
        program = torch.export.export(module, (_example(module),), dynamic_shapes=_dynamic())
    users = {n.name: len(n.users) for n in program.graph.nodes if n.op == "placeholder"}
    for spec in program.graph_signature.input_specs:
        if spec.kind in (InputKind.PARAMETER, InputKind.BUFFER) and not users[spec.arg.name]:
            owner, _, name = spec.target.rpartition(".")
            holder = module.get_submodule(owner)
            empty = torch.empty(0, dtype=getattr(holder, name).dtype)
            if name in holder._parameters:
                holder._parameters[name] = nn.Parameter(empty, requires_grad=False)
            else:
                holder._buffers[name] = empty


def _dynamic() -> tuple[dict[int, object]]:
    """The observation's first dimension, the batch, is dynamic."""
    return ({0: torch.export.Dim("batch")},)


def default_out(run_dir: Path, fmt: str) -> Path:
    """policy.onnx, policy.pt or policy.pt2 in the run folder (record/names.POLICY_FILES, which
    a `train --force` in that folder removes with the run)."""
    return Path(run_dir) / POLICY_FILES[FORMATS.index(fmt)]


def export(
    run_dir: str | Path,
    fmt: str | None = None,
    out: str | Path | None = None,
    seed: int | None = None,
    force: bool = False,
) -> Path:
    """Write the run's deterministic policy to `out` in format `fmt`; the path written.

    `fmt` None: the format `out`'s suffix names (.onnx, .pt, .pt2), else onnx. `out` None:
    policy.onnx / policy.pt / policy.pt2 in the run folder. A `--seeds` run exports seed
    `seed`'s policy (its folder s<seed>/); a single run takes `seed` only if it is the run's
    own. An existing `out` is kept unless `force`; the file appears whole or not at all."""
    fmt = pick_format(fmt, out)
    run_dir = seed_folder(Path(run_dir), seed)
    out = default_out(run_dir, fmt) if out is None else Path(out)
    if out.is_dir():
        raise ConfigError(f"--out {str(out)!r} is a folder; give the file to write")
    if out.exists() and not force:
        raise ConfigError(f"--out {str(out)!r} already exists; --force replaces it")
    if fmt == "onnx":  # what torch.onnx's exporter needs beside torch
        for package in ("onnx", "onnxscript"):
            require(package, "--format onnx", "export")
    policy = load_policy(run_dir, arg=ARG)  # a damaged run is refused before anything is made
    from widerl.record.paths import check_writable, os_message

    check_writable(out.parent, "--out")
    module = DeterministicPolicy(policy)
    tmp = out.with_name(f".{out.stem}.{os.getpid()}.tmp{out.suffix}")  # torch reads the suffix
    try:
        WRITERS[fmt](module, tmp, _metadata(policy))
        tmp.replace(out)
    except OSError as e:  # a full disk, a lost permission: one line, and no partial file
        raise ConfigError(os_message("--out", out, e)) from None
    finally:
        tmp.unlink(missing_ok=True)
    return out


def pick_format(fmt: str | None, out: str | Path | None) -> str:
    """The format asked for, or the one `out`'s suffix names; a suffix that names another
    format is refused (the runtimes, and `run_exported`, go by it)."""
    if fmt is not None and fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if out is None:
        return fmt or "onnx"
    suffix = Path(out).suffix
    named = {v: k for k, v in SUFFIX.items()}.get(suffix)
    if fmt is None:
        if named is None:
            raise ConfigError(
                f"--out {str(out)!r}: end the file in .onnx, .pt or .pt2 (the suffix names "
                "the format, for the runtimes that load it)"
            )
        return named
    if suffix != SUFFIX[fmt]:
        raise ConfigError(
            f"--out {str(out)!r} for --format {fmt}: the file must end in {SUFFIX[fmt]}"
        )
    return fmt


def seed_folder(run_dir: Path, seed: int | None) -> Path:
    """The run folder to export: `run_dir` itself, or seed `seed`'s folder of a `--seeds` run
    (a one-line error naming the seeds when none or another is given)."""
    from widerl.record.folder import load_config
    from widerl.record.seeds import read_seeds, seed_dir

    seeds = read_seeds(run_dir) if run_dir.is_dir() else None
    if seeds is not None:
        names = ", ".join(map(str, seeds))
        if seed is None:
            raise ConfigError(f"{ARG} {str(run_dir)!r} holds seeds {names}: pick one with --seed")
        if seed not in seeds:
            raise ConfigError(f"--seed {seed}: {str(run_dir)!r} holds seeds {names}")
        return seed_dir(run_dir, seed)
    if seed is not None:
        own = load_config(run_dir, ARG).seed
        if seed != own:
            raise ConfigError(
                f"--seed {seed}: {str(run_dir)!r} is one run, of seed {own} (--seed picks a "
                "seed of a --seeds run)"
            )
    return run_dir


def _metadata(policy: Policy) -> dict[str, str]:
    """What a user of the artifact needs to know, stored in it where the format allows."""
    import widerl

    cfg = policy.cfg
    return {
        "widerl_version": widerl.__version__,
        "env": cfg.env,
        "algo": cfg.algo,
        "seed": str(cfg.seed),
        "obs_dim": str(policy.obs_dim),
        "act_dim": str(policy.act_dim),
        "action_low": json.dumps(policy.low.tolist()),
        "action_high": json.dumps(policy.high.tolist()),
        "input": f"{INPUT}: float32 [batch, {policy.obs_dim}], the env's observation",
        "output": f"{OUTPUT}: float32 [batch, {policy.act_dim}], within the env's action bounds",
    }


def _example(module: DeterministicPolicy) -> torch.Tensor:
    return torch.zeros(EXAMPLE_BATCH, module.obs_dim)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """torch announces its exporters' deprecations and progress per call; the command says
    what it wrote instead."""
    import logging

    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo")]
    levels = [lg.level for lg in loggers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        try:
            with contextlib.redirect_stdout(open(os.devnull, "w")):  # noqa: SIM115
                yield
        finally:
            for lg, level in zip(loggers, levels, strict=True):
                lg.setLevel(level)


def _write_onnx(module: DeterministicPolicy, path: Path, meta: dict[str, str]) -> None:
    import onnx

    with _quiet(), torch.no_grad():
        program = torch.onnx.export(
            module,
            (_example(module),),
            input_names=[INPUT],
            output_names=[OUTPUT],
            dynamic_shapes=_dynamic(),
            dynamo=True,
            external_data=False,  # one self-contained file
            verbose=False,
        )
    model = program.model_proto
    for key, value in meta.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save_model(model, str(path))


def _write_torchscript(module: DeterministicPolicy, path: Path, meta: dict[str, str]) -> None:
    with _quiet(), torch.no_grad():
        traced = torch.jit.trace(module, (_example(module),), check_trace=False)
        # Only the graph's own weights stay (an OFENet's online copy, which acting never
        # reads, goes); numerics as traced.
        frozen = torch.jit.freeze(traced, optimize_numerics=False)
    torch.jit.save(frozen, str(path), _extra_files={"metadata.json": json.dumps(meta)})


def _write_pt2(module: DeterministicPolicy, path: Path, meta: dict[str, str]) -> None:
    with _quiet(), torch.no_grad():
        program = torch.export.export(module, (_example(module),), dynamic_shapes=_dynamic())
    torch.export.save(program, str(path), extra_files={"metadata.json": json.dumps(meta)})


WRITERS = {"onnx": _write_onnx, "torchscript": _write_torchscript, "pt2": _write_pt2}


def env_observations(env_id: str, n: int, seed: int = 0) -> np.ndarray:
    """`n` observations `[n, obs_dim]` of the env under uniformly random actions (resetting at
    episode ends): inputs for comparing an artifact with the policy it came from."""
    from widerl.collect.envs import make_env

    env = make_env(env_id)
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    out = []
    try:
        for _ in range(n):
            out.append(obs)
            obs, _, term, trunc, _ = env.step(env.action_space.sample())
            if term or trunc:
                obs, _ = env.reset()
    finally:
        env.close()
    return np.asarray(out, dtype=np.float32)


def run_exported(path: str | Path, obs: np.ndarray) -> np.ndarray:
    """Run an exported artifact on `obs` `[n, obs_dim]` with its own runtime (onnxruntime for
    .onnx, torch for .pt and .pt2): what a deployment does, and what the parity tests check."""
    path = Path(path)
    x = np.asarray(obs, dtype=np.float32)
    if path.suffix == ".onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run([OUTPUT], {INPUT: x})[0]
    with torch.no_grad():
        if path.suffix == ".pt2":
            fn = torch.export.load(str(path)).module()
        else:
            fn = torch.jit.load(str(path))
        return fn(torch.from_numpy(x)).numpy()
