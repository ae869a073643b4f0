"""Every setting of a training run, in one typed dataclass, and the named presets.

Each field carries a one-line help text in its metadata: the command line builds its flags
and `--help` from these, so the documentation lives where the setting is declared.

Defaults are resolved in three layers (lowest first):
  1. the dataclass defaults below, with the per-algorithm values of `ALGO_DEFAULTS`;
  2. a preset (`--preset NAME`), see `PRESETS`;
  3. flags given explicitly on the command line.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from widerl.agents import ALGORITHMS
from widerl.nets.bodies import BODIES

ALGOS = tuple(ALGORITHMS)
ARCHS = tuple(BODIES)
ACTIVATIONS = ("swish", "relu")
INITIAL_PRIORITIES = ("td", "max")
CRITIC_LOSSES = ("mse", "huber")
CRITIC_HEADS = ("scalar", "c51", "hlgauss")  # nets/critic_heads.py
LAYERNORM_ARCHS = ("simba", "bronet")  # residual bodies normalised by LayerNorm
DEVICES = ("auto", "cpu", "cuda")
COMPILE_MODES = ("auto", "on", "off")
# --compile auto compiles runs at least this long (benchmarks/README.md: compilation costs
# 20-90 s on a 2-core CPU and a compiled step is 1.3-1.6x faster, which repays it after
# 10k-30k updates; the margin covers slower machines and larger networks).
COMPILE_AUTO_STEPS = 50_000


def _f(default: Any, help: str, **kw: Any) -> Any:
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class Config:
    # --- run ---
    algo: str = _f("sac", "RL algorithm.", choices=ALGOS)
    env: str = _f("Hopper-v5", "Gymnasium environment id (continuous actions).")
    seed: int = _f(
        0, "Root seed; every env, network and sampler seed derives from it.", nonneg=True
    )
    steps: int = _f(1_000_000, "Gradient updates to run (the paper's x-axis).", positive=True)
    warmup: int = _f(
        10_000,
        "Env steps of random actions before learning (A.4).",
        nonneg=True,
        default_text="10000 for sac, 100000 for td3, 5000 for crossq",
    )
    eval_every: int = _f(
        5_000,
        "Evaluate every N gradient updates (and after the last). Given explicitly it must not "
        "exceed --steps; a default or preset value above --steps leaves the evaluations at "
        "update 0 and the last update.",
        positive=True,
    )
    eval_episodes: int = _f(10, "Episodes per evaluation (deterministic policy).", positive=True)
    device: str = _f("auto", "Torch device: auto picks cuda when available.", choices=DEVICES)
    compile: str = _f(
        "auto",
        "torch.compile the whole learning step into one graph (a CUDA graph on a GPU): on, "
        "off, or auto = on for runs of at least 50,000 updates, where the faster step repays "
        "the compilation (20-90 s before the first update on a CPU).",
        choices=COMPILE_MODES,
    )
    threads: int = _f(
        0,
        "Torch CPU threads, at most this machine's CPU count; 0 keeps torch's default (all "
        "cores). Use 1 when several runs share the CPU: oversubscribed threads stall.",
        nonneg=True,
    )

    # --- networks (Sec. 3.3, 4.1, 4.2): one body for actor and critics ---
    arch: str = _f(
        "mlp",
        "Connectivity of actor and critic bodies; simba and bronet are residual bodies with "
        "LayerNorm (SimBa, Lee et al. 2024; BRO, Nauman et al. 2024).",
        choices=ARCHS,
    )
    units: int = _f(
        256, "Units per hidden layer (simba, bronet: the width of every block).", positive=True
    )
    layers: int = _f(2, "Hidden layers per body (simba, bronet: residual blocks).", positive=True)
    actor_units: int = _f(
        0, "Units of the policy's body; 0 = --units (critics and policy alike).", nonneg=True
    )
    actor_layers: int = _f(
        0, "Hidden layers (blocks) of the policy's body; 0 = --layers.", nonneg=True
    )
    activation: str = _f("relu", "Hidden activation (swish = x * sigmoid(x)).", choices=ACTIVATIONS)
    batchnorm: bool = _f(False, "BatchNorm after each hidden Linear (train mode in updates).")
    critic_head: str = _f(
        "scalar",
        "What each critic outputs: scalar = Q, regressed with --critic-loss; c51 = a "
        "categorical distribution on --atoms points spanning [--v-min, --v-max], trained on "
        "the projected distributional TD target (Bellemare et al. 2017); hlgauss = a histogram "
        "of --atoms bins on that interval, trained on a Gaussian around the TD target "
        "(Farebrother et al. 2024). Q is the distribution's mean; both use cross-entropy.",
        choices=CRITIC_HEADS,
    )
    atoms: int = _f(
        101, "c51 / hlgauss: support points / bins, at least 2 (FastTD3: 101).", positive=True
    )
    v_min: float = _f(
        -100.0,
        "c51 / hlgauss: lower end of the value support (Q and TD targets are clipped to it); "
        "set it to the task's returns: the default fits rewards in [-1, 1] at gamma 0.99.",
    )
    v_max: float = _f(100.0, "c51 / hlgauss: upper end of the value support (> --v-min).")
    hlgauss_sigma: float = _f(
        0.75,
        "hlgauss: std of the target Gaussian, in bin widths (Farebrother et al. 2024: 0.75).",
        low=0.0,
        open_low=True,
    )
    critics: int = _f(
        2,
        "Critics per agent, one ensemble evaluated in one pass (2 = the twin critics of "
        "SAC/TD3); with N > 2 the TD target takes the minimum of a random pair and the actor "
        "their mean (REDQ).",
        positive=True,
    )

    obs_norm: bool = _f(
        False,
        "Normalise observations with their running mean and variance (SimBa), updated from "
        "every batch the learner trains on, frozen when acting; combines with OFENet (its "
        "input is normalised, its prediction target stays the raw next state).",
    )

    # --- OFENet (Sec. 3.1, A.1, A.2) ---
    ofenet_units: int = _f(
        0,
        "OFENet: features added by each of phi_s and phi_sa, split evenly "
        "across its layers (2048 = 8 x 256, Table 2); 0 disables OFENet.",
        nonneg=True,
    )
    ofenet_layers: int = _f(
        8, "OFENet: DenseNet blocks in each of phi_s and phi_sa.", positive=True
    )
    ofenet_target_dim: int = _f(
        0,
        "OFENet: predict only the first N dims of s_{t+1} (e.g. without contact forces); 0 = all.",
        nonneg=True,
    )
    ofenet_pretrain: int = _f(
        10_000,
        "OFENet: auxiliary updates on the warm-up data before RL updates start.",
        nonneg=True,
    )

    # --- shared agent hyperparameters (Sec. 4, A.4) ---
    gamma: float = _f(0.99, "Discount factor, in [0, 1].", low=0.0, high=1.0)
    tau: float = _f(
        0.005, "Target network smoothing coefficient, in (0, 1].", low=0.0, high=1.0, open_low=True
    )
    lr: float = _f(
        3e-4,
        "Adam learning rate of actor and critics (> 0).",
        low=0.0,
        open_low=True,
        default_text="0.0003 for sac, 0.001 for td3 and crossq",
    )
    adam_beta1: float = _f(
        0.9,
        "Adam beta1 of actor and critics, in [0, 1) (CrossQ: 0.5).",
        low=0.0,
        default_text="0.9, 0.5 for crossq",
    )
    weight_decay: float = _f(
        0.0,
        "Decoupled weight decay of actor and critics (AdamW: theta -= lr * wd * theta each "
        "update; SimBa 0.01, BRO 0.0001); >= 0.",
        low=0.0,
    )
    batch_size: int = _f(256, "Minibatch size of each update.", positive=True)
    critic_loss: str = _f(
        "mse", "Critic loss; the paper's presets use huber (A.1).", choices=CRITIC_LOSSES
    )
    buffer_size: int = _f(
        1_000_000, "Replay capacity in transitions (at least --batch-size).", positive=True
    )
    utd: int = _f(
        1,
        "Gradient updates per env step, the update-to-data (replay) ratio (BRO: 10, SimBa: "
        "2): inline, one env step every N updates; with --actors and no "
        "--max-env-per-update, collection runs at most 1/N env steps per update ahead.",
        positive=True,
    )
    reset_every: int = _f(
        0,
        "Reset the agent every N gradient updates (BRO, after Nikishin et al. 2022): networks "
        "drawn anew, targets and optimizer state with them, the replay kept (the resets "
        "column of metrics.csv counts them); 0 = never.",
        nonneg=True,
    )

    # --- SAC (Haarnoja et al. 2018) ---
    alpha_init: float = _f(1.0, "SAC: initial entropy temperature (> 0).", low=0.0, open_low=True)
    autotune: bool = _f(True, "SAC: tune alpha towards the target entropy.")
    entropy_target_scale: float = _f(
        1.0,
        "SAC: the target entropy is -N x |A| (SAC v2: 1; SimBa and BRO: 0.5); >= 0.",
        low=0.0,
    )

    # --- TD3 (Fujimoto et al. 2018) ---
    policy_noise: float = _f(0.2, "TD3: std of target policy smoothing noise (>= 0).", low=0.0)
    noise_clip: float = _f(0.5, "TD3: clip of target policy smoothing noise (>= 0).", low=0.0)
    policy_delay: int = _f(
        2,
        "TD3, CrossQ: critic updates per actor (and target) update.",
        positive=True,
        default_text="2, 3 for crossq",
    )
    expl_noise: float = _f(0.1, "TD3: std of Gaussian exploration noise (>= 0).", low=0.0)

    # --- CrossQ (Bhatt et al. 2024) ---
    renorm_warmup: int = _f(
        100_000,
        "CrossQ: training passes during which each Batch Renormalization layer acts as "
        "BatchNorm (r = 1, d = 0) while its running statistics settle (CrossQ: 100000).",
        nonneg=True,
    )

    # --- prioritized replay (Schaul et al. 2016) ---
    prioritized: bool = _f(False, "Proportional prioritized replay instead of uniform.")
    per_alpha: float = _f(0.6, "Prioritized replay: priority exponent alpha (>= 0).", low=0.0)
    per_beta: float = _f(
        0.4,
        "Prioritized replay: initial IS exponent, in [0, 1], annealed to 1.",
        low=0.0,
        high=1.0,
    )

    # --- Ape-X-like distributed collection (Sec. 3.2, A.1, Fig. 11) ---
    actors: int = _f(
        0,
        "Collector processes on Ray, each stepping --envs-per-actor envs with the latest "
        "weights (paper: 2); 0 collects inline in the learner (the paper's w/o Ape-X).",
        nonneg=True,
    )
    envs_per_actor: int = _f(32, "Envs stepped by each collector (paper: 32).", positive=True)
    sync_every: int = _f(
        100, "Publish the learner's weights to the collectors every N updates.", positive=True
    )
    initial_priority: str = _f(
        "td",
        "Priority of new transitions with --prioritized and --actors > 0: td = the collector's "
        "own |TD error| (Ape-X), max = the replay's running max.",
        choices=INITIAL_PRIORITIES,
    )
    max_env_per_update: float = _f(
        0.0,
        "Bound on collection running ahead of learning: after the warm-up, collected plus "
        "requested env steps stay within N per update; 0 = unbounded.",
        low=0.0,
    )
    ray_address: str = _f(
        "",
        "Ray cluster to join (auto, or HOST:PORT of `ray start --head`); empty starts Ray "
        "on this machine and shuts it down at the end.",
        default_text="none (a private Ray on this machine)",
    )
    collector_wait: float = _f(
        300.0,
        "Seconds the learner waits with no collector running (all lost, e.g. with a node, "
        "and none placed again for want of resources) before it saves a checkpoint and stops "
        "with exit status 1; learning pauses meanwhile.",
        low=0.0,
        open_low=True,
    )

    # --- output ---
    out: str = _f(
        "",
        "Run folder.",
        default_text="a folder under runs/ named by env, algo, arch, units x layers and seed, "
        "e.g. runs/Hopper-v5-sac-mlp-256x2-s0",
    )
    checkpoint_replay: bool = _f(False, "Store the replay buffer in checkpoints (exact resume).")
    progress: bool = _f(True, "Show a progress bar.")

    def __post_init__(self) -> None:
        check_types(self)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)


_TYPE_WORDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
INT_LIMIT = 2**63 - 1  # the largest integer torch and numpy count with (int64)
FLOAT32_MAX = 3.4028234663852886e38  # the largest finite float32 (the networks' type)


def check_types(cfg: Config) -> None:
    """ConfigError naming the first setting whose value is not of its type (an int where a
    float belongs is taken as that float; a bool is no int), or an integer beyond int64."""
    for f in dataclasses.fields(cfg):
        value, want = getattr(cfg, f.name), type(f.default)
        if want is float and type(value) is int:
            setattr(cfg, f.name, float(value))
            continue
        if type(value) is not want:
            raise ConfigError(f"{f.name} must be {_TYPE_WORDS[want]}, got {value!r}")
        if want is int and abs(value) > INT_LIMIT:
            flag = "--" + f.name.replace("_", "-")
            raise ConfigError(f"{flag} {value} is beyond the largest integer, {INT_LIMIT}")


def _checked_init(init: Any) -> Any:
    """Config(...) with a key that is no setting: ConfigError with the close matches, not
    dataclasses' TypeError."""

    def __init__(self: Config, *args: Any, **kwargs: Any) -> None:
        check_keys(kwargs, "Config")
        init(self, *args, **kwargs)

    __init__.__doc__ = init.__doc__
    return __init__


