"""Done-when: the three presets build on every file of the shared market data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from trademl.data.sources.files import read_candle_file
from trademl.features.engine import build_features
from trademl.features.sets import load_feature_set, preset_names


def test_all_three_presets_ship() -> None:
    assert {"minimal", "standard", "alpha158"} <= set(preset_names())
    assert len(load_feature_set("standard").columns("1h")) >= 80
    assert len(load_feature_set("alpha158").columns("1h")) == 158


@pytest.mark.parametrize("preset", ["minimal", "standard", "alpha158"])
def test_preset_builds_on_every_shared_file(data_dir: Path, preset: str) -> None:
    files = sorted(p for p in data_dir.rglob("*_*.csv*"))
    assert len(files) == 20
    for path in files:
        candles = read_candle_file(path)
        features = build_features(candles, preset, warmup="drop")
        expected_columns = load_feature_set(preset).columns(candles.attrs["timeframe"])
        assert features.columns.tolist() == expected_columns, path.name
        assert len(features) == len(candles) - features.attrs["warmup_bars"], path.name
        values = features.to_numpy()
        assert not np.isinf(values).any(), path.name
        # After the warm-up every column has values; only rare undefined points (a flat
        # window, zero volume) may be NaN.
        nan_share = np.isnan(values).mean(axis=0)
        worst = features.columns[int(np.argmax(nan_share))]
        assert nan_share.max() < 0.05, f"{path.name}: {worst} is {nan_share.max():.1%} NaN"
