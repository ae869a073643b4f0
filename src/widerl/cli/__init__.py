"""The `widerl` command line: thin commands that parse, check and call (`commands.py` holds
train, eval and summary and registers the others: bench.py, landscape.py, report.py,
experiment.py; `options.py` generates the flags
from Config). `widerl.cli:main` is the console script; `python -m widerl.cli` runs it too."""

from widerl.cli.bench import bench_cmd
from widerl.cli.commands import app, eval_cmd, main, summary_cmd, train_cmd

__all__ = ["app", "bench_cmd", "eval_cmd", "main", "summary_cmd", "train_cmd"]