def check_keys(values: Collection[str], where: str) -> None:
    """ConfigError for the first key that is not a setting, with the settings it is close to."""
    names = [f.name for f in dataclasses.fields(Config)]
    for key in values:
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=3)
            hint = f"; did you mean {' or '.join(close)}?" if close else ""
            raise ConfigError(f"{where}: {key!r} is not a setting{hint}")


Config.__init__ = _checked_init(Config.__init__)  # type: ignore[method-assign]


# Values that differ between the algorithms' original papers (A.4): applied before presets.
ALGO_DEFAULTS: dict[str, dict[str, Any]] = {
    "sac": {"warmup": 10_000, "lr": 3e-4},
    # TD3 paper: Adam 1e-3; batch 256 instead of 100 as in this paper (A.4).
    "td3": {"warmup": 100_000, "lr": 1e-3},
    # CrossQ (Bhatt et al. 2024, App. "hyperparameters"; the authors' train.py): Adam lr 1e-3
    # with beta1 0.5, policy delay 3, 5000 random steps before learning.
    "crossq": {"warmup": 5_000, "lr": 1e-3, "adam_beta1": 0.5, "policy_delay": 3},
}

# The paper's agents (Sec. 4.2, Table 2). S/M/L widths; DenseNet, Swish, Huber (A.1, A.2).
_PAPER = {
    "arch": "densenet",
    "layers": 2,
    "activation": "swish",
    "critic_loss": "huber",
    "ofenet_layers": 8,
}
PRESETS: dict[str, dict[str, Any]] = {
    # Plain SAC / TD3 of the original papers: 2 x 256 MLP, ReLU, MSE (Table 2 "Original").
    "paper-original": {
        "arch": "mlp",
        "units": 256,
        "layers": 2,
        "activation": "relu",
        "critic_loss": "mse",
    },
    "paper-S": {**_PAPER, "units": 256, "ofenet_units": 256},
    "paper-M": {**_PAPER, "units": 1024, "ofenet_units": 1024},
    "paper-L": {**_PAPER, "units": 2048, "ofenet_units": 2048},
    # The "OFENet" column of Table 1 (Ota et al. 2020): the original agents (2 x 256 MLP,
    # ReLU, MSE) fed by an OFENet whose phi_s and phi_sa each add 240 features over 6
    # DenseNet layers (40 units each; Humanoid: 8 layers of 30). Source: the settings in the
    # authors' code release (Hopper, Walker2d, Humanoid); HalfCheetah's and Ant's were not
    # found, so they use the 6-layer setting. TD3 there used 400-300 hidden units; our bodies
    # have one width, so TD3 keeps 2 x 256 as in `paper-original`.
    "paper-ofenet": {
        "arch": "mlp",
        "units": 256,
        "layers": 2,
        "activation": "relu",
        "critic_loss": "mse",
        "ofenet_units": 240,
        "ofenet_layers": 6,
    },
    # `make demo`: the paper's full method at a small size (OFENet + DenseNet agent + 2
    # collector processes on prioritized replay) that learns InvertedPendulum-v5 in about
    # 10 minutes on 2 CPU cores. Collection may run at most 4 env steps per update ahead, so
    # the collectors do not starve the learner of the 2 cores.
    "demo": {
        **_PAPER,
        "env": "InvertedPendulum-v5",
        "units": 256,
        "ofenet_units": 64,
        "ofenet_layers": 4,
        "ofenet_pretrain": 1_000,
        "steps": 10_000,
        "warmup": 2_000,
        "eval_every": 1_000,
        "eval_episodes": 5,
        "actors": 2,
        "envs_per_actor": 4,
        "prioritized": True,
        "max_env_per_update": 4.0,
        "threads": 1,
    },
    # --- beyond the paper (README, "Beyond the paper: modern bodies, heads and CrossQ") ---
    # SimBa + SAC (Lee et al. 2024, Sec. 5 and App. "hyperparameters"; values as in the
    # authors' release, configs/agent/sac_simba.yaml and configs/base.yaml).
    "simba": {
        "algo": "sac",
        "arch": "simba",
        "units": 512,  # critic hidden dim 512 ...
        "layers": 2,  # ... in 2 residual blocks
        "actor_units": 128,  # actor hidden dim 128 ...
        "actor_layers": 1,  # ... in 1 block
        "activation": "relu",  # the blocks' MLP: Linear(d, 4d) -> ReLU -> Linear(4d, d)
        "obs_norm": True,  # running-statistics observation normalisation (RSNorm)
        "lr": 1e-4,  # actor, critic and temperature learning rate
        "weight_decay": 1e-2,  # AdamW for actor and critic (temperature: none)
        "alpha_init": 0.01,  # initial temperature
        "entropy_target_scale": 0.5,  # target entropy -|A| / 2
        "utd": 2,  # two updates per env step
        "batch_size": 256,
        "warmup": 5_000,  # random transitions before learning
        "buffer_size": 1_000_000,
        "tau": 0.005,
        "critic_loss": "mse",
        # SimBa's discount is a heuristic of the episode length (from TD-MPC2): 0.99 for its
        # benchmark's 1000-step DMC tasks at action repeat 2; widerl repeats no actions.
        "gamma": 0.99,
    },
    # BRO (Nauman et al. 2024, Sec. 3 and App. "hyperparameters"; values as in the authors'
    # release: train_parallel.py, configs/bro_default.py, jaxrl/bro/bro_learner.py).
    # Left out: BRO's optimistic exploration (a second, optimistic policy for acting with
    # its adjusted KL and optimism parameters) and with it its risk-neutral TD target (the
    # critics' mean, "pessimism 0"): widerl keeps SAC's clipped double-Q minimum.
    "bro": {
        "algo": "sac",
        "arch": "bronet",
        "units": 512,  # critic BroNet width 512 ...
        "layers": 2,  # ... 2 residual blocks ("depth 2")
        "actor_units": 256,  # actor BroNet width 256 ...
        "actor_layers": 1,  # ... 1 block
        "activation": "relu",
        "lr": 3e-4,  # actor, critic and temperature
        "weight_decay": 1e-4,  # AdamW (optax's default decay, which BRO keeps)
        "alpha_init": 1.0,
        "entropy_target_scale": 0.5,  # target entropy -|A| / 2
        "utd": 10,  # replay ratio 10 ("BRO (fast)": 2, with a single early reset)
        # BRO resets everything at env steps 15k, 50k, 250k, 500k, 750k, 1M, ...; widerl's
        # schedule is periodic, in updates: every 250k env steps at replay ratio 10 (the two
        # early resets are not reproduced).
        "reset_every": 2_500_000,
        "batch_size": 128,
        "warmup": 2_500,
        "buffer_size": 1_000_000,
        "tau": 0.005,
        "gamma": 0.99,
        # BRO's critic is distributional: 100 quantiles with the quantile Huber loss. widerl
        # has no quantile head; it uses HL-Gauss's classification critic on 101 bins
        # (Farebrother et al. 2024), whose support must cover the task's soft Q values:
        # per task below, else --v-min / --v-max (the default fits DMC's rewards in [0, 1]).
        "critic_head": "hlgauss",
        "atoms": 101,
    },
    # CrossQ (Bhatt et al. 2024, Sec. 4 and App. "hyperparameters"; the authors' train.py).
    "crossq": {
        "algo": "crossq",
        "arch": "mlp",
        "units": 2048,  # wide critics: 2 x 2048 ...
        "layers": 2,
        "actor_units": 256,  # ... and a 2 x 256 policy
        "actor_layers": 2,
        "activation": "relu",
        "lr": 1e-3,  # actor, critic and temperature
        "adam_beta1": 0.5,  # actor and critic
        "policy_delay": 3,
        "utd": 1,
        "renorm_warmup": 100_000,  # Batch Renormalization acts as BatchNorm for 100k passes
        "batch_size": 256,
        "warmup": 5_000,
        "buffer_size": 1_000_000,
        "gamma": 0.99,
        "critic_loss": "mse",
    },
}


