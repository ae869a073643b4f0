"""`widerl bench`: learning steps/s of ours next to a peer's update, stacked seeds against
single runs, or distributed collection. Its network, algorithm and run options are `train`'s,
generated from Config (one flag, one meaning); the bench's own options are named apart."""

from __future__ import annotations

import json
from typing import Any

import click

from widerl.cli.options import config_options, count, given_values, preset_option
from widerl.config import Config, ConfigError, resolve

# Config fields `widerl bench` takes, as `train` does: what the timed networks and algorithm
# are (summary's `_NET_FIELDS`), the batch, and where and how the step runs.
BENCH_FIELDS = ("algo", "arch", "units", "layers", "activation", "batchnorm", "ofenet_units",
                "ofenet_layers", "ofenet_target_dim", "actor_units", "actor_layers", "critics",
                "critic_head", "atoms", "v_min", "v_max", "hlgauss_sigma", "obs_norm",
                "critic_loss", "batch_size", "env", "device", "compile", "threads",
                "utd")  # fmt: skip


@click.command("bench")
@config_options(only=BENCH_FIELDS)
@preset_option
@click.option("--obs-dim", type=count(1), default=None, help="Observation size (overrides --env).")
@click.option("--act-dim", type=count(1), default=None, help="Action size (overrides --env).")
@click.option("--updates", type=count(1), default=200, show_default=True,
              help="Updates per timed round and side.")  # fmt: skip
@click.option("--rounds", type=count(1), default=5, show_default=True,
              help="Interleaved rounds (ours, peer, peer, ours, ...).")  # fmt: skip
@click.option(
    "--peer",
    type=click.Choice(["sb3", "sbx", "none"]),
    default=None,
    is_flag=False,
    flag_value="sb3",
    help="Library timed in the same run, interleaved with ours [default: sb3]: sb3 "
    "(Stable-Baselines3, PyTorch; `train(gradient_steps=--updates)`), sbx (Stable Baselines "
    "Jax, jit-compiled; timed both one update per call, as a training loop calls it, and "
    "--updates per call, its JAX compilation excluded by a burn-in), or none. The peer has our "
    "critics' and policy's widths and depths and runs the same method where its library has "
    "one (sbx: CrossQ for --algo crossq, SAC with SimBa networks for --arch simba), else its "
    "MLP SAC/TD3.",
)
@click.option("--no-peer", is_flag=True, help="Same as --peer none.")
@click.option(
    "--baseline",
    type=click.Choice(["none", "mlp"]),  # bench.update.BASELINES (it imports torch)
    default="none",
    show_default=True,
    help="Also time, interleaved in the same run, our plain MLP agent of the same widths, "
    "depths, batch and algorithm (SAC for crossq): an MLP body, a scalar critic, no obs-norm, "
    "no OFENet. Reports its updates/s, fraction of peak and ratio_baseline = ours / it.",
)
@click.option(
    "--distributed",
    is_flag=True,
    help="Instead: env steps/s that 1 and 2 Ray collectors deliver while a learner trains "
    "(--preset's learner on --env, paper-S by default), against the raw step rate of the "
    "same vectorised envs.",
)
@click.option("--envs-per-actor", type=count(1), default=8, show_default=True,
              help="With --distributed: envs per collector.")  # fmt: skip
