"""Values and their relations: every setting that cannot work is refused before anything is
allocated or written, with a ConfigError naming the value and what is allowed. Checks that need
the env's sizes or this machine are in run/preflight.py."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection

from widerl.config.fields import FLOAT32_MAX, HYPERSPHERE_ARCHS, LAYERNORM_ARCHS, Config
from widerl.errors import ConfigError


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
    if cfg.expl_noise_max and cfg.algo != "td3":
        raise ConfigError(
            f"--expl-noise-max {cfg.expl_noise_max} shapes TD3's exploration noise; --algo "
            f"{cfg.algo} explores with its own stochastic policy"
        )
    if cfg.expl_noise_max and cfg.expl_noise_max < cfg.expl_noise:
        raise ConfigError(
            f"--expl-noise-max {cfg.expl_noise_max} is below --expl-noise {cfg.expl_noise}: "
            "the stds are drawn from [--expl-noise, --expl-noise-max]"
        )
    if cfg.features == "ofenet" and not cfg.ofenet_units:
        raise ConfigError("--features ofenet needs its width: --ofenet-units > 0 (paper: 2048)")
    if cfg.features not in ("auto", "ofenet") and cfg.ofenet_units:
        raise ConfigError(
            f"--features {cfg.features} with --ofenet-units {cfg.ofenet_units}: OFENet's width "
            "without OFENet; give --ofenet-units 0, or --features ofenet"
        )
    encoders = ("encoder_units", "encoder_dim", "encoder_lr", "encoder_target_every")
    for name in (*encoders, "encoder_horizon"):
        learners = ("mrq",) if name == "encoder_horizon" else ("sale", "mrq")
        if getattr(cfg, name) and cfg.features not in learners:
            raise ConfigError(
                f"--{name.replace('_', '-')} {getattr(cfg, name):g} sets an encoder of "
                f"--features {' or '.join(learners)}; --features is {cfg.features}"
            )
    if cfg.prioritized and cfg.sampler not in ("uniform", "prioritized"):
        raise ConfigError(
            f"--prioritized (short for --sampler prioritized) and --sampler {cfg.sampler} "
            "name two samplers; give one"
        )
    if cfg.num_envs > 1 and cfg.actors:
        raise ConfigError(
            f"--num-envs {cfg.num_envs} steps envs in the learner, --actors {cfg.actors} in Ray "
            "collectors: choose one (each collector steps --envs-per-actor envs)"
        )
    if cfg.num_envs > MAX_NUM_ENVS:
        raise ConfigError(f"--num-envs {cfg.num_envs} is above {MAX_NUM_ENVS}")
    if cfg.ray_address and not cfg.actors:
        raise ConfigError(
            f"--ray-address {cfg.ray_address!r} needs --actors > 0 (collectors run on Ray)"
        )
    if cfg.n_step > MAX_N_STEP:
        # The window is unrolled into the sampling graph, one gather per step.
        raise ConfigError(f"--n-step {cfg.n_step} is above {MAX_N_STEP}; use 1 to {MAX_N_STEP}")
    validate_tracking(cfg)
    validate_modern(cfg, given)
    if cfg.ofenet_units and cfg.ofenet_units % cfg.ofenet_layers:
        raise ConfigError(
            f"--ofenet-units {cfg.ofenet_units} must split evenly across "
            f"--ofenet-layers {cfg.ofenet_layers}"
        )


MAX_N_STEP = 64
MAX_NUM_ENVS = 65_536  # a typo guard: every env is a simulator in the learner's process

# W&B refuses these in a project name (and a group or entity with them would not be found).
_WANDB_FORBIDDEN = "/\\#?%:"


def validate_tracking(cfg: Config) -> None:
    """--wandb and its companions."""
    for name in ("wandb_entity", "wandb_group"):
        flag = "--" + name.replace("_", "-")
        if getattr(cfg, name) and not cfg.wandb:
            raise ConfigError(f"{flag} {getattr(cfg, name)!r} needs --wandb PROJECT")
    for name in ("wandb", "wandb_entity"):
        value = getattr(cfg, name)
        bad = sorted({c for c in value if c in _WANDB_FORBIDDEN or not c.isprintable()})
        if bad or len(value) > 128:
            why = f"characters {' '.join(map(repr, bad))}" if bad else "more than 128 characters"
            flag = "--" + name.replace("_", "-")
            raise ConfigError(
                f"{flag} {value!r}: W&B names cannot hold {why}; use letters, digits, - _ ."
            )


def validate_modern(cfg: Config, given: Collection[str] = ()) -> None:
    """The relations of the options beyond the paper (bodies, critic heads, CrossQ)."""
    if cfg.adam_beta1 >= 1.0:
        raise ConfigError(f"--adam-beta1 must be in [0, 1), got {cfg.adam_beta1}")
    if cfg.arch in LAYERNORM_ARCHS and cfg.batchnorm:
        raise ConfigError(
            f"--arch {cfg.arch} normalises with LayerNorm; it does not take --batchnorm"
        )
    if cfg.arch in HYPERSPHERE_ARCHS and cfg.batchnorm:
        raise ConfigError(
            f"--arch {cfg.arch} normalises onto the unit hypersphere; it does not take --batchnorm"
        )
    if cfg.arch in HYPERSPHERE_ARCHS and "activation" in given and cfg.activation != "relu":
        raise ConfigError(f"--arch {cfg.arch} uses ReLU in its blocks; drop --activation")
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
