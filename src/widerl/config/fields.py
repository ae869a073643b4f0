"""Every setting of a training run, in one typed dataclass: each field carries its default,
its one-line help text (the command line builds its flags and `--help` from these, so the
documentation lives where the setting is declared) and its allowed range or choices. Types are
checked when a Config is made (`check_types`); values and their relations in validate.py; the
presets in presets.py.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from widerl.config.registries import names
from widerl.errors import ConfigError

ALGOS = names("algo")
ARCHS = names("arch")
ACTIVATIONS = ("swish", "relu")
INITIAL_PRIORITIES = ("td", "max")
CRITIC_LOSSES = ("mse", "huber")
CRITIC_HEADS = names("critic_head")
LAYERNORM_ARCHS = ("simba", "bronet")  # residual bodies normalised by LayerNorm
HYPERSPHERE_ARCHS = ("simbav2",)  # bodies whose features and weights stay on the unit sphere
DEVICES = ("auto", "cpu", "cuda")
COMPILE_MODES = ("auto", "on", "off")
AMP_MODES = ("off", "bf16")
SAMPLERS = names("sampler")
FEATURES = ("auto", *names("features"))


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
        "torch.compile the whole learning step into one graph (a CUDA graph on a GPU; on a "
        "CPU, the policy the run acts with too): on, "
        "off, or auto = start eager, time 100 updates, then compile when the updates left "
        "would save more time than compiling costs (what it cost here before, from the "
        "cache index in ~/.cache/widerl; a first compilation takes 15-70 s on a CPU, and a "
        "later run of the same configuration loads the saved step in about 2 s); the "
        "decision and its figures go to the run's run.log.",
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
        "LayerNorm (SimBa, Lee et al. 2024; BRO, Nauman et al. 2024); simbav2 keeps features "
        "and weights on the unit hypersphere with LERP residual blocks (SimbaV2, Lee et al. "
        "2025; ReLU, whatever --activation says).",
        choices=ARCHS,
    )
    units: int = _f(
        256,
        "Units per hidden layer (simba, bronet, simbav2: the width of every block).",
        positive=True,
    )
    layers: int = _f(
        2, "Hidden layers per body (simba, bronet, simbav2: residual blocks).", positive=True
    )
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

    # --- the feature learner (Sec. 3.1: representation learning decoupled from RL) ---
    features: str = _f(
        "auto",
        "What feeds the agent: raw (the states and actions as they are), ofenet (Ota et al. "
        "2020, sized by --ofenet-units), sale (TD7's state-action embeddings, Fujimoto et al. "
        "2023) or mrq (MR.Q's encoder with model-based losses, Fujimoto et al. 2025). auto: "
        "ofenet when --ofenet-units > 0, else raw; a --features that contradicts "
        "--ofenet-units is refused.",
        choices=FEATURES,
    )
    # --- SALE and MR.Q's encoder (0: the method's published value) ---
    encoder_units: int = _f(
        0, "sale / mrq: hidden units of the encoders (0: TD7's 256, MR.Q's 512).", nonneg=True
    )
    encoder_dim: int = _f(
        0, "sale / mrq: width of z_s and z_sa (0: TD7's 256, MR.Q's 512).", nonneg=True
    )
    encoder_lr: float = _f(
        0.0, "sale / mrq: the encoder's Adam learning rate (0: TD7's 3e-4, MR.Q's 1e-4).", low=0.0
    )
    encoder_target_every: int = _f(
        0,
        "sale / mrq: updates between refreshes of the fixed encoder copy that feeds the agent "
        "(0: 250, both papers).",
        nonneg=True,
    )
    encoder_horizon: int = _f(
        0,
        "mrq: steps of each sampled transition's stream its model-based losses unroll over "
        "(0: MR.Q's 5).",
        nonneg=True,
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
    reward_scaling: bool = _f(
        False,
        "Divide rewards by a running estimate of the discounted return's scale, max(std(G), "
        "max|G| / --reward-g-max), so returns stay within about +-G_max (SimbaV2, Lee et al. "
        "2025, Sec. 4.4); episode returns are reported unscaled.",
    )
    reward_g_max: float = _f(
        5.0,
        "--reward-scaling: the bound G_max of scaled returns (SimbaV2: 5, with a value "
        "support of [-5, 5]); > 0.",
        low=0.0,
        open_low=True,
    )
    amp: str = _f(
        "off",
        "Mixed precision of the learning step: bf16 runs its forward and backward passes under "
        "torch.autocast with bfloat16; parameters, gradients, optimizer state and target "
        "networks stay float32. The speed path on GPUs with bf16 tensor cores (A100, H100); "
        "on a CPU it runs, usually slower.",
        choices=AMP_MODES,
    )
    n_step: int = _f(
        1,
        "Multi-step returns: the TD target sums the next K rewards of the same env, "
        "discounted, and bootstraps with gamma^K from the state after them; a termination "
        "inside the window ends it without bootstrap, an episode's end by time limit (or a "
        "gap in the stored stream) ends it early with a bootstrap from there (gamma^k, k < K). "
        "Sampled from the replay as stored (no off-policy correction); the Ray "
        "collectors' initial priorities stay one-step. 1: the one-step target.",
        positive=True,
    )
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
    weight_projection: bool = _f(
        False,
        "After every optimizer step, rescale each hidden unit's input weights of actor and "
        "critic bodies to unit l2 norm (weight normalisation by projection: XQC, SimbaV2; "
        "--arch simbav2 always does it). Heads and feature learners are not projected.",
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
        "2): inline, one env step (of all --num-envs envs) every N updates, the N in one call "
        "of the learning step (one compiled graph); with --actors and no "
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
    expl_noise_max: float = _f(
        0.0,
        "TD3: with a value above 0, each env's exploration std is drawn uniformly from "
        "[--expl-noise, --expl-noise-max] whenever its episode starts (FastTD3's mixed noise "
        "over many envs, Seo et al. 2025); 0: every env uses --expl-noise.",
        low=0.0,
    )

    # --- CrossQ (Bhatt et al. 2024) ---
    renorm_warmup: int = _f(
        100_000,
        "CrossQ: training passes during which each Batch Renormalization layer acts as "
        "BatchNorm (r = 1, d = 0) while its running statistics settle (CrossQ: 100000).",
        nonneg=True,
    )

    # --- the replay's sampler: prioritized replay (Schaul et al. 2016), LAP (Fujimoto 2020) ---
    sampler: str = _f(
        "uniform",
        "How batches are drawn from the replay: uniform; prioritized (proportional, Schaul et "
        "al. 2016: p = (|TD error| + 1e-6)^alpha, importance weights with --per-beta); lap "
        "(Loss-Adjusted Prioritization, Fujimoto et al. 2020, TD7's: p = max(|TD error|, "
        "1)^alpha, no importance weights, meant with --critic-loss huber). --prioritized is "
        "the short form of --sampler prioritized.",
        choices=SAMPLERS,
    )
    prioritized: bool = _f(False, "Short for --sampler prioritized.")
    per_alpha: float = _f(
        0.6,
        "Priority exponent alpha of --sampler prioritized and lap (>= 0; LAP's paper: 0.4).",
        low=0.0,
    )
    per_beta: float = _f(
        0.4,
        "Prioritized replay: initial IS exponent, in [0, 1], annealed to 1.",
        low=0.0,
        high=1.0,
    )

    # --- collection in the learner (the FastTD3 regime: many envs, large batches) ---
    num_envs: int = _f(
        1,
        "Envs the learner steps together without Ray (a Gymnasium vector env; with --seeds, "
        "this many per seed): each env step adds N transitions, one batched forward pass "
        "choosing N actions, and --utd counts updates per such vector step.",
        positive=True,
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
        "Priority of new transitions with --sampler prioritized or lap and --actors > 0: td = "
        "the collector's own |TD error| (Ape-X), max = the replay's running max.",
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
    wandb: str = _f(
        "",
        "Also log to this Weights & Biases project (needs the 'wandb' extra): the config and "
        "every TensorBoard scalar, under the same names, against grad_step; one W&B run per "
        "run folder (per seed with --seeds), which a resume continues. WANDB_MODE=offline "
        "logs without network. Empty: off.",
    )
    wandb_entity: str = _f("", "W&B entity (team or user) of --wandb; empty: your default.")
    wandb_group: str = _f(
        "",
        "W&B group of --wandb's runs; empty: a --seeds run groups its seeds under its folder's "
        "name, a single run has none.",
    )

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


def field_names() -> list[str]:
    return [f.name for f in dataclasses.fields(Config)]


def compiles(cfg: Config) -> bool:
    """Whether the run's learning step is torch.compile'd from its first update (--compile
    on); auto decides during the run (run/compiling.py)."""
    return cfg.compile == "on"


def default_out(cfg: Config) -> Path:
    return Path("runs") / f"{cfg.env}-{cfg.algo}-{cfg.arch}-{cfg.units}x{cfg.layers}-s{cfg.seed}"


def sampler_of(cfg: Config) -> str:
    """The replay's sampler: --sampler, or prioritized where --prioritized (its short form)
    is set."""
    return "prioritized" if cfg.prioritized else cfg.sampler


def from_dict(d: dict[str, Any]) -> Config:
    """Rebuild a Config from a run's config.json, ignoring keys a newer version dropped."""
    names = set(field_names())
    return Config(**{k: v for k, v in d.items() if k in names})
