"""Errors that reach the command line as one line (without importing torch or Ray for it).

Bad input is `widerl.config.ConfigError` (exit 2); these are failures of a run itself.
"""


class CollectorsFailed(RuntimeError):
    """Ape-X collectors died more often than `distributed.MAX_RESTARTS_PER_COLLECTOR` allows:
    a bug in the env or the collector, not bad luck. The trainer saves a checkpoint before this
    reaches the user (exit 1)."""
