"""The paper's figures and tables as lists of training runs (`widerl experiment NAME`).

Each experiment names the task(s), the gradient-step budget, the number of seeds and, per
run, only the training settings that differ from the `Config` defaults (plus a preset).
Everything is read from the paper (Sec. 4, App. A, B); where the paper leaves a value out,
the comment next to it says so and which documented value was taken instead.

Shared choices (comments below refer to them):
- Tasks: the paper's -v2 tasks run as Gymnasium -v5 (mujoco-py cannot be installed).
- Seeds: "We run all each experiment independently with five seeds" (Sec. 4).
- Budget: 1M gradient steps. The paper states it only for Fig. 4 ("maximum average return
  at one-million training steps") and Fig. 14 ("one million steps"); every other figure
  leaves it out, so they use the same, the only budget the paper documents.
- Critic loss: Huber for all of the paper's own agents (A.1); the "Original" baselines
  are the algorithms of their papers (preset paper-original: MLP 2 x 256, ReLU, MSE).
- Activation: Swish for MLP-ResNet and MLP-DenseNet (A.2); the plain MLP and MLP-D2RL keep
  the ReLU of their original papers (A.2 names Swish for ResNet and DenseNet only).
- Ape-X-like distributed training: N_core = 2 collector processes x N_env = 32 envs each,
  one learner on proportional prioritized replay (Sec. 3.2, 4.2, A.1).

Two experiments go beyond the paper, one per question it asks: `scaling` puts its answer to
"how to train larger networks" (DenseNet + OFENet) beside the newer ones (BroNet, SimBa,
SimbaV2) and the plain MLP, critic width against return; `representation` puts OFENet beside
its descendants (TD7's SALE, MR.Q's encoder) and raw states at one agent. Their choices are
commented at `_scaling` and `_representation`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PAPER_SEEDS = 5  # Sec. 4, "Experimental settings"
PAPER_STEPS = 1_000_000  # Fig. 4 and Fig. 14; see the module docstring for the others
ANT = ("Ant-v5",)  # Figs. 1, 3-8, 10, 12: Ant-v2
TABLE1_ENVS = ("Hopper-v5", "Walker2d-v5", "HalfCheetah-v5", "Ant-v5", "Humanoid-v5")

GRID_UNITS = (128, 256, 512, 1024, 2048)  # Sec. 4.1, Fig. 4
GRID_LAYERS = (1, 2, 4, 8, 16)  # Sec. 4.1, Fig. 4
SIZES = {"S": 256, "M": 1024, "L": 2048}  # Sec. 4.2 "Decoupling ...", App. B.1
ARCH_SIZES = {"S": 128, "L": 2048}  # Sec. 4.2 "Connectivity architecture" (S is 128 here)

APEX: dict[str, Any] = {"actors": 2, "envs_per_actor": 32, "prioritized": True}
# The plain MLP of Sec. 4.1 with the paper's Huber critic loss (A.1).
MLP_RELU: dict[str, Any] = {"arch": "mlp", "activation": "relu", "critic_loss": "huber"}


@dataclass(frozen=True)
class RunSpec:
    """One curve of a figure: a name (unique in its experiment) and its training settings:
    Config field names and values that differ from the defaults, on top of `preset`."""

    name: str
    settings: dict[str, Any] = field(default_factory=dict)
    preset: str | None = None


@dataclass(frozen=True)
class Experiment:
    name: str
    figure: str
    title: str
    envs: tuple[str, ...]
    runs: tuple[RunSpec, ...]
    steps: int = PAPER_STEPS
    seeds: int = PAPER_SEEDS


def _depth() -> Experiment:
    # Fig. 1a: units fixed to 256, layers increased; the layer counts are the grid's (Fig. 4),
    # the deepest being the 16-layer network of Fig. 1b.
    runs = tuple(
        RunSpec(f"mlp-256x{n}", {**MLP_RELU, "units": 256, "layers": n}) for n in GRID_LAYERS
    )
    return Experiment("depth", "Fig. 1a", "SAC, MLP 256 units, deeper", ANT, runs)


def _width() -> Experiment:
    # Fig. 3a: layers fixed to 2, units increased; the unit counts are the grid's (Fig. 4),
    # the widest being the 2048-unit network of Fig. 3b.
    runs = tuple(RunSpec(f"mlp-{u}x2", {**MLP_RELU, "units": u, "layers": 2}) for u in GRID_UNITS)
    return Experiment("width", "Fig. 3a", "SAC, MLP 2 layers, wider", ANT, runs)


def _grid() -> Experiment:
    runs = tuple(
        RunSpec(f"mlp-{u}x{n}", {**MLP_RELU, "units": u, "layers": n})
        for u in GRID_UNITS
        for n in GRID_LAYERS
    )
    return Experiment("grid", "Fig. 4", "SAC, MLP units x layers grid", ANT, runs)


def _arch() -> Experiment:
    # Fig. 5: four connectivities at S = 128 and L = 2048 units, 2 layers (fixed from Sec. 4.1
    # on), no OFENet, no Ape-X (both are introduced after this comparison).
    activation = {"mlp": "relu", "resnet": "swish", "d2rl": "relu", "densenet": "swish"}
    runs = tuple(
        RunSpec(
            f"{arch}-{size}",
            {
                "arch": arch,
                "activation": act,
                "critic_loss": "huber",
                "units": units,
                "layers": 2,
            },
        )
        for arch, act in activation.items()
        for size, units in ARCH_SIZES.items()
    )
    return Experiment("arch", "Fig. 5", "SAC, MLP vs ResNet vs D2RL vs DenseNet, S/L", ANT, runs)


def _ofenet() -> Experiment:
    # Fig. 6: DenseNet SAC at S/M/L with OFENet of the same size (presets paper-S/M/L) and
    # without it ("identical to the DenseNet architecture of the previous ... experiment").
    runs = tuple(
        RunSpec(f"{size}-{tag}", {} if ofe else {"ofenet_units": 0}, preset=f"paper-{size}")
        for size in SIZES
        for tag, ofe in (("ofenet", True), ("no-ofenet", False))
    )
    return Experiment("ofenet", "Fig. 6", "SAC DenseNet S/M/L, with vs without OFENet", ANT, runs)


def _ofenet_grid_runs(extra: dict[str, Any]) -> tuple[RunSpec, ...]:
    # Figs. 7, 8: SAC units x OFENet units. The paper does not list the grid's values; these
    # are its documented sizes S/M/L = 256/1024/2048 (Sec. 4.2), and OFENet 0 is the
    # baseline without OFENet ("see leftmost column").
    ofenet_units = (0, *SIZES.values())
    return tuple(
        RunSpec(f"sac{u}-ofenet{o}", {"units": u, "ofenet_units": o, **extra}, preset="paper-L")
        for u in SIZES.values()
        for o in ofenet_units
    )


def _ofenet_grid() -> Experiment:
    runs = _ofenet_grid_runs({})
    return Experiment("ofenet-grid", "Fig. 7", "SAC units x OFENet units", ANT, runs)


def _ofenet_grid_apex() -> Experiment:
    runs = _ofenet_grid_runs(APEX)
    title = "SAC units x OFENet units, Ape-X"
    return Experiment("ofenet-grid-apex", "Fig. 8", title, ANT, runs)


def _table1() -> Experiment:
    # Fig. 9 and Table 1. Ours: OFENet and agent both L = 2048 with Ape-X (Sec. 4.2); TD3
    # (Ours) also uses BatchNorm in its networks (A.1). OFENet: Ota et al. (2020)'s setting,
    # preset paper-ofenet. Original: the algorithm of its paper, preset paper-original.
    runs: list[RunSpec] = []
    for algo in ("sac", "td3"):
        ours = {"algo": algo, **APEX, **({"batchnorm": True} if algo == "td3" else {})}
        runs += [
            RunSpec(f"{algo}-ours", ours, preset="paper-L"),
            RunSpec(f"{algo}-ofenet", {"algo": algo}, preset="paper-ofenet"),
            RunSpec(f"{algo}-original", {"algo": algo}, preset="paper-original"),
        ]
    title = "5 tasks x SAC/TD3 x Ours/OFENet/Original"
    return Experiment("table1", "Fig. 9, Table 1", title, TABLE1_ENVS, tuple(runs))


def _ablation() -> Experiment:
    # Fig. 10 (SAC, Ant): Full = OFENet + DenseNet + Ape-X at 2048 x 2; each variant removes one.
    runs = (
        RunSpec("full", dict(APEX), preset="paper-L"),
        RunSpec("sac", {}, preset="paper-original"),
        RunSpec("wo-apex", {}, preset="paper-L"),
        RunSpec("wo-ofenet", {**APEX, "ofenet_units": 0}, preset="paper-L"),
        # "reduces the number of units from 2048 to 256 for both OFENet and SAC"
        RunSpec("wo-larger-nn", dict(APEX), preset="paper-S"),
        # "replaces MLP-DenseNet ... with standard MLP"; everything else as Full.
        RunSpec("wo-densenet", {**APEX, "arch": "mlp"}, preset="paper-L"),
    )
    return Experiment("ablation", "Fig. 10", "SAC ablation of Ours", ANT, runs)


def _apex() -> Experiment:
    # Fig. 12 (App. B.1): S/M/L with and without Ape-X; "w/o Ape-X" equals "w/ OFENet" of Fig. 6.
    runs = tuple(
        RunSpec(f"{size}-{tag}", dict(APEX) if on else {}, preset=f"paper-{size}")
        for size in SIZES
        for tag, on in (("apex", True), ("no-apex", False))
    )
    return Experiment("apex", "Fig. 12", "SAC S/M/L with vs without Ape-X", ANT, runs)


def _activation() -> Experiment:
    # Fig. 13 (App. B.1): SAC (Ours) with Swish vs ReLU in the policy and value networks
    # (OFENet keeps Swish). The figure's task is not stated in the text; Ant is the task of
    # every other ablation in the paper.
    runs = tuple(
        RunSpec(act, {**APEX, "activation": act}, preset="paper-L") for act in ("swish", "relu")
    )
    return Experiment("activation", "Fig. 13", "SAC (Ours), Swish vs ReLU", ANT, runs)


# --- beyond the paper ---------------------------------------------------------------------
SCALING_WIDTHS = (256, 512, 1024, 2048)  # the paper's S..L range (Sec. 4.2) with 512 between
SCALING_ENVS = ("Ant-v5", "Humanoid-v5")  # the paper's Ant and its largest task (Table 1)
# The data regime every family shares, so that the x-axis (gradient updates, Sec. 4) means
# the same data for all: one env step per update (A.4; SimBa's published 2 and BRO's 10
# would give those families fewer env steps per update: the update-to-data ratio is an axis
# of its own, Rybkin et al. 2025), 10k random warm-up steps (A.4), no resets (BRO's reset
# schedule belongs to its replay ratio 10; `bro` runs them every 2.5M updates, past the
# budget, anyway).
SHARED_DATA: dict[str, Any] = {"utd": 1, "warmup": 10_000, "reset_every": 0}
# family -> (preset, the actor's width). "Critic width" is the width of the critic's body,
# --units: the hidden layers' width for the MLP and the DenseNet, the residual stream d for
# BroNet and SimBa (whose blocks expand to 4d inside, SimBa Sec. 4.1, so a SimBa critic holds
# about 4x the weights of a BroNet critic of the same d). Depth stays each family's own: 2
# layers (MLP, DenseNet) or 2 residual blocks (BroNet, SimBa). The actor keeps its preset's
# width whatever the critic's: BRO scales the critic alone ("we did not find benefits from
# scaling the actor networks"; its critic-scaling figure compares vanilla dense, spectral-norm
# ResNet and BroNet critics inside BRO and inside plain SAC, Nauman et al. 2024, Sec. 3), and
# SimBa's scaling result is SAC's MLP degrading and SimBa improving as parameters grow from
# 0.1M to 17M (Lee et al. 2024, Sec. 1). Everything else is the family's preset (the
# comments there give each value's source); the presets' own widths are replaced.
SCALING_FAMILIES: dict[str, tuple[str, dict[str, Any]]] = {
    # Plain SAC of its paper (Table 2 "Original": MLP, ReLU, MSE), actor 2 x 256.
    "mlp": ("paper-original", {"actor_units": 256}),
    # The paper's agent (paper-S/M/L: DenseNet, Swish, Huber, OFENet of 8 layers), OFENet as
    # wide as the critic, as in the paper's S/M/L (Sec. 4.2: OFENet and agent of one size;
    # Fig. 7: the agent gains from width only with a large OFENet); actor 2 x 256 (paper-S's).
    "densenet-ofenet": ("paper-S", {"actor_units": 256}),
    # BRO's network and optimiser (`bro`: BroNet 2 blocks, AdamW lr 3e-4 with decay 1e-4,
    # batch 128, an HL-Gauss critic in place of BRO's quantile critic on the per-task value
    # supports, target entropy -|A|/2), actor 256 x 1 block.
    "bronet": ("bro", {"actor_units": 256}),
    # SimBa + SAC (`simba`: obs-norm, 2 blocks, AdamW lr 1e-4 with decay 0.01, initial
    # temperature 0.01, target entropy -|A|/2), actor 128 x 1 block.
    "simba": ("simba", {"actor_units": 128}),
    # SimbaV2 + SAC (`simbav2`: hyperspherical blocks with projected weights, obs-norm, a
    # 101-atom categorical critic on rewards scaled to returns within +-5, Adam lr 1e-4),
    # actor 128 x 1 block.
    "simbav2": ("simbav2", {"actor_units": 128}),
}


def _scaling() -> Experiment:
    runs = []
    for family, (preset, fixed) in SCALING_FAMILIES.items():
        for units in SCALING_WIDTHS:
            width = {"units": units, **({"ofenet_units": units} if "ofenet" in family else {})}
            runs.append(RunSpec(f"{family}-{units}", {**fixed, **width, **SHARED_DATA}, preset))
    title = "SAC critic width: MLP, DenseNet + OFENet, BroNet, SimBa, SimbaV2"
    return Experiment(
        "scaling", "beyond the paper", title, SCALING_ENVS, tuple(runs), PAPER_STEPS, PAPER_SEEDS
    )


# The representation question (the paper's Sec. 3.1 and Ota et al. 2020) with OFENet's
# descendants: one agent, four feature learners. The agent is TD3 of its paper (preset
# paper-original: MLP 2 x 256, ReLU, MSE), the algorithm TD7 and MR.Q build on and one of the
# two Ota et al. (2020) evaluate OFENet with; the replay is uniform for all, so that the
# feature learner is the only difference (TD7 and MR.Q also change the sampler, the critic
# loss and more: presets td7 and mrq). Each learner is at its own published setting: OFENet
# as Ota et al. (2020) (preset paper-ofenet: 240 features over 6 layers, 10k pre-training
# updates), SALE and MR.Q's encoder at the defaults of --encoder-* (nets/sale.py, nets/mrq.py).
# Data regime: 10k random warm-up steps (MR.Q's 10k; TD7 waits 25k, OFENet 10k), one env step
# per update. Tasks: the three of MR.Q's published Gym results quoted in the docs.
REPRESENTATION_ENVS = ("HalfCheetah-v5", "Hopper-v5", "Walker2d-v5")
REPRESENTATION_LEARNERS: dict[str, dict[str, Any]] = {
    "raw": {"features": "raw"},
    "ofenet": {"features": "ofenet", "ofenet_units": 240, "ofenet_layers": 6},
    "sale": {"features": "sale"},
    "mrq": {"features": "mrq"},
}


def _representation() -> Experiment:
    shared = {"algo": "td3", "warmup": 10_000, "utd": 1}
    runs = tuple(
        RunSpec(name, {**shared, **learner}, preset="paper-original")
        for name, learner in REPRESENTATION_LEARNERS.items()
    )
    title = "TD3, raw vs OFENet vs SALE vs MR.Q's encoder"
    return Experiment(
        "representation", "beyond the paper", title, REPRESENTATION_ENVS, runs, PAPER_STEPS,
        PAPER_SEEDS,
    )  # fmt: skip


EXPERIMENTS: dict[str, Experiment] = {
    e.name: e
    for e in (
        _depth(),
        _width(),
        _grid(),
        _arch(),
        _ofenet(),
        _ofenet_grid(),
        _ofenet_grid_apex(),
        _table1(),
        _ablation(),
        _apex(),
        _activation(),
        _scaling(),
        _representation(),
    )
}
