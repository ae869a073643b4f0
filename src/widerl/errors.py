"""Errors that reach the command line as one line (without importing torch or Ray for it).

Bad input is `ConfigError` (exit 2); the others are failures of a run itself (exit 1).
"""


def first_line(e: BaseException) -> str:
    """An exception's message as one line (the first of several), or its type's name."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


class ConfigError(ValueError):
    """A setting a user can get wrong; the CLI prints it on one line and exits with 2."""


def require(package: str, needed_by: str, extra: str) -> None:
    """Import `package` (an optional dependency), or refuse in one line: what needs it and
    the extra that installs it."""
    try:
        __import__(package)
    except ImportError:
        raise ConfigError(
            f"{needed_by} needs the package {package!r}, which is not installed: "
            f"pip install 'widerl[{extra}]'"
        ) from None


class CollectorsFailed(RuntimeError):
    """Ape-X collectors died more often than `ray_collectors.MAX_RESTARTS_PER_COLLECTOR` allows:
    a bug in the env or the collector, not bad luck. The trainer saves a checkpoint before this
    reaches the user (exit 1)."""


class Diverged(RuntimeError):
    """A loss, Q value or parameter became non-finite (inf or NaN). The trainer keeps the last
    finite checkpoint, records the divergence in the run folder (`--resume` then says so) and
    stops (exit 1). `update` is the update at which `quantity` first was non-finite, or with
    `by` the update by which it was found to be (parameters are checked at rows)."""

    lane = 0  # which of a run's seeds (its index in --seeds) diverged

    def __init__(self, quantity: str, update: int, by: bool = False, detail: str = "") -> None:
        self.quantity, self.update, self.by = quantity, update, by
        when = "by" if by else "at"
        super().__init__(f"diverged: {quantity} became non-finite {when} update {update}{detail}")


class OutputFailed(RuntimeError):
    """The run folder stopped taking writes mid-run (disk full, permissions, a read-only
    remount): the message names the file and the cause, and the resume command. The last
    checkpoint written stays valid (checkpoints are written whole or not at all), so the run
    continues from it once the folder is writable again (exit 1)."""
