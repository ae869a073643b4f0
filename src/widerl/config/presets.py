"""The named presets and per-algorithm defaults, and `resolve`: a Config from defaults, a
preset and explicit overrides, in three layers (lowest first):
  1. the dataclass defaults (fields.py), with the per-algorithm values of `ALGO_DEFAULTS`;
  2. a preset (`--preset NAME`), see `PRESETS`;
  3. flags given explicitly on the command line.
"""

from __future__ import annotations

from typing import Any

from widerl.config.fields import ALGOS, Config, check_keys
from widerl.config.validate import validate
from widerl.errors import ConfigError

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
    # --- beyond the paper (docs/paper.md, "Beyond the paper: modern bodies, heads, CrossQ") ---
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
    # SimbaV2 + SAC (Lee et al. 2025, arXiv 2502.15280, Sec. 4-5; values as in the authors'
    # release, configs/agent/hyper_simba.yaml, unless noted). Left out: the learning rate's
    # linear decay from 1e-4 to 5e-5 over training (widerl's learning rates are constant) and
    # SimbaV2's hyperspherical output layers (nets/bodies/simbav2.py).
    "simbav2": {
        "algo": "sac",
        "arch": "simbav2",
        "units": 512,  # critic_hidden_dim 512 ...
        "layers": 2,  # ... critic_num_blocks 2
        "actor_units": 128,  # actor_hidden_dim 128 ...
        "actor_layers": 1,  # ... actor_num_blocks 1
        "activation": "relu",
        "obs_norm": True,  # normalize_observation: true
        "reward_scaling": True,  # normalize_reward: true ...
        "reward_g_max": 5.0,  # ... normalized_g_max 5.0
        "critic_head": "c51",  # distributional critic, critic_num_bins 101 ...
        "atoms": 101,
        "v_min": -5.0,  # ... on [-G_max, G_max] (critic_min_v, critic_max_v)
        "v_max": 5.0,
        "lr": 1e-4,  # learning_rate_init (decays to 5e-5 there; constant here)
        "weight_decay": 0.0,  # no weight decay: the weights are projected instead
        "alpha_init": 0.01,  # temp_initial_value
        "entropy_target_scale": 0.5,  # temp_target_entropy_coef -0.5: target -|A| / 2
        "tau": 0.005,  # target_tau
        "utd": 1,  # the headline 0.848 is at update-to-data ratio 1 (the authors' README)
        "batch_size": 256,
        "warmup": 5_000,  # as SimBa's release
        "buffer_size": 1_000_000,
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
    # TD7 (Fujimoto et al. 2023, NeurIPS): TD3 on SALE's embeddings with LAP. Values from the
    # authors' TD7.py `Hyperparameters`. Left out: AvgL1Norm on the agent's first hidden layer
    # and TD7's own input order (nets/sale.py), hard target updates every 250 steps (widerl
    # moves targets by tau each update), the critic's ELU (widerl's bodies take one activation:
    # ReLU, the actor's), value clipping to the range of values seen, and policy checkpoints.
    "td7": {
        "algo": "td3",
        "features": "sale",  # zs_dim 256, enc_hdim 256, encoder_lr 3e-4 (SALE's defaults)
        "sampler": "lap",  # LAP: max(|delta|, min_priority 1)^alpha ...
        "per_alpha": 0.4,  # ... alpha 0.4
        "critic_loss": "huber",  # LAP's loss: Huber at min_priority 1
        "arch": "mlp",
        "units": 256,  # critic_hdim 256, 3 Linear layers
        "layers": 2,
        "actor_units": 256,  # actor_hdim 256
        "actor_layers": 2,
        "activation": "relu",  # actor_activ relu (critic_activ elu: not reproduced)
        "lr": 3e-4,  # actor_lr, critic_lr
        "batch_size": 256,
        "buffer_size": 1_000_000,
        "gamma": 0.99,  # discount
        "policy_noise": 0.2,  # target_policy_noise
        "noise_clip": 0.5,
        "policy_delay": 2,  # policy_freq
        "expl_noise": 0.1,  # exploration_noise
        "warmup": 25_000,  # timesteps_before_training
    },
    # MR.Q (Fujimoto et al. 2025, ICLR): deterministic TD3-style learning on MR.Q's encoder.
    # Values from the authors' MRQ/MRQ.py `Hyperparameters`. Left out: MR.Q's value network
    # (LayerNorm + ELU on z_sa alone; here widerl's MLP critic on [z_s, z_sa]), its policy's
    # pre-activation penalty, reward scaling by the replay's mean |reward|, hard target
    # updates every 250 steps (tau here), value gradient clipping at 20, and the encoder
    # trained in bursts at each target refresh (nets/mrq.py).
    "mrq": {
        "algo": "td3",
        "features": "mrq",  # zs/zsa 512, za 256, enc_hdim 512, enc_lr 1e-4, wd 1e-4, horizon 5
        "sampler": "lap",  # prioritized (LAP), alpha 0.4, min_priority 1
        "per_alpha": 0.4,
        "n_step": 3,  # Q_horizon 3
        "critic_loss": "huber",  # smooth_l1_loss
        "arch": "mlp",
        "units": 512,  # value_hdim 512, three hidden layers before its output
        "layers": 3,
        "actor_units": 512,  # policy_hdim 512, two hidden layers
        "actor_layers": 2,
        "activation": "relu",  # policy_activ relu (value_activ elu: not reproduced)
        "lr": 3e-4,  # value_lr, policy_lr
        "weight_decay": 1e-4,  # value_wd, policy_wd (AdamW)
        "batch_size": 256,
        "buffer_size": 1_000_000,
        "gamma": 0.99,  # discount
        "policy_noise": 0.2,  # target_policy_noise
        "noise_clip": 0.3,
        "policy_delay": 1,  # the policy steps with every value step
        "expl_noise": 0.2,  # exploration_noise
        "warmup": 10_000,  # buffer_size_before_training
    },
    # XQC (Palenicek et al., ICLR 2026, arXiv 2509.25174): CrossQ's Batch Renormalization plus
    # weight normalisation (here the unit-norm projection of every hidden Linear after each
    # step, --weight-projection) plus a categorical critic trained by cross-entropy. Composed
    # from `crossq` (its values, whose sources are above) and SimbaV2's categorical critic on
    # scaled rewards (`simbav2`: 101 atoms on [-5, 5], --reward-scaling): XQC's own table of
    # values was not available to us, so the widths are widerl's choice, of the order of
    # XQC's "~2M parameters" (twin critics 2 x 512 and a 2 x 256 actor: 1.18M on Humanoid-v5,
    # `widerl summary --preset xqc --obs-dim 348 --act-dim 17`), and the learning rate,
    # delays and batch are CrossQ's.
    "xqc": {
        "algo": "crossq",
        "arch": "mlp",
        "units": 512,
        "layers": 2,
        "actor_units": 256,
        "actor_layers": 2,
        "activation": "relu",
        "weight_projection": True,
        "critic_head": "c51",
        "atoms": 101,
        "v_min": -5.0,
        "v_max": 5.0,
        "reward_scaling": True,
        "reward_g_max": 5.0,
        "lr": 1e-3,
        "adam_beta1": 0.5,
        "policy_delay": 3,
        "renorm_warmup": 100_000,
        "batch_size": 256,
        "warmup": 5_000,
        "buffer_size": 1_000_000,
        "gamma": 0.99,
    },
    # FastTD3 (Seo et al. 2025, arXiv 2505.22642): TD3 on many parallel envs with large
    # batches. Values from the authors' release, fast_td3/hyperparams.py `BaseArgs` (its
    # HumanoidBench defaults; its MuJoCo Playground defaults differ: 1,024 envs, gamma 0.97,
    # support [-10, 10]) and fast_td3.py (the networks). Left out: the actor output layer's
    # N(0, 0.01) initialisation; learning starts after one batch is stored, not after 10
    # vector steps; the replay holds 51,200 steps of each env as one ring.
    "fasttd3": {
        "algo": "td3",
        "arch": "funnel",  # critics 1024-512-256, actor 512-256-128 (ReLU)
        "units": 1024,  # critic_hidden_dim
        "layers": 3,
        "actor_units": 512,  # actor_hidden_dim
        "actor_layers": 3,
        "activation": "relu",
        "critic_head": "c51",  # distributional critic, num_atoms 101 on [v_min, v_max]
        "atoms": 101,
        "v_min": -250.0,
        "v_max": 250.0,
        "critics": 2,  # use_cdq: clipped double Q
        "num_envs": 128,
        "batch_size": 32_768,
        "buffer_size": 51_200 * 128,  # buffer_size 1024 * 50 per env
        "warmup": 10 * 128,  # learning_starts 10 vector steps
        "n_step": 1,  # num_steps (3 in its IsaacLab locomotion and DMC configs)
        "utd": 2,  # num_updates per vector step
        "policy_delay": 2,  # policy_frequency
        "lr": 3e-4,  # critic and actor learning rate
        "weight_decay": 0.1,  # AdamW
        "tau": 0.1,
        "gamma": 0.99,
        "policy_noise": 0.001,  # target policy smoothing std
        "noise_clip": 0.5,
        "expl_noise": 0.001,  # std_min: each env's exploration std in [std_min, std_max],
        "expl_noise_max": 0.4,  # std_max  ... drawn anew when its episode ends
        "obs_norm": True,  # obs_normalization
        "amp": "bf16",  # amp, amp_dtype bf16
    },
    # FastSAC (Seo et al. 2025, "Learning Sim-to-Real Humanoid Locomotion in 15 Minutes", arXiv
    # 2512.01996): SAC in FastTD3's regime. Values from the FastSAC release in the same
    # repository, fast_sac/hyperparams.py `BaseArgs`, fast_sac/fast_sac.py and
    # fast_sac/train.py. Left out: its actor steps every second update (widerl's SAC steps
    # it every update), its log-std squashed into [-5, 2] by tanh (widerl clamps to [-20, 2])
    # and the N(0, 0.01) initialisation of the mean's output layer.
    "fastsac": {
        "algo": "sac",
        "arch": "funnel",  # critics 1024-512-256 (scalar Q), actor 512-256-128 (ReLU)
        "units": 1024,
        "layers": 3,
        "actor_units": 512,
        "actor_layers": 3,
        "activation": "relu",
        "critic_loss": "mse",
        "critics": 2,  # use_cdq
        "num_envs": 128,
        "batch_size": 32_768,
        "buffer_size": 51_200 * 128,  # 1024 * 50 steps per env
        "warmup": 10 * 128,  # learning_starts 10 vector steps
        "n_step": 1,
        "utd": 2,  # num_updates
        "lr": 3e-4,  # critic, actor and temperature (alpha's lr is the critic's)
        "weight_decay": 0.1,  # AdamW for actor and critic
        "tau": 0.1,
        "gamma": 0.99,
        "alpha_init": 0.001,  # log_alpha = log(0.001)
        "entropy_target_scale": 1.0,  # target entropy -|A|
        "obs_norm": True,
        "amp": "bf16",
    },
}


# Per-task values applied with a preset, before explicit flags, keyed by the id's base name.
# OFENet predicts s_{t+1} without the contact forces (Ota et al. 2020 predict Ant-v2's first 27
# and Humanoid-v2's first 292 dims); in -v5 those are Ant's first 27 of 105 and Humanoid's
# first 270 of 348 dims (docs/paper.md, "Gymnasium -v5 instead of the paper's -v2").
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
