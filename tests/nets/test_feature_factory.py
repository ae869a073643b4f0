"""--features: the feature learner chosen by name from its registry; `auto` keeps what
--ofenet-units alone has always chosen; contradictions are refused."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

import widerl
from widerl.nets.feature_factory import feature_learner_name
from widerl.record.logger import TIMING_COLUMNS


@pytest.mark.parametrize(
    ("given", "name"),
    [
        ({}, "raw"),
        ({"ofenet_units": 8, "ofenet_layers": 2}, "ofenet"),  # auto: --ofenet-units decides
        ({"features": "raw"}, "raw"),
        ({"features": "ofenet", "ofenet_units": 8, "ofenet_layers": 2}, "ofenet"),
    ],
)
def test_the_feature_learner_by_name_or_by_ofenet_units(given: dict, name: str) -> None:
    assert feature_learner_name(widerl.resolve(given)) == name


def test_a_features_flag_that_contradicts_ofenet_units_is_refused() -> None:
    with pytest.raises(widerl.ConfigError, match="--features ofenet needs its width"):
        widerl.resolve({"features": "ofenet"})
    with pytest.raises(widerl.ConfigError, match="--features raw with --ofenet-units 256"):
        widerl.resolve({"features": "raw"}, "paper-S")  # the preset sizes OFENet


def test_naming_ofenet_trains_what_its_width_alone_trains(tmp_path: Path) -> None:
    tiny = {"env": "Pendulum-v1", "units": 16, "layers": 1, "batch_size": 16, "warmup": 100,
            "steps": 20, "eval_every": 20, "eval_episodes": 1, "threads": 1, "progress": False,
            "ofenet_units": 8, "ofenet_layers": 2, "ofenet_pretrain": 5}  # fmt: skip

    def rows(run: Path) -> list[dict[str, str]]:
        with (run / "metrics.csv").open() as f:
            return [{k: v for k, v in r.items() if k not in TIMING_COLUMNS}
                    for r in csv.DictReader(f)]  # fmt: skip

    widerl.train(widerl.resolve(tiny), tmp_path / "auto")
    widerl.train(widerl.resolve({**tiny, "features": "ofenet"}), tmp_path / "named")
    assert rows(tmp_path / "named") == rows(tmp_path / "auto")
    assert rows(tmp_path / "auto")[-1]["aux_loss"]  # OFENet trained