# Per-task values applied with a preset, before explicit flags, keyed by the id's base name.
# OFENet predicts s_{t+1} without the contact forces (Ota et al. 2020 predict Ant-v2's first 27
# and Humanoid-v2's first 292 dims); in -v5 those are Ant's first 27 of 105 and Humanoid's
# first 270 of 348 dims (REFERENCE.md).
_OFENET_TARGETS = {"Ant": {"ofenet_target_dim": 27}, "Humanoid": {"ofenet_target_dim": 270}}
# The value support of the bro preset's HL-Gauss critic on the MuJoCo tasks: soft Q at gamma
# 0.99 is about (reward per step + entropy bonus) / (1 - gamma); the bounds leave headroom
# over the per-step rewards of strong agents on -v5 (widerl's choice, not BRO's).
_BRO_SUPPORT = {
    "Hopper": {"v_min": -100.0, "v_max": 600.0},
    "Walker2d": {"v_min": -100.0, "v_max": 800.0},
    "HalfCheetah": {"v_min": -300.0, "v_max": 1_800.0},
    "Ant": {"v_min": -200.0, "v_max": 1_000.0},
    "Humanoid": {"v_min": -100.0, "v_max": 1_200.0},
}
PRESET_TASK_DEFAULTS: dict[str, dict[str, dict[str, Any]]] = {
    "bro": _BRO_SUPPORT,
    "paper-S": _OFENET_TARGETS,
    "paper-M": _OFENET_TARGETS,
    "paper-L": _OFENET_TARGETS,
    "paper-ofenet": {
        "Ant": {"ofenet_target_dim": 27},
        "Humanoid": {"ofenet_target_dim": 270, "ofenet_layers": 8},
    },
}


