"""The Candles contract: one validator, one rule per failure, naming the row."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from trademl.data.candles import COLUMNS, empty_candles, make_candles, validate_candles
from trademl.errors import DataValidationError


def _candles(n: int = 5) -> pd.DataFrame:
    idx = pd.date_range("2024-01-01", periods=n, freq="1h", tz="UTC")
    close = np.linspace(100, 104, n)
    return make_candles(idx, close - 0.5, close + 1, close - 1, close, np.full(n, 10.0))


def test_valid_candles_pass_and_are_returned_unchanged() -> None:
    frame = _candles()
    assert validate_candles(frame) is frame


def test_real_file_passes(data_dir) -> None:
    raw = pd.read_csv(data_dir / "crypto" / "BTCUSDT_1h.csv")
    idx = pd.DatetimeIndex(pd.to_datetime(raw["timestamp"], utc=True))
    frame = make_candles(idx, *(raw[c].to_numpy() for c in COLUMNS))
    assert len(validate_candles(frame, source="BTCUSDT_1h.csv")) == 60_852


@pytest.mark.parametrize(
    ("mutate", "rule", "row"),
    [
        (lambda f: f.drop(columns="volume"), "missing_column", None),
        (lambda f: f.iloc[0:0], "empty", None),
        (lambda f: f.tz_convert("America/New_York"), "timezone", None),
        (lambda f: f.tz_localize(None), "timezone", None),
        (lambda f: f.rename_axis("date"), "index_name", None),
        (lambda f: f.astype({"close": "float32"}), "not_float64", None),
        (lambda f: f.assign(close=f["close"].where(f.index != f.index[2], np.nan)), "nan_value", 3),
        (
            lambda f: f.assign(volume=f["volume"].where(f.index != f.index[1], np.inf)),
            "nan_value",
            2,
        ),
        (lambda f: f.iloc[[0, 1, 1, 2]], "duplicate_timestamp", 3),
        (lambda f: f.iloc[[0, 2, 1, 3]], "unsorted_timestamp", 3),
        (
            lambda f: f.assign(low=f["low"].where(f.index != f.index[3], 1000.0)),
            "ohlc_consistency",
            4,
        ),
        (
            lambda f: f.assign(high=f["high"].where(f.index != f.index[0], 1.0)),
            "ohlc_consistency",
            1,
        ),
        (
            lambda f: f.assign(volume=f["volume"].where(f.index != f.index[4], -1.0)),
            "negative_volume",
            5,
        ),
    ],
)
def test_each_rule_names_row_and_rule(mutate, rule: str, row: int | None) -> None:
    with pytest.raises(DataValidationError, match=rf"\[{rule}\]") as caught:
        validate_candles(mutate(_candles()), source="x.csv")
    assert caught.value.rule == rule
    assert caught.value.row == row
    assert str(caught.value).startswith("x.csv")


def test_row_numbers_can_come_from_the_source() -> None:
    frame = _candles()
    frame.loc[frame.index[2], "low"] = 1e9
    with pytest.raises(DataValidationError, match="row 42"):
        validate_candles(frame, row_numbers=[40, 41, 42, 43, 44])


def test_non_frame_is_refused() -> None:
    with pytest.raises(DataValidationError, match="expected a pandas DataFrame"):
        validate_candles([1, 2, 3])  # type: ignore[arg-type]


def test_empty_candles_have_the_contract_shape() -> None:
    frame = empty_candles()
    assert list(frame.columns) == list(COLUMNS)
    assert (frame.dtypes == np.float64).all()
    assert str(frame.index.tz) == "UTC"
    assert frame.index.name == "timestamp"
