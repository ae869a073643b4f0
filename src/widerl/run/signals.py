"""Ctrl-C and SIGTERM as counted events instead of exceptions, so a loop can stop at a
clean point (save a checkpoint, stop children) rather than wherever the signal lands."""

from __future__ import annotations

import signal


class StopSignals:
    """Inside `with StopSignals() as s:`, SIGINT/SIGTERM only increment `s.count`; `s.signum`
    is the first one received (the command exits with 128 + it, as a shell reports a signal)."""

    def __init__(self) -> None:
        self.count = 0
        self.signum: int | None = None
        self._old: dict[int, object] = {}

    @property
    def stop(self) -> bool:
        return self.count > 0

    def __enter__(self) -> StopSignals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: object) -> None:
        if self.signum is None:
            self.signum = signum
        self.count += 1

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