def task_name(env_id: str) -> str:
    """'Ant-v5' -> 'Ant'."""
    return env_id.rsplit("-v", 1)[0]


class ConfigError(ValueError):
    """A setting a user can get wrong; the CLI prints it on one line and exits with 2."""


def field_names() -> list[str]:
    return [f.name for f in dataclasses.fields(Config)]


def resolve(overrides: dict[str, Any], preset: str | None = None) -> Config:
    """Build a Config from algorithm defaults, a preset and explicit overrides (in that order)."""
    if preset is not None and preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    check_keys(overrides, "resolve")
    layered: dict[str, Any] = dict(PRESETS.get(preset, {})) if preset else {}
    algo = overrides.get("algo", layered.get("algo", Config.algo))
    if algo not in ALGOS:
        raise ConfigError(f"unknown algo {algo!r}; choose from {', '.join(ALGOS)}")
    env = overrides.get("env", layered.get("env", Config.env))
    per_task = PRESET_TASK_DEFAULTS.get(preset or "", {}).get(task_name(env), {})
    values = {**ALGO_DEFAULTS[algo], **layered, **per_task, **overrides}
    cfg = Config(**values)
    validate(cfg, given=overrides)
    return cfg


def _range_text(low: float | None, high: float | None, open_low: bool) -> str:
    if high is None:
        return f"{'>' if open_low else '>='} {low:g}"
    return f"in {'(' if open_low else '['}{low:g}, {high:g}]"


