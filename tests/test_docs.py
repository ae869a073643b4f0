"""The README, docs/ and every docstring name only what exists: each `widerl.x.y` imports, each
file path is in the repository, each `module.name` and `Class.attribute` of widerl's is there
(TorchRL checks its docstrings in its suite the same way)."""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "widerl"
# benchmarks/README.md is left out: its entries are dated and name the code of their revision.
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")),
        ROOT / "docs/reproduction/README.md"]  # fmt: skip
# Files a run, a report or a benchmark writes, which docs name but the repository does not hold.
WRITTEN = ("report.md",)  # `widerl report` writes OUT/report.md
# Modules that no longer exist under these names (the flat layout before the packages, and
# older ones): a reference to one of them is stale.
RETIRED = {"learner", "rundir", "layout", "distributed", "replay_storage", "bench_peers",
           "bench_seeds", "bench_distributed", "cli_options", "train", "sumtree_old"}  # fmt: skip


def docstrings() -> list[tuple[str, str]]:
    """(where, text) of every module, class and function docstring under src/widerl."""
    out = []
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                doc = ast.get_docstring(node)
                if doc:
                    name = getattr(node, "name", "module")
                    out.append((f"{path.relative_to(ROOT)}:{name}", doc))
    return out


def texts() -> list[tuple[str, str]]:
    return [(str(p.relative_to(ROOT)), p.read_text()) for p in DOCS] + docstrings()


def _modules() -> dict[str, list[str]]:
    """Every widerl module (its dotted name) by its last name component: `base` is both
    agents.base and nets.bodies.base. `__main__` modules run when imported: left out."""
    out: dict[str, list[str]] = {}
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC.parent).with_suffix("")
        if rel.name == "__main__":
            continue
        dotted = ".".join(rel.parts).removesuffix(".__init__")
        out.setdefault(rel.name if rel.name != "__init__" else rel.parent.name, []).append(dotted)
    return out


MODULES = _modules()


def resolves(dotted: str) -> bool:
    """`widerl.a.b.c`: the longest importable module prefix, then attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return False
        return True
    return False


def repo_file(name: str) -> bool:
    """A path relative to the repository, src/widerl, tests/, benchmarks/ or docs/, or a bare
    file name found anywhere in those."""
    if name.endswith(WRITTEN):
        return True
    bases = (ROOT, SRC, ROOT / "tests", ROOT / "benchmarks", ROOT / "docs", SRC / "nets",
             ROOT / "docs/reproduction")  # fmt: skip
    if any((b / name).exists() for b in bases):
        return True
    if "/" not in name:
        return any(True for b in (SRC, ROOT / "tests", ROOT / "benchmarks", ROOT / "docs")
                   for _ in b.rglob(name))  # fmt: skip
    return False


DOTTED = re.compile(r"\bwiderl(?:\.[A-Za-z_]\w*)+")
FILE = re.compile(r"(?<![\w/.-])((?:[\w-]+/)*[\w-]+\.(?:py|sh|md))\b")
# `module.Name` (a class or constant of a widerl module; lowercase names after a dot are too
# often a variable's attribute or a file's suffix to check)
MODULE_ATTR = re.compile(r"(?<![\w.])([a-z_][a-z0-9_]*)\.([A-Z]\w*)")


def problems(where: str, text: str) -> list[str]:
    found = []
    for m in DOTTED.finditer(text):
        name = m.group(0).rstrip(".")
        if not resolves(name):
            found.append(f"{where}: {name} does not exist")
    for m in FILE.finditer(text):
        if not repo_file(m.group(1)):
            found.append(f"{where}: file {m.group(1)} is not in the repository")
    for m in MODULE_ATTR.finditer(text):
        module, attr = m.groups()
        if module in RETIRED:
            found.append(f"{where}: {module}.{attr} names a module that no longer exists")
        elif module in MODULES and not any(resolves(f"{d}.{attr}") for d in MODULES[module]):
            found.append(f"{where}: {module}.{attr} does not exist")
    return found


def test_docs_and_docstrings_name_only_what_exists() -> None:
    found = [p for where, text in texts() for p in problems(where, text)]
    assert not found, "\n".join(found)


@pytest.mark.parametrize(
    ("text", "bad"),
    [("see `widerl.run.trainer.Trainer.ingest`", True), ("see `learner.LearnStep`", True),
     ("in `nets/actors_critics.py`", False), ("in `DESIGN.md`", True), ("`trainer.Trainer`", False),
     ("`widerl.load_policy(run)`", False), ("`build.Run`", False), ("`build.Nope`", True),
     ("`bench_peers.start_jax`", False), ("`distributed.RayCollectors`", True)],
)  # fmt: skip
def test_the_check_catches_what_it_should(text: str, bad: bool) -> None:
    assert bool(problems("t", text)) is bad, problems("t", text)


def test_classes_attributes_named_in_docstrings() -> None:
    """`Class.attribute` in a docstring, for widerl's own classes (e.g. `Trainer.ingest`)."""
    classes: dict[str, type] = {}
    for dotted in (d for ds in MODULES.values() for d in ds):
        mod = importlib.import_module(dotted)
        for name, obj in vars(mod).items():
            if inspect.isclass(obj) and obj.__module__.startswith("widerl"):
                classes.setdefault(name, obj)
    pattern = re.compile(r"\b(" + "|".join(sorted(classes, key=len, reverse=True)) + r")\.(\w+)")
    found = []
    for where, text in texts():
        for m in pattern.finditer(text):
            cls, attr = classes[m.group(1)], m.group(2)
            if not hasattr(cls, attr) and attr not in _instance_attrs(cls):
                found.append(f"{where}: {m.group(0)} does not exist")
    assert not found, "\n".join(found)


def _instance_attrs(cls: type) -> set[str]:
    """Names a class's methods assign on self (`self.x = ...`) or declare (dataclass fields)."""
    names = set(getattr(cls, "__dataclass_fields__", {}))
    for klass in cls.__mro__:
        if not klass.__module__.startswith("widerl"):
            continue
        try:
            src = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        names.update(re.findall(r"self\.(\w+)\s*[:=]", src))
    return names
