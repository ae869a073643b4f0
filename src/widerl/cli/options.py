"""The command line's options that more than one command shares: every Config field as a
flag (generated from config/fields.py, so each setting has one declaration, one default and one
help text), --preset, and the whole option set of `widerl train`."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from widerl.config import INT_LIMIT, PRESETS, Config

_CLICK_TYPES = {bool: bool, int: int, float: float, str: str}


def count(least: int = 1) -> click.IntRange:
    """An integer option of at least `least`, and at most what int64 holds (torch and numpy
    count with it): every command's counts, sizes and seeds, as `train`'s are."""
    return click.IntRange(min=least, max=INT_LIMIT)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def config_options(only: tuple[str, ...] | None = None) -> Callable:
    """Decorator adding one click option per Config field. Defaults are None so that only
    flags the user typed override a preset; the help text shows the real default."""

    def decorate(fn: Callable) -> Callable:
        for f in reversed(dataclasses.fields(Config)):
            if only is not None and f.name not in only:
                continue
            kind = _CLICK_TYPES[type(f.default)]
            decl = _flag(f.name)
            if kind is bool:
                decl = f"{decl}/--no-{f.name.replace('_', '-')}"
            choices = f.metadata.get("choices")
            typ: Any = click.Choice(choices) if choices else kind
            if f.metadata.get("positive"):
                typ = count(1)
            elif f.metadata.get("nonneg"):
                typ = count(0)
            default = f.metadata.get("default_text", f.default)
            fn = click.option(
                decl,
                f.name,
                type=typ,
                default=None,
                help=f"{f.metadata['help']} [default: {default}]",
            )(fn)
        return fn

    return decorate


def given_values(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The options the user typed (the others are None: a preset's values stay)."""
    return {k: v for k, v in kwargs.items() if v is not None}


preset_option = click.option(
    "--preset",
    type=click.Choice(list(PRESETS)),
    default=None,
    help="Named defaults, overridden by explicit flags (each value's source: "
    "config/presets.py; tables: docs/paper.md). Where widerl's agent differs from the "
    "method's own: td7 = TD3 on SALE with LAP, but ReLU critics, targets moved by tau, no "
    "value clipping; mrq = TD3 on MR.Q's encoder with LAP and 3-step returns, but widerl's MLP "
    "critic on [z_s, z_sa] instead of MR.Q's value head on z_sa, targets moved by tau; simbav2 "
    "= SAC on SimbaV2, but a constant learning rate and plain output layers; xqc = CrossQ + "
    "--weight-projection + a categorical critic on scaled rewards, widths widerl's.",
)


def train_options(fn: Callable) -> Callable:
    """`widerl train`'s options (also how `widerl experiment --train-args` is parsed)."""
    fn = config_options()(fn)
    fn = click.option(
        "--seeds",
        default=None,
        metavar="LIST",
        help="Train one independent agent per seed in this one process, e.g. 0,1,2,3,4 or "
        "0-4: each seed has its own envs, replay, OFENet, optimizer state and random "
        "streams, and writes its own run folder --out/s<seed>/ (what eval, landscape, "
        "report and --resume take); the seeds' networks are stacked and trained by one "
        "update. Not with --seed; --resume of --out continues all seeds.",
    )(fn)
    fn = click.option("--force", is_flag=True, help="Replace a run already in --out.")(fn)
    fn = click.option(
        "--resume",
        type=click.Path(path_type=Path),
        default=None,
        help="Continue the run in this folder from its last checkpoint.",
    )(fn)
    return preset_option(fn)


def train_parser() -> click.Command:
    """A command with exactly `widerl train`'s options, for parsing its flags elsewhere."""
    return click.command("train")(train_options(lambda **_: None))