def validate(cfg: Config, given: Collection[str] = ()) -> None:
    """Refuse every setting that cannot work, before anything is allocated or written: a
    ConfigError naming the value and what is allowed. `given` are the fields the user set
    explicitly (some relations only bind those; see --eval-every). Checks that need the
    env's sizes or this machine are in `preflight.py`."""
    for f in dataclasses.fields(Config):
        value = getattr(cfg, f.name)
        flag = "--" + f.name.replace("_", "-")
        choices = f.metadata.get("choices")
        if choices and value not in choices:
            raise ConfigError(f"{flag} {value!r} is not one of {', '.join(choices)}")
        if f.metadata.get("positive") and value <= 0:
            raise ConfigError(f"{flag} must be a positive integer, got {value}")
        if f.metadata.get("nonneg") and value < 0:
            raise ConfigError(f"{flag} must be >= 0, got {value}")
        if isinstance(f.default, float):
            low, high = f.metadata.get("low"), f.metadata.get("high")
            open_low = bool(f.metadata.get("open_low"))
            allowed = "a finite number" if low is None else _range_text(low, high, open_low)
            if not math.isfinite(value):
                also = "" if low is None else f" {allowed}"
                raise ConfigError(f"{flag} must be a finite number{also}, got {value}")
            too_low = low is not None and (value <= low if open_low else value < low)
            if too_low or (high is not None and value > high):
                raise ConfigError(f"{flag} must be {allowed}, got {value}")
    if cfg.buffer_size < cfg.batch_size:
        # The warm-up waits for one batch in the replay: it would wait forever.
        raise ConfigError(
            f"--buffer-size {cfg.buffer_size} is smaller than --batch-size {cfg.batch_size}: "
            f"the replay could never hold one batch; use --buffer-size >= {cfg.batch_size}"
        )
    if cfg.batch_size < 2 and (cfg.batchnorm or cfg.ofenet_units):
        # BatchNorm in train mode needs two samples per feature (OFENet always has it, A.1).
        what = "--batchnorm" if cfg.batchnorm else "OFENet (--ofenet-units > 0, BatchNorm)"
        raise ConfigError(f"--batch-size {cfg.batch_size} is too small for {what}; use >= 2")
    if "eval_every" in given and cfg.eval_every > cfg.steps:
        raise ConfigError(
            f"--eval-every {cfg.eval_every} is larger than --steps {cfg.steps}, so its period "
            f"never comes round (only updates 0 and {cfg.steps} would be evaluated); use "
            f"--eval-every <= {cfg.steps}"
        )
    if cfg.ray_address and not cfg.actors:
        raise ConfigError(
            f"--ray-address {cfg.ray_address!r} needs --actors > 0 (collectors run on Ray)"
        )
    validate_modern(cfg, given)
    if cfg.ofenet_units and cfg.ofenet_units % cfg.ofenet_layers:
        raise ConfigError(
            f"--ofenet-units {cfg.ofenet_units} must split evenly across "
            f"--ofenet-layers {cfg.ofenet_layers}"
        )


