"""The names of everything in a run folder, defined once (torch-free, so that planning and
reporting import them without torch)."""

CONFIG = "config.json"  # the resolved configuration and the networks' input sizes
METRICS = "metrics.csv"  # one row per evaluation
CHECKPOINT = "checkpoint.pt"  # everything a resume needs
CURVE = "learning_curve.png"
TB = "tb"  # TensorBoard events
DIVERGED = "diverged.json"  # written when a run stops on a non-finite value
LOCK = "run.lock"  # the pid of the run using the folder; flock'ed while it runs
LOG = "train.log"  # a `widerl experiment` child's output
RUN_LOG = "run.log"  # the run's own account of its decisions (--compile auto), one per line
POLICY_FILES = ("policy.onnx", "policy.pt", "policy.pt2")  # `widerl export`'s default files
WANDB = "wandb.json"  # the run's Weights & Biases id (--wandb): a resume continues that run
WANDB_DIR = "wandb"  # W&B's local files (its offline runs among them)

# Everything a run writes, and the policies exported from it; --force removes exactly these
# and nothing else. The lock file is not among them: removing it while locked would let a
# second run lock a new file.
RUN_FILES = (
    CONFIG,
    METRICS,
    CHECKPOINT,
    CURVE,
    TB,
    DIVERGED,
    RUN_LOG,
    *POLICY_FILES,
    WANDB,
    WANDB_DIR,
)

# A `--seeds` run's folder holds one run folder per seed, s<seed>/, and this list of them
# (what `--resume` of the folder continues).
SEEDS = "seeds.json"
