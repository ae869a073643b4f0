"""Every setting of a run (torch-free, so that `widerl --help` stays fast): the fields
(fields.py), the presets and `resolve` (presets.py), the checks of values (validate.py).
These are the package's names; import them from `widerl.config`."""

from widerl.config.fields import (
    ACTIVATIONS,
    ALGOS,
    ARCHS,
    COMPILE_MODES,
    CRITIC_HEADS,
    CRITIC_LOSSES,
    DEVICES,
    FLOAT32_MAX,
    HYPERSPHERE_ARCHS,
    INITIAL_PRIORITIES,
    INT_LIMIT,
    LAYERNORM_ARCHS,
    Config,
    check_keys,
    check_types,
    compiles,
    default_out,
    field_names,
    from_dict,
    sampler_of,
)
from widerl.config.presets import ALGO_DEFAULTS, PRESET_TASK_DEFAULTS, PRESETS, resolve, task_name
from widerl.config.validate import validate, validate_modern
from widerl.errors import ConfigError

__all__ = [
    "ACTIVATIONS", "ALGOS", "ALGO_DEFAULTS", "ARCHS", "COMPILE_MODES",
    "CRITIC_HEADS", "CRITIC_LOSSES", "DEVICES", "FLOAT32_MAX", "HYPERSPHERE_ARCHS",
    "INITIAL_PRIORITIES", "INT_LIMIT", "LAYERNORM_ARCHS", "PRESETS", "PRESET_TASK_DEFAULTS",
    "Config", "ConfigError",
    "check_keys", "check_types", "compiles", "default_out", "field_names", "from_dict",
    "resolve", "sampler_of", "task_name", "validate", "validate_modern",
]  # fmt: skip