def validate_modern(cfg: Config, given: Collection[str] = ()) -> None:
    """The relations of the options beyond the paper (bodies, critic heads, CrossQ)."""
    if cfg.adam_beta1 >= 1.0:
        raise ConfigError(f"--adam-beta1 must be in [0, 1), got {cfg.adam_beta1}")
    if cfg.arch in LAYERNORM_ARCHS and cfg.batchnorm:
        raise ConfigError(
            f"--arch {cfg.arch} normalises with LayerNorm; it does not take --batchnorm"
        )
    if cfg.critic_head != "scalar":
        if cfg.atoms < 2:
            raise ConfigError(f"--atoms must be at least 2 for --critic-head {cfg.critic_head}")
        if not cfg.v_min < cfg.v_max:
            raise ConfigError(f"--v-min {cfg.v_min:g} must be smaller than --v-max {cfg.v_max:g}")
        if not cfg.v_max - cfg.v_min < FLOAT32_MAX:
            raise ConfigError(
                f"--v-min {cfg.v_min:g} to --v-max {cfg.v_max:g} spans more than float32 holds "
                f"(the support's type, at most {FLOAT32_MAX:.3g}); use a narrower support"
            )
        if "critic_loss" in given and cfg.critic_loss != "mse":
            raise ConfigError(
                f"--critic-loss {cfg.critic_loss} applies to --critic-head scalar; "
                f"{cfg.critic_head} trains with cross-entropy"
            )
    if cfg.algo == "crossq":
        if cfg.arch != "mlp":
            raise ConfigError(
                f"--algo crossq builds MLPs with Batch Renormalization; --arch {cfg.arch} "
                "is not supported with it (use --arch mlp)"
            )
        if cfg.batchnorm:
            raise ConfigError(
                "--algo crossq always normalises with Batch Renormalization; drop --batchnorm"
            )
        if cfg.batch_size < 2:
            raise ConfigError(
                f"--batch-size {cfg.batch_size} is too small for CrossQ's Batch "
                "Renormalization; use >= 2"
            )


def compiles(cfg: Config) -> bool:
    """Whether the run's learning step is torch.compile'd (--compile)."""
    return cfg.compile == "on" or (cfg.compile == "auto" and cfg.steps >= COMPILE_AUTO_STEPS)


def default_out(cfg: Config) -> Path:
    return Path("runs") / f"{cfg.env}-{cfg.algo}-{cfg.arch}-{cfg.units}x{cfg.layers}-s{cfg.seed}"


def from_dict(d: dict[str, Any]) -> Config:
    """Rebuild a Config from a run's config.json, ignoring keys a newer version dropped."""
    names = set(field_names())
    return Config(**{k: v for k, v in d.items() if k in names})
