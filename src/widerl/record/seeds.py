"""`--seeds`: several seeds trained in one process, each in its own run folder `<out>/s<seed>/`
(torch-free: the command line parses and checks these before importing torch)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from widerl.config import Config, ConfigError
from widerl.record.names import SEEDS

MAX_SEEDS = 1_024  # a typo guard: `--seeds 0-99999` would build 100,000 replays


def parse_seeds(text: str) -> list[int]:
    """`0,1,2`, `0-4` or a mix (`0-2,7`): distinct non-negative seeds, in the order given."""
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        lo, sep, hi = part.partition("-")
        try:
            first, last = (int(lo), int(hi)) if sep else (int(part), int(part))
        except ValueError:
            raise ConfigError(
                f"--seeds {text!r}: {part!r} is not a seed; give seeds as 0,1,2 or a range 0-4"
            ) from None
        if first < 0 or last < 0:
            raise ConfigError(f"--seeds {text!r}: seeds are non-negative integers")
        if last < first:
            raise ConfigError(
                f"--seeds {text!r}: the range {part} runs backwards; write it {last}-{first}"
            )
        if len(seeds) + last - first + 1 > MAX_SEEDS:
            raise ConfigError(f"--seeds {text!r}: more than {MAX_SEEDS} seeds")
        seeds.extend(range(first, last + 1))
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise ConfigError(
            f"--seeds {text!r} names seed {repeated[0]} twice; every seed trains once"
        )
    return seeds


def seed_dir(out: Path, seed: int) -> Path:
    """Where seed `seed` of a `--seeds` run in `out` has its run folder."""
    return Path(out) / f"s{seed}"


def default_seeds_out(cfg: Config) -> Path:
    """runs/<env>-<algo>-<arch>-<units>x<layers>, which holds s<seed>/ per seed."""
    return Path("runs") / f"{cfg.env}-{cfg.algo}-{cfg.arch}-{cfg.units}x{cfg.layers}"


def read_seeds(out: Path) -> list[int] | None:
    """The seeds a `--seeds` run in `out` trains, or None if `out` holds none."""
    path = Path(out) / SEEDS
    if not path.is_file():
        return None
    try:
        seeds = json.loads(path.read_text())["seeds"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"cannot read {str(path)!r}: {e}") from None
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds):
        raise ConfigError(f"{str(path)!r} does not list seeds")
    return seeds


def write_seeds(out: Path, seeds: list[int]) -> None:
    path = Path(out) / SEEDS
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"seeds": seeds}) + "\n")
    os.replace(tmp, path)
