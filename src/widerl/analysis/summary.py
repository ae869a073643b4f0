"""Per-layer parameter tables of the networks a configuration builds (paper Table 2).

Table 2 counts, per layer, the Linear weights and bias (and, for BatchNorm layers, its
weight, bias, running mean and running variance). Its policy rows stop at the mean output
layer, so everything the table does not show (the log-std head, the critics) is listed in
rows of its own rather than folded into the table's totals.
"""

from __future__ import annotations

import io

from rich.console import Console
from rich.table import Table
from torch import nn

from widerl.agents import meta_agent
from widerl.config import Config
from widerl.nets.bodies.base import Body
from widerl.nets.ensemble import EnsembleLinear
from widerl.nets.feature_factory import feature_learner_name

ENCODERS = {"sale": "SALE encoder (TD7)", "mrq": "MR.Q encoder"}


def count(module: nn.Module, members: int = 1) -> int:
    """Parameters plus BatchNorm running statistics of one of `members` ensemble members."""
    n = sum(p.numel() for p in module.parameters())
    n += sum(b.numel() for b in module.buffers() if b.is_floating_point())
    return n // members


def body_rows(body: Body) -> list[tuple[str, int, int, int]]:
    """One row per hidden layer, or per part of a block for the residual bodies (SimBa's
    LayerNorm and its two Linear layers, BroNet's two Linear + LayerNorm layers)."""
    return [(label, i, o, count(m, body.members)) for label, m, i, o in body.parts()]


def linear_row(name: str, linear: EnsembleLinear) -> tuple[str, int, int, int]:
    return (name, linear.in_dim, linear.out_dim, count(linear, linear.members))


_PARTS = {"f": "z_s encoder f", "g": "z_sa encoder g", "za": "action embedding z_a",
          "model": "model: done, next z_s, reward"}  # fmt: skip


def _part(name: str) -> str:
    """'f.l2' -> 'z_s encoder f, layer 2' (nets/sale.py, nets/mrq.py)."""
    top, _, layer = name.partition(".")
    return _PARTS.get(top, top) + (f", layer {layer.removeprefix('l')}" if layer else "")


def network_tables(cfg: Config, obs_dim: int, act_dim: int) -> list[tuple[str, list, int, list]]:
    """(network name, table rows, table total, extra rows) for every network of the agent.
    Built on the meta device: shapes without memory, so paper-L costs nothing."""
    agent = meta_agent(cfg, obs_dim, act_dim)
    tables = []
    if cfg.ofenet_units:
        of = getattr(agent.features, "inner", agent.features).online  # behind --obs-norm
        rows = body_rows(of.phi_s)
        tables.append(("OFENet z_s = phi_s(s)", rows, sum(r[3] for r in rows), []))
        rows = body_rows(of.phi_sa)
        tables.append(
            (
                "OFENet z_sa = phi_sa(z_s, a) (not in Table 2)",
                rows,
                sum(r[3] for r in rows),
                [
                    linear_row("predictor f_pred(z_sa) -> s'", of.predictor),
                    ("OFENet total (target copy not counted)", 0, 0, count(of, 1)),
                ],
            )
        )
    learner = feature_learner_name(cfg)
    if learner in ENCODERS:  # SALE, MR.Q's encoder: every Linear of the online encoder
        enc = getattr(agent.features, "inner", agent.features).online  # behind --obs-norm
        rows = [linear_row(_part(n), m) for n, m in enc.named_modules()
                if isinstance(m, EnsembleLinear)]  # fmt: skip
        total = sum(r[3] for r in rows)
        extra = [("encoder total, norms included (fixed copy not counted)", 0, 0, count(enc, 1))]
        tables.append((f"{ENCODERS[learner]} (not in Table 2)", rows, total, extra))
    actor = agent.actor
    rows = body_rows(actor.body) + [linear_row("output layer (mean)", actor.mean)]
    total = sum(r[3] for r in rows)
    extra = []
    if hasattr(actor, "log_std"):
        extra.append(linear_row("log-std head (not in Table 2)", actor.log_std))
        extra.append(("policy total incl. log-std head", 0, 0, count(actor)))
    tables.append((f"{cfg.algo.upper()} policy", rows, total, extra))
    critics = agent.critics
    head = critics.head
    out_name = "output layer (Q)"
    if head.name != "scalar":
        out_name = f"output layer ({head.name} logits, {head.out_dim} atoms)"
    crows = body_rows(critics.body) + [linear_row(out_name, critics.out)]
    ctotal = sum(r[3] for r in crows)
    n = critics.n
    copies = "targets are copies" if agent.critics_target is not None else "no targets"
    tables.append(
        (
            f"critic (each of {n}; {copies})",
            crows,
            ctotal,
            [(f"{'twin' if n == 2 else n} critics total", 0, 0, n * ctotal)],
        )
    )
    return tables


def render_summary(cfg: Config, obs_dim: int, act_dim: int) -> str:
    console = Console(file=io.StringIO(), width=100, force_terminal=False, color_system=None)
    ofenet = (
        f", OFENet {cfg.ofenet_layers} x {cfg.ofenet_units // cfg.ofenet_layers}"
        if cfg.ofenet_units
        else ""
    )
    if feature_learner_name(cfg) in ENCODERS:
        ofenet = f", {ENCODERS[feature_learner_name(cfg)]}"
    actor = ""
    if (cfg.actor_units or cfg.units, cfg.actor_layers or cfg.layers) != (cfg.units, cfg.layers):
        actor = f" (policy {cfg.actor_units or cfg.units}x{cfg.actor_layers or cfg.layers})"
    console.print(
        f"{cfg.algo.upper()} {cfg.arch} {cfg.units}x{cfg.layers}{actor} {cfg.activation}"
        f"{' +BN' if cfg.batchnorm else ''}{ofenet}{' +obs-norm' if cfg.obs_norm else ''}, "
        f"obs {obs_dim}, act {act_dim}"
    )
    for name, rows, total, extra in network_tables(cfg, obs_dim, act_dim):
        t = Table(title=name, title_justify="left")
        for col in ("layer", "input units", "output units", "parameters"):
            t.add_column(col, justify="left" if col == "layer" else "right")
        for layer, i, o, n in rows:
            t.add_row(layer, f"{i:,}", f"{o:,}", f"{n:,}")
        t.add_row("TOTAL", "", "", f"{total:,}", end_section=True)
        for layer, i, o, n in extra:
            t.add_row(layer, f"{i:,}" if i else "", f"{o:,}" if o else "", f"{n:,}")
        console.print(t)
    return console.file.getvalue()  # type: ignore[attr-defined]
