"""`widerl train` with one function patched to send a signal to this very process on its N-th
call: a real SIGINT, SIGTERM or SIGKILL at an exact point (an update, a checkpoint write, the
start of the command), which a timer could not hit reliably on a loaded machine.

    python tests/hooked_train.py MODULE:ATTR[.ATTR] N SIGNAL {before,after} TRAIN-ARGS...

e.g. `widerl.run.trainer:Trainer.learn_step 137 SIGINT after --env Pendulum-v1 ...` stops the run
right after its 137th update. Not a test module (pytest collects test_*.py only).
"""

from __future__ import annotations

import importlib
import os
import signal
import sys


def patch(target: str, n: int, sig: int, when: str) -> None:
    module_name, path = target.split(":")
    owner = importlib.import_module(module_name)
    *parents, name = path.split(".")
    for p in parents:
        owner = getattr(owner, p)
    original = getattr(owner, name)
    calls = [0]

    def hooked(*args: object, **kwargs: object) -> object:
        calls[0] += 1
        if calls[0] == n and when == "before":
            os.kill(os.getpid(), sig)
        result = original(*args, **kwargs)
        if calls[0] == n and when == "after":
            os.kill(os.getpid(), sig)
        return result

    setattr(owner, name, hooked)


if __name__ == "__main__":
    target, n, sig, when, *train_args = sys.argv[1:]
    patch(target, int(n), getattr(signal, sig), when)
    from widerl.cli import main

    sys.exit(main(["train", *train_args]))
