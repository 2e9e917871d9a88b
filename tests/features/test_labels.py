"""Labels: exact values on hand-made bars, incomplete windows, named horizons, bad specs, real
data against a direct computation, and the look-forward-only property."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trademl.data.candles import make_candles
from trademl.data.sources.files import read_candle_file
from trademl.errors import ConfigError, DataValidationError
from trademl.features import labels as labels_module
from trademl.features.horizons import (
    DEFAULT_HORIZONS,
    HORIZON_NAMES,
    horizon_table,
    resolve_horizon,
)
from trademl.features.labels import LabelSpec, build_labels, parse_label_specs

KINDS = ("direction", "max_high", "min_low", "forward_return", "triple_barrier")


def bars(
    close: list[float],
    high: list[float] | None = None,
    low: list[float] | None = None,
    timeframe: str | None = "1h",
) -> pd.DataFrame:
    """Candles with open = previous close; high/low widened to cover open and close."""
    c = np.asarray(close, dtype=float)
    o = np.concatenate([[c[0]], c[:-1]])
    h = np.maximum.reduce([np.asarray(high if high is not None else c, dtype=float), o, c])
    lo = np.minimum.reduce([np.asarray(low if low is not None else c, dtype=float), o, c])
    index = pd.date_range("2024-01-01", periods=len(c), freq="1h")
    return make_candles(index, o, h, lo, c, np.ones(len(c)), symbol="TEST", timeframe=timeframe)


# Ten hand-made bars: open, high, low, close.
TEN = bars(
    close=[100, 102, 101, 105, 103, 98, 99, 104, 106, 100],
    high=[101, 103, 102.5, 106, 105.5, 103, 100, 104.5, 107, 106.5],
    low=[99, 99.5, 100, 100.5, 102, 97, 97.5, 98.5, 103, 99],
)
NAN3 = [math.nan] * 3


def test_ten_bars_exact_max_high_min_low_forward_return() -> None:
    out = build_labels(
        TEN, [{"kind": k, "horizon": 3} for k in ("max_high", "min_low", "forward_return")]
    )
    close = np.array([100, 102, 101, 105, 103, 98, 99], dtype=float)
    max_high = np.array([106, 106, 106, 105.5, 104.5, 107, 107], dtype=float)
    min_low = np.array([99.5, 100, 97, 97, 97, 97.5, 98.5], dtype=float)
    close_3 = np.array([105, 103, 98, 99, 104, 106, 100], dtype=float)
    expected = {
        "max_high_3": [*np.log(max_high / close), *NAN3],
        "min_low_3": [*np.log(min_low / close), *NAN3],
        "forward_return_3": [*np.log(close_3 / close), *NAN3],
    }
    for column, values in expected.items():
        np.testing.assert_allclose(out[column].to_numpy(), values, rtol=1e-15, equal_nan=True)
        assert out[column].dtype == np.float64
    assert out.columns.tolist() == [*expected, "complete_3"]
    assert out["complete_3"].dtype == bool
    assert out["complete_3"].tolist() == [True] * 7 + [False] * 3
    assert out.index.equals(TEN.index)


def test_direction_with_and_without_dead_zone() -> None:
    plain = build_labels(TEN, {"kind": "direction", "horizon": 3})["direction_3"]
    assert plain.tolist()[:7] == [1, 1, -1, -1, 1, 1, 1]
    zoned = build_labels(TEN, {"kind": "direction", "horizon": 3, "dead_zone": 0.02})
    # log returns: +0.049, +0.0097, -0.030, -0.059, +0.0097, +0.079, +0.010
    assert zoned["direction_3"].tolist()[:7] == [1, 0, -1, -1, 0, 1, 0]
    assert np.isnan(zoned["direction_3"].to_numpy()[7:]).all()
    flat = build_labels(bars([100, 100, 100, 100]), {"kind": "direction", "horizon": 1})
    assert flat["direction_1"].tolist()[:3] == [0, 0, 0]


# Triple barrier: closes 100, 104, 100, 104, 100 then flat, so that with vol_window=4 the
# volatility at t=4 is that of returns ±log(1.04), and h=3 with k=1 puts the barriers near
# 108.2 and 92.5, far from the flat bars 5.. unless a high or low is set to reach them.
TB_CLOSE = [100, 104, 100, 104, 100, 100, 100, 100, 100, 100]
TB = {"kind": "triple_barrier", "horizon": 3, "vol_window": 4, "profit_take": 1, "stop_loss": 1}


def barriers(t: int = 4, h: int = 3, window: int = 4, up: float = 1, down: float = 1):
    returns = np.diff(np.log(np.asarray(TB_CLOSE[t - window : t + 1], dtype=float)))
    width = np.std(returns, ddof=1) * math.sqrt(h)
    return TB_CLOSE[t] * math.exp(up * width), TB_CLOSE[t] * math.exp(-down * width)


def triple(highs: dict[int, float], lows: dict[int, float], spec=TB) -> float:
    high = [c + 0.5 for c in TB_CLOSE]
    low = [c - 0.5 for c in TB_CLOSE]
    for position, value in highs.items():
        high[position] = value
    for position, value in lows.items():
        low[position] = value
    return float(build_labels(bars(TB_CLOSE, high, low), spec)["triple_barrier_3"].iloc[4])


def test_triple_barrier_first_touch_both_touch_and_time_barrier() -> None:
    upper, lower = barriers()
    assert 108 < upper < 108.5 and 92 < lower < 92.6
    above, below = upper + 0.01, lower - 0.01
    assert triple({6: above}, {}) == 1  # upper touched first
    assert triple({}, {5: below}) == -1  # lower touched first
    assert triple({5: above}, {6: below}) == 1  # upper on bar 5, lower later
    assert triple({6: above}, {5: below}) == -1  # lower on bar 5, upper later
    assert triple({6: above}, {6: below}) == -1  # one bar touches both: stop first
    assert triple({}, {}) == 0  # neither within h bars: time barrier
    assert triple({8: above}, {8: below}) == 0  # touches after the horizon do not count
    assert triple({7: above}, {}) == 1  # the last bar of the window counts
    assert triple({5: upper - 0.01}, {5: lower + 0.01}) == 0  # near misses


def test_triple_barrier_asymmetric_barriers() -> None:
    spec = {**TB, "profit_take": 0.5, "stop_loss": 3.0}
    upper, lower = barriers(up=0.5, down=3.0)
    assert triple({5: upper + 0.01}, {}, spec) == 1
    assert triple({5: (upper + barriers()[0]) / 2 - 0.2}, {}, spec) == 1
    assert triple({}, {5: barriers()[1] - 0.01}, spec) == 0  # k=1 lower is not the k=3 one
    assert triple({}, {5: lower - 0.01}, spec) == -1


def test_triple_barrier_nan_where_sigma_undefined_or_window_incomplete() -> None:
    out = build_labels(bars(TB_CLOSE), TB)
    values = out["triple_barrier_3"].to_numpy()
    assert np.isnan(values[:4]).all()  # sigma needs vol_window returns
    assert np.isnan(values[-3:]).all()  # window past the end
    assert not np.isnan(values[4:7]).any()
    assert out["complete_3"].tolist() == [True] * 7 + [False] * 3


@pytest.mark.parametrize("h", [1, 3, 9, 10, 25])
def test_incomplete_windows_are_nan_exactly_on_the_last_h_rows(h: int) -> None:
    out = build_labels(TEN, [{"kind": k, "horizon": h, "vol_window": 2} for k in KINDS])
    n = len(TEN)
    complete = out[f"complete_{h}"].to_numpy()
    assert complete.tolist() == [i < n - h for i in range(n)]
    for kind in KINDS:
        values = out[f"{kind}_{h}"].to_numpy()
        assert np.isnan(values[~complete]).all()
        start = 2 if kind == "triple_barrier" else 0
        assert not np.isnan(values[start:][complete[start:]]).any()


def test_repeated_horizons_share_one_complete_column_and_duplicates_collapse() -> None:
    out = build_labels(
        TEN,
        [
            {"kind": "direction", "horizon": 2},
            {"kind": "max_high", "horizon": "2"},
            {"kind": "max_high", "horizon": 2, "dead_zone": 0.5},  # unused parameter: same label
            {"kind": "min_low", "horizon": 4},
        ],
    )
    assert out.columns.tolist() == [
        "direction_2",
        "max_high_2",
        "min_low_4",
        "complete_2",
        "complete_4",
    ]
    with pytest.raises(ConfigError, match="both be named 'direction_2'"):
        build_labels(
            TEN,
            [
                {"kind": "direction", "horizon": 2},
                {"kind": "direction", "horizon": 2, "dead_zone": 1},
            ],
        )


# -- horizons ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("timeframe", "expected"),
    [
        ("1m", (15, 240, 4320, 28_800)),
        ("5m", (6, 72, 864, 5760)),
        ("15m", (4, 24, 288, 1920)),
        ("1h", (1, 6, 72, 480)),
        ("60m", (1, 6, 72, 480)),
        ("4h", (1, 2, 18, 120)),
        ("1d", (1, 1, 5, 20)),
        ("30m", (1, 12, 144, 960)),  # derived: 30 min, 6 h, 3 d, 20 d
        ("2h", (1, 3, 36, 240)),
        ("1w", (1, 1, 1, 3)),
        ("1s", (1800, 21_600, 259_200, 1_728_000)),
    ],
)
def test_named_horizons_resolve_per_timeframe(timeframe: str, expected: tuple[int, ...]) -> None:
    assert tuple(resolve_horizon(name, timeframe) for name in HORIZON_NAMES) == expected


def test_horizon_table_covers_every_name_and_overrides_apply() -> None:
    for table in DEFAULT_HORIZONS.values():
        assert tuple(table) == HORIZON_NAMES
        assert list(table.values()) == sorted(table.values())
    assert resolve_horizon("intraday", "1h", {"60m": {"intraday": 12}}) == 12
    assert resolve_horizon("swing", "1h", {"1h": {"intraday": 12}}) == 72
    assert resolve_horizon("intraday", "4h", {"1h": {"intraday": 12}}) == 2
    assert horizon_table("30m", {"30m": {"position": 1000}})["position"] == 1000
    assert resolve_horizon(7, None) == 7
    assert resolve_horizon("SWING", "1d") == 5
    with pytest.raises(ConfigError, match="unknown horizon"):
        horizon_table("1h", {"1h": {"weekly": 3}})
    with pytest.raises(ConfigError, match="at least 1 bar"):
        horizon_table("1h", {"1h": {"swing": 0}})


def test_named_horizons_in_build_labels_use_the_candles_timeframe() -> None:
    candles = bars([100 + i for i in range(40)], timeframe="15m")
    out = build_labels(candles, {"kind": "max_high", "horizon": "intraday"})
    assert out.columns.tolist() == ["max_high_24", "complete_24"]
    overridden = build_labels(
        candles, {"kind": "max_high", "horizon": "intraday"}, overrides={"15m": {"intraday": 8}}
    )
    assert overridden.columns.tolist() == ["max_high_8", "complete_8"]
    no_tf = bars([100.0, 101.0, 102.0], timeframe=None)
    assert build_labels(no_tf, {"kind": "max_high", "horizon": 1}).shape == (3, 2)
    with pytest.raises(ConfigError, match="timeframe is needed"):
        build_labels(no_tf, {"kind": "max_high", "horizon": "scalping"})


# -- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"kind": "sharpe", "horizon": 3}, r"labels\[0\]\.kind: Input should be 'direction'"),
        (
            {"kind": "direction", "horizon": "weekly"},
            r"unknown horizon 'weekly'.*scalping, intraday, swing, position",
        ),
        ({"kind": "direction", "horizon": 0}, r"labels\[0\]\.horizon: .*at least 1 bar, got 0"),
        ({"kind": "direction", "horizon": -5}, "at least 1 bar, got -5"),
        ({"kind": "direction", "horizon": True}, "number of bars"),
        ({"kind": "direction", "horizon": 2.5}, "number of bars"),
        ({"kind": "direction"}, r"labels\[0\]\.horizon: Field required"),
        ({"kind": "direction", "horizon": 3, "window": 5}, r"labels\[0\]\.window: Extra inputs"),
        (
            {"kind": "direction", "horizon": 3, "dead_zone": -0.1},
            "dead_zone: .*greater than or equal to 0",
        ),
        ({"kind": "triple_barrier", "horizon": 3, "stop_loss": 0}, "stop_loss: .*greater than 0"),
        (
            {"kind": "triple_barrier", "horizon": 3, "vol_window": 1},
            "vol_window: .*greater than or equal to 2",
        ),
        ([], "the list is empty"),
        ("direction", "must be a mapping"),
        ([{"kind": "direction", "horizon": 1}, 5], r"labels\[1\]: expected a mapping"),
        ({"labels": [{"kind": "min_low", "horizon": 2}], "extra": 1}, "unknown key.*extra"),
    ],
)
def test_bad_specs_are_config_errors(spec: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_label_specs(spec)
    with pytest.raises(ConfigError, match=message):
        build_labels(TEN, spec)  # type: ignore[arg-type]


def test_resolve_horizon_errors() -> None:
    with pytest.raises(ConfigError, match=r"unknown horizon 'monthly'; .*scalping, intraday"):
        resolve_horizon("monthly", "1h")
    with pytest.raises(ConfigError, match="at least 1 bar, got 0"):
        resolve_horizon(0, "1h")
    with pytest.raises(ConfigError, match="timeframe"):
        resolve_horizon("swing", "3 fortnights")


def test_parse_label_specs_forms() -> None:
    one = LabelSpec(kind="min_low", horizon=2)
    assert parse_label_specs(one) == [one]
    assert parse_label_specs({"labels": [one, {"kind": "min_low", "horizon": "2"}]}) == [one, one]
    assert (
        parse_label_specs({"kind": "direction", "horizon": " Intraday "})[0].horizon == "intraday"
    )


def test_bad_candles_are_refused() -> None:
    with pytest.raises(DataValidationError, match="float64"):
        build_labels(TEN.astype({"close": "float32"}), {"kind": "max_high", "horizon": 1})
    zero = bars([1.0, 0.0, 1.0])
    with pytest.raises(DataValidationError, match="not positive"):
        build_labels(zero, {"kind": "max_high", "horizon": 1})


# -- real data ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def btc(data_dir: Path) -> pd.DataFrame:
    return read_candle_file(data_dir / "crypto" / "BTCUSDT_1h.csv")


def direct_triple_barrier(candles: pd.DataFrame, t: int, h: int, spec: LabelSpec) -> float:
    close, high, low = (candles[c].to_numpy() for c in ("close", "high", "low"))
    returns = np.diff(np.log(close[t - spec.vol_window : t + 1]))
    width = np.std(returns, ddof=1) * math.sqrt(h)
    upper = close[t] * math.exp(spec.profit_take * width)
    lower = close[t] * math.exp(-spec.stop_loss * width)
    for j in range(t + 1, t + h + 1):
        if low[j] <= lower:
            return -1.0
        if high[j] >= upper:
            return 1.0
    return 0.0


def test_real_btc_values_equal_a_direct_computation(btc: pd.DataFrame) -> None:
    specs = [
        LabelSpec(kind="direction", horizon=24, dead_zone=0.001),
        LabelSpec(kind="max_high", horizon=24),
        LabelSpec(kind="min_low", horizon="intraday"),
        LabelSpec(kind="forward_return", horizon=24),
        LabelSpec(kind="triple_barrier", horizon=24, profit_take=1.5, stop_loss=1.0),
    ]
    out = build_labels(btc, specs)
    assert out.columns.tolist() == [
        "direction_24",
        "max_high_24",
        "min_low_6",
        "forward_return_24",
        "triple_barrier_24",
        "complete_24",
        "complete_6",
    ]
    assert (out.iloc[:, :5].dtypes == np.float64).all()
    n, h = len(btc), 24
    assert int((~out["complete_24"]).sum()) == h and int((~out["complete_6"]).sum()) == 6
    assert int(out["triple_barrier_24"].isna().sum()) == h + 20
    counts = out["triple_barrier_24"].value_counts()
    assert set(counts.index) == {-1.0, 0.0, 1.0} and counts.min() > n // 50
    close, high, low = (btc[c].to_numpy() for c in ("close", "high", "low"))
    rng = np.random.default_rng(7)
    for t in rng.integers(20, n - h, 300):
        ret = math.log(close[t + h] / close[t])
        row = out.iloc[t]
        assert row["forward_return_24"] == pytest.approx(ret, rel=1e-12, abs=1e-15)
        assert row["direction_24"] == (1.0 if ret > 0.001 else -1.0 if ret < -0.001 else 0.0)
        assert row["max_high_24"] == pytest.approx(
            math.log(high[t + 1 : t + h + 1].max() / close[t]), rel=1e-12, abs=1e-15
        )
        assert row["min_low_6"] == pytest.approx(
            math.log(low[t + 1 : t + 7].min() / close[t]), rel=1e-12, abs=1e-15
        )
        assert row["triple_barrier_24"] == direct_triple_barrier(btc, int(t), h, specs[4])


def test_chunked_first_touch_equals_one_chunk(
    btc: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    candles = btc.iloc[-6000:]
    specs = [{"kind": "triple_barrier", "horizon": h} for h in (1, 7, 100, 333)]
    whole = build_labels(candles, specs)
    monkeypatch.setattr(labels_module, "_CHUNK_ELEMENTS", 5000)
    pd.testing.assert_frame_equal(build_labels(candles, specs), whole)


def test_labels_look_forward_only(btc: pd.DataFrame) -> None:
    candles = btc.iloc[-3000:].copy()
    specs = [{"kind": k, "horizon": 24, "vol_window": 20} for k in KINDS]
    base = build_labels(candles, specs)
    t, h, window = 2000, 24, 20

    def perturbed(rows: slice, factor: float) -> pd.DataFrame:
        changed = candles.copy()
        for column in ("open", "high", "low", "close"):
            changed.iloc[rows, changed.columns.get_loc(column)] *= factor
        return build_labels(changed, specs)

    # Bars after t (inside the window) move every label at t.
    up = perturbed(slice(t + 1, t + h + 1), 1.2)
    down = perturbed(slice(t + 1, t + h + 1), 0.8)
    for kind in ("max_high", "min_low", "forward_return"):
        assert up[f"{kind}_24"].iloc[t] != base[f"{kind}_24"].iloc[t], kind
    for kind in ("direction", "triple_barrier"):
        assert (up[f"{kind}_24"].iloc[t], down[f"{kind}_24"].iloc[t]) == (1, -1), kind
    # The bar at t + h alone moves the return-based labels at t.
    last = perturbed(slice(t + h, t + h + 1), 1.3)
    assert last["forward_return_24"].iloc[t] != base["forward_return_24"].iloc[t]
    assert last["max_high_24"].iloc[t] != base["max_high_24"].iloc[t]
    # Bars past the window leave labels at t and before untouched.
    beyond = perturbed(slice(t + h + 1, None), 1.5)
    pd.testing.assert_frame_equal(beyond.iloc[: t + 1], base.iloc[: t + 1])
    # Bars before t - vol_window leave every label from t on untouched, bit for bit.
    before = perturbed(slice(0, t - window), 0.5)
    pd.testing.assert_frame_equal(before.iloc[t:], base.iloc[t:])
    # ...while bars inside the volatility window do move the triple barrier somewhere.
    inside = perturbed(slice(t - window, t), 1.3)
    assert not inside["triple_barrier_24"].iloc[t:].equals(base["triple_barrier_24"].iloc[t:])
