"""Causality, generically: for every registered indicator and every shipped preset, changing the
bars after t leaves every value at t and before unchanged; a leaky feature is caught."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trademl.data.sources.files import read_candle_file
from trademl.features.engine import build_features, warmup_bars
from trademl.features.indicators import Bars, Indicator, all_indicators
from trademl.features.sets import preset_names
from trademl.testing import CausalityError, check_causal

INDICATORS = all_indicators()


@pytest.fixture(scope="module")
def hourly(data_dir: Path) -> pd.DataFrame:
    return read_candle_file(data_dir / "crypto" / "ETHUSDT_1h.csv").iloc[-8_000:]


def indicator_frame(indicator: Indicator) -> callable:
    params = indicator.resolve()

    def compute(candles: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame(indicator.run(Bars.from_candles(candles), params), index=candles.index)

    return compute


@pytest.mark.parametrize("indicator", INDICATORS, ids=[i.name for i in INDICATORS])
@settings(
    max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(cut_fraction=st.floats(0.0, 1.0), seed=st.integers(0, 2**32 - 1))
def test_every_indicator_is_causal(
    indicator: Indicator, hourly: pd.DataFrame, cut_fraction: float, seed: int
) -> None:
    # Enough bars that the cut falls past the warm-up (KAMA's is about 5,550 bars): values before it
    # are NaN and would pass any check.
    warmup = indicator.warmup(indicator.resolve())
    candles = hourly.iloc[-(warmup + 400) :]
    cut = warmup + int(cut_fraction * 398)
    check_causal(indicator_frame(indicator), candles, cut, rng=np.random.default_rng(seed))


@pytest.mark.parametrize("preset", preset_names())
@settings(
    max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(cut_fraction=st.floats(0.0, 1.0), seed=st.integers(0, 2**32 - 1))
def test_every_preset_is_causal(
    preset: str, hourly: pd.DataFrame, cut_fraction: float, seed: int
) -> None:
    start = warmup_bars(preset, "1h") + 5
    cut = start + int(cut_fraction * (len(hourly) - start - 2))
    check_causal(lambda c: build_features(c, preset), hourly, cut, rng=np.random.default_rng(seed))


def test_a_leaky_feature_is_caught(hourly: pd.DataFrame) -> None:
    leaky = Indicator(
        name="leaky_next_close",
        family="price",
        compute=lambda bars, params: {"": np.r_[bars.close[1:], np.nan]},  # peeks one bar ahead
        warmup=lambda params: 0,
    )
    with pytest.raises(CausalityError, match="leaky_next_close"):
        check_causal(indicator_frame(leaky), hourly.iloc[-500:], 300)


def test_a_feature_normalised_by_the_whole_series_is_caught(hourly: pd.DataFrame) -> None:
    def global_zscore(candles: pd.DataFrame) -> pd.DataFrame:
        close = candles["close"]
        return ((close - close.mean()) / close.std()).to_frame("close_global_z")

    with pytest.raises(CausalityError, match="close_global_z"):
        check_causal(global_zscore, hourly.iloc[-500:], 300)


def test_higher_timeframe_bar_that_has_not_closed_is_caught(hourly: pd.DataFrame) -> None:
    # Aligning a 4h bar on its START (not its close) leaks up to 3 hours of the future.
    def leaky_alignment(candles: pd.DataFrame) -> pd.DataFrame:
        four = candles["close"].resample("4h", label="left").last()
        return four.reindex(candles.index, method="ffill").to_frame("close_4h_by_start")

    with pytest.raises(CausalityError, match="close_4h_by_start"):
        check_causal(leaky_alignment, hourly.iloc[-500:], 301)