@click.option(
    "--stacked-seeds",
    type=count(1),
    default=None,
    help="Instead: seed-updates/s of this many seeds stacked in one process (train --seeds) "
    "against as many single-seed runs, each side as `widerl experiment --jobs 2` runs it (two "
    "processes of one thread each), side by side, with the fraction of the one-thread matmul "
    "peak; no peer.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def bench_cmd(
    preset: str | None,
    obs_dim: int | None,
    act_dim: int | None,
    updates: int,
    rounds: int,
    peer: str | None,
    no_peer: bool,
    baseline: str,
    distributed: bool,
    envs_per_actor: int,
    stacked_seeds: int | None,
    as_json: bool,
    **kwargs: Any,
) -> None:
    """Learning steps/s of ours and, interleaved in the same run, of a peer's update
    (Stable-Baselines3 or sbx); FLOPs per update and the fraction of the matmul peak measured
    in the same run. Only same-run ratios compare on a shared machine; measured figures and
    their commands: benchmarks/README.md. --compile auto and off time the eager step."""
    given = given_values(kwargs)
    env = given.pop("env", Config.env)
    device = given.pop("device", Config.device)
    compiled = given.pop("compile", "off") == "on"
    threads = given.pop("threads", 0) or None
    if distributed:
        return _distributed(given, env, preset, envs_per_actor, updates, threads, compiled,
                            baseline, as_json)  # fmt: skip
    if obs_dim is None or act_dim is None:
        from widerl.collect.envs import check_env_id, env_dims

        check_env_id(env)
        o, a = env_dims(env)
        obs_dim, act_dim = obs_dim or o, act_dim or a
    if stacked_seeds is not None:
        if peer is not None or no_peer or baseline != "none":
            raise ConfigError(
                "--stacked-seeds compares widerl with itself; it takes no --peer or --baseline"
            )
        if device not in ("auto", "cpu") or threads is not None:
            raise ConfigError(
                "--stacked-seeds times one-thread CPU processes (as `widerl experiment --jobs 2` "
                "runs them); it takes no --device or --threads"
            )
        from widerl.bench.seeds import format_seeds_bench, run_seeds_bench

        cfg = resolve({"algo": "sac", **given}, preset)
        result = run_seeds_bench(cfg, stacked_seeds, obs_dim, act_dim, updates, rounds, compiled)
        click.echo(json.dumps(result) if as_json else format_seeds_bench(result))
        return None
    if no_peer and peer not in (None, "none"):
        raise ConfigError(f"--no-peer and --peer {peer} contradict each other; give one of them")
    peer = "none" if no_peer else peer or "sb3"
    if peer != "none":
        from widerl.bench.peers import peer_missing

        missing = peer_missing(peer)
        if missing:
            raise ConfigError(missing)
    from widerl.bench.update import format_bench, run_bench
    from widerl.run.device import resolve_device

    dev = str(resolve_device(device))
    _check(given, preset, obs_dim, act_dim, dev, threads)
    shape = {k: given.pop(k, None) for k in ("algo", "units", "layers", "arch")}
    result = run_bench(
        **shape,
        settings=given,
        baseline=None if baseline == "none" else baseline,
        obs_dim=obs_dim,
        act_dim=act_dim,
        batch_size=given.pop("batch_size", Config.batch_size),
        device=dev,
        updates=updates,
        rounds=rounds,
        peer=peer,
        threads=threads,
        compiled=compiled,
        preset=preset,
    )
    click.echo(json.dumps(result) if as_json else format_bench(result))
    return None


def _distributed(given: dict[str, Any], env: str, preset: str | None, envs_per_actor: int,
                 updates: int, threads: int | None, compiled: bool, baseline: str,
                 as_json: bool) -> None:  # fmt: skip
    """`--distributed`: the preset's learner (paper-S by default) on `env`."""
    update_only = {"--compile": compiled, "--baseline": baseline != "none",
                   **{"--" + k.replace("_", "-"): True for k in given}}  # fmt: skip
    for flag, used in update_only.items():
        if used:
            raise ConfigError(f"{flag} applies to the update bench; it does not apply to "
                              "--distributed (its learner is --preset's)")  # fmt: skip
    from widerl.bench.distributed import format_distributed, run_distributed_bench
    from widerl.collect.envs import check_env_id

    check_env_id(env)
    result = run_distributed_bench(env=env, preset=preset or "paper-S",
                                   envs_per_actor=envs_per_actor, updates=updates,
                                   threads=threads or 1)  # fmt: skip
    click.echo(json.dumps(result) if as_json else format_distributed(result))


def _check(given: dict[str, Any], preset: str | None, obs_dim: int, act_dim: int, device: str,
           threads: int | None) -> None:  # fmt: skip
    """`train`'s checks of what a bench builds (its networks, its replay of random
    transitions, the step's batch, threads, device), before anything is allocated."""
    from widerl.bench.update import DEFAULT_FILL
    from widerl.run.device import resolve_device
    from widerl.run.memory import check_memory
    from widerl.run.preflight import check_threads

    if threads is not None:
        check_threads(threads)
    batch = given.get("batch_size", Config.batch_size)
    cfg = resolve({**given, "buffer_size": max(batch, DEFAULT_FILL)}, preset)
    check_memory(cfg, obs_dim, act_dim, resolve_device(device))
