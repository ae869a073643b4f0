"""Imports run one way (docs/learning-core.md, "Layout"): a package imports only packages
below it, never one above it or one of its own level."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "widerl"
# Lower imports higher never; one level's packages never import each other.
LEVEL = {
    "errors": 0,
    "config": 1,
    "nets": 2, "replay": 2,
    "agents": 3,
    "record": 4, "collect": 4,
    "analysis": 5,
    "run": 6,
    "api": 7, "policy": 7, "bench": 7, "experiments": 7,
    "exported": 8,  # builds on policy
    "cli": 9,
    "__init__": 10,
}  # fmt: skip


def imports(path: Path) -> list[str]:
    """The widerl packages (or top-level modules) `path` imports."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("widerl"):
            parts = node.module.split(".")
            out += [parts[1]] if len(parts) > 1 else [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            out += [a.name.split(".")[1] for a in node.names if a.name.startswith("widerl.")]
    return out


def test_every_package_has_a_level() -> None:
    tops = {p.name.removesuffix(".py") for p in SRC.iterdir() if p.suffix == ".py" or p.is_dir()}
    assert tops - {"__pycache__"} <= set(LEVEL), tops - set(LEVEL)


def test_imports_run_downwards() -> None:
    wrong = []
    for path in sorted(SRC.rglob("*.py")):
        own = path.relative_to(SRC).parts[0].removesuffix(".py")
        for other in imports(path):
            if other != own and other in LEVEL and LEVEL[other] >= LEVEL[own]:
                wrong.append(f"{path.relative_to(SRC)} imports widerl.{other}")
    assert not wrong, "\n".join(wrong)


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    bad = tmp_path / "m.py"
    bad.write_text("from widerl.run.trainer import Trainer\nimport widerl.cli.commands\n")
    assert imports(bad) == ["run", "cli"]
