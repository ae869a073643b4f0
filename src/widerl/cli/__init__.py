"""The `widerl` command line: thin commands that parse, check and call (`commands.py` holds
train, eval, summary and bench and registers the others; `options.py` generates the flags
from Config). `widerl.cli:main` is the console script; `python -m widerl.cli` runs it too."""

from widerl.cli.commands import app, bench_cmd, eval_cmd, main, summary_cmd, train_cmd

__all__ = ["app", "bench_cmd", "eval_cmd", "main", "summary_cmd", "train_cmd"]
