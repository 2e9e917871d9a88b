"""The indicators TA-Lib lacks (trademl.features.custom) and the AMD phase detector
(trademl.features.phases): each formula against a plain computation written here, exact
warm-ups, parameter checks, known time values, a constructed AMD sequence, and causality."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from trademl.data.sources.files import read_candle_file
from trademl.errors import ConfigError
from trademl.features.indicators import Bars, get_indicator

CUSTOM = [
    "log_return",
    "zscore",
    "rv_close",
    "rv_parkinson",
    "rv_garman_klass",
    "rv_rogers_satchell",
    "rv_yang_zhang",
    "rv_gap",
    "candle",
    "dist_high",
    "dist_low",
    "volume_zscore",
    "vwap_distance",
    "time_cyclical",
    "amd_phase",
]
# Each indicator at its defaults and at a second, non-default setting.
SETTINGS: list[tuple[str, dict[str, Any]]] = [(name, {}) for name in CUSTOM] + [
    ("log_return", {"n": 7, "price": "high"}),
    ("zscore", {"window": 50, "price": "volume"}),
    ("rv_close", {"window": 2}),
    ("rv_parkinson", {"window": 5}),
    ("rv_garman_klass", {"window": 33}),
    ("rv_rogers_satchell", {"window": 3}),
    ("rv_yang_zhang", {"window": 10}),
    ("rv_gap", {"window": 7}),
    ("candle", {"atr_window": 5}),
    ("dist_high", {"window": 1}),
    ("dist_low", {"window": 100}),
    ("volume_zscore", {"window": 7}),
    ("vwap_distance", {"window": 48}),
    ("amd_phase", {"window": 20, "compression": 0.8, "expansion": 1.2, "memory": 6}),
]
RTOL, ATOL = 1e-8, 1e-11


@pytest.fixture(scope="module")
def btc(data_dir: Path) -> pd.DataFrame:
    return read_candle_file(data_dir / "crypto" / "BTCUSDT_1h.csv").iloc[-3_000:]


@pytest.fixture(scope="module")
def spy(data_dir: Path) -> pd.DataFrame:
    return read_candle_file(data_dir / "equities" / "SPY_1d.csv")


@pytest.fixture(params=["btc", "spy"])
def candles(request: pytest.FixtureRequest) -> pd.DataFrame:
    frame: pd.DataFrame = request.getfixturevalue(request.param)
    return frame


def run(name: str, bars: Bars, **given: Any) -> dict[str, np.ndarray]:
    """The indicator's outputs keyed by output name ("" for a single output)."""
    indicator = get_indicator(name)
    params = indicator.resolve(given)
    columns = indicator.run(bars, params)
    return dict(zip(indicator.outputs, columns.values(), strict=True))


def positions(length: int, start: int, count: int = 30, seed: int = 7) -> np.ndarray:
    """A spread of positions from ``start`` to the end, the first and last included."""
    rng = np.random.default_rng(seed)
    return np.unique(np.r_[start, length - 1, rng.integers(start, length, count)])


def check_at(values: np.ndarray, expected: Any, at: np.ndarray) -> None:
    np.testing.assert_allclose(values[at], [expected(p) for p in at], rtol=RTOL, atol=ATOL)


# -- formulas against explicit computations ---------------------------------------------------


@pytest.mark.parametrize(("n", "price"), [(1, "close"), (5, "close"), (3, "high")])
def test_log_return(candles: pd.DataFrame, n: int, price: str) -> None:
    bars = Bars.from_candles(candles)
    x = candles[price].to_numpy()
    values = run("log_return", bars, n=n, price=price)[""]
    check_at(values, lambda p: np.log(x[p] / x[p - n]), positions(len(x), n))


@pytest.mark.parametrize(("window", "price"), [(20, "close"), (100, "close"), (10, "volume")])
def test_zscore_uses_the_population_std(candles: pd.DataFrame, window: int, price: str) -> None:
    bars = Bars.from_candles(candles)
    x = candles[price].to_numpy()

    def expected(p: int) -> float:
        s = x[p - window + 1 : p + 1]
        return float((x[p] - s.mean()) / s.std(ddof=0))

    values = run("zscore", bars, window=window, price=price)[""]
    check_at(values, expected, positions(len(x), window - 1))


def ohlc(candles: pd.DataFrame) -> tuple[np.ndarray, ...]:
    return tuple(candles[c].to_numpy() for c in ("open", "high", "low", "close"))


@pytest.mark.parametrize("window", [2, 20])
def test_realised_volatilities(candles: pd.DataFrame, window: int) -> None:
    bars = Bars.from_candles(candles)
    o, h, low, c = ohlc(candles)
    n = window

    def span(p: int) -> slice:
        return slice(p - n + 1, p + 1)

    def rs(p: int) -> np.ndarray:
        s = span(p)
        hs, ls, os_, cs = h[s], low[s], o[s], c[s]
        return np.log(hs / cs) * np.log(hs / os_) + np.log(ls / cs) * np.log(ls / os_)

    def close_to_close(p: int) -> float:
        returns = np.log(c[p - n + 1 : p + 1] / c[p - n : p])
        return float(np.std(returns, ddof=1))

    def parkinson(p: int) -> float:
        s = span(p)
        return float(np.sqrt(np.sum(np.log(h[s] / low[s]) ** 2) / (4 * n * np.log(2))))

    def garman_klass(p: int) -> float:
        s = span(p)
        terms = 0.5 * np.log(h[s] / low[s]) ** 2 - (2 * np.log(2) - 1) * np.log(c[s] / o[s]) ** 2
        return float(np.sqrt(terms.mean()))

    def yang_zhang(p: int) -> float:
        s = span(p)
        overnight = np.log(o[s] / c[p - n : p])
        open_close = np.log(c[s] / o[s])
        k = 0.34 / (1.34 + (n + 1) / (n - 1))
        variance = overnight.var(ddof=1) + k * open_close.var(ddof=1) + (1 - k) * rs(p).mean()
        return float(np.sqrt(variance))

    cases = {
        "rv_close": (close_to_close, n),
        "rv_parkinson": (parkinson, n - 1),
        "rv_garman_klass": (garman_klass, n - 1),
        "rv_rogers_satchell": (lambda p: float(np.sqrt(rs(p).mean())), n - 1),
        "rv_yang_zhang": (yang_zhang, n),
        "rv_gap": (lambda p: float(np.sqrt(np.mean(np.log(o[span(p)] / c[p - n : p]) ** 2))), n),
    }
    for name, (expected, first) in cases.items():
        values = run(name, bars, window=window)[""]
        check_at(values, expected, positions(len(c), first))


def mean_true_range(h: np.ndarray, low: np.ndarray, c: np.ndarray, n: int) -> np.ndarray:
    """The finite-window ATR written out: the plain mean of the last n true ranges."""
    true_range = np.maximum(h[1:] - low[1:], np.abs(h[1:] - c[:-1]))
    true_range = np.r_[np.nan, np.maximum(true_range, np.abs(low[1:] - c[:-1]))]
    atr = np.full(len(c), np.nan)
    for t in range(n, len(c)):
        atr[t] = true_range[t - n + 1 : t + 1].mean()
    return atr


@pytest.mark.parametrize("atr_window", [14, 3])
def test_candle_geometry(candles: pd.DataFrame, atr_window: int) -> None:
    o, h, low, c = ohlc(candles)
    atr = mean_true_range(h, low, c, atr_window)
    values = run("candle", Bars.from_candles(candles), atr_window=atr_window)
    at = positions(len(c), atr_window)
    check_at(values["body"], lambda p: (c[p] - o[p]) / atr[p], at)
    check_at(values["upper_wick"], lambda p: (h[p] - max(o[p], c[p])) / atr[p], at)
    check_at(values["lower_wick"], lambda p: (min(o[p], c[p]) - low[p]) / atr[p], at)
    check_at(values["range"], lambda p: (h[p] - low[p]) / atr[p], at)
    assert (values["range"][atr_window:] >= 0).all()


@pytest.mark.parametrize("window", [1, 20])
def test_distances_to_the_window_extremes(candles: pd.DataFrame, window: int) -> None:
    _, h, low, c = ohlc(candles)
    bars = Bars.from_candles(candles)
    at = positions(len(c), window - 1)
    high_dist = run("dist_high", bars, window=window)[""]
    low_dist = run("dist_low", bars, window=window)[""]
    check_at(high_dist, lambda p: c[p] / h[p - window + 1 : p + 1].max() - 1, at)
    check_at(low_dist, lambda p: c[p] / low[p - window + 1 : p + 1].min() - 1, at)
    # The window includes bar t, so the close is never above its high nor below its low.
    assert np.nanmax(high_dist) <= 0 <= np.nanmin(low_dist)


def test_volume_zscore(candles: pd.DataFrame) -> None:
    v = candles["volume"].to_numpy()

    def relative(p: int) -> float:
        return float(np.log(1 + v[p] / v[p - 19 : p + 1].mean()))

    def expected(p: int) -> float:
        s = np.array([relative(q) for q in range(p - 19, p + 1)])
        return float((s[-1] - s.mean()) / s.std(ddof=0))

    values = run("volume_zscore", Bars.from_candles(candles))[""]
    check_at(values, expected, positions(len(v), 38))
    # The same in any volume unit.
    lots = candles.assign(volume=candles["volume"] * 1_000.0)
    np.testing.assert_allclose(
        run("volume_zscore", Bars.from_candles(lots))[""], values, rtol=1e-9, atol=1e-12
    )


@pytest.mark.parametrize("window", [1, 20])
def test_vwap_distance(candles: pd.DataFrame, window: int) -> None:
    _, h, low, c = ohlc(candles)
    v = candles["volume"].to_numpy()
    typical = (h + low + c) / 3

    def expected(p: int) -> float:
        s = slice(p - window + 1, p + 1)
        return float(c[p] / (np.sum(typical[s] * v[s]) / np.sum(v[s])) - 1)

    values = run("vwap_distance", Bars.from_candles(candles), window=window)[""]
    check_at(values, expected, positions(len(c), window - 1))


def synthetic_bars(
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    volume: np.ndarray | None = None,
) -> Bars:
    length = len(close)
    index = pd.date_range("2024-01-01", periods=length, freq="h", tz="UTC")
    volume = np.ones(length) if volume is None else volume
    arrays = [np.asarray(a, dtype=np.float64) for a in (open_, high, low, close, volume)]
    return Bars(*arrays, index=index)


def test_vwap_distance_is_nan_where_the_window_traded_nothing() -> None:
    price = np.full(12, 100.0)
    volume = np.array([5.0, 7.0, 1e6, 0, 0, 0, 0, 3.0, 0, 0, 0, 0])
    bars = synthetic_bars(price, price + 1, price - 1, price, volume)
    values = run("vwap_distance", bars, window=3)[""]
    assert np.isnan(values[:2]).all()  # warm-up
    assert np.isnan(values[[5, 6, 11]]).all()  # three bars without a trade
    assert np.isfinite(values[[2, 3, 4, 7, 8, 9]]).all()


def test_time_features_at_known_timestamps() -> None:
    index = pd.DatetimeIndex(
        ["2024-01-03 18:30", "2024-01-07 00:00", "2024-01-08 06:00"], tz="UTC"
    )  # a Wednesday, a Sunday, a Monday
    ones = np.ones(3)
    bars = Bars(ones, ones, ones, ones, ones, index=index)
    values = run("time_cyclical", bars)
    hours = np.array([18.5, 0.0, 6.0])
    days = np.array([2, 6, 0])
    np.testing.assert_allclose(values["hour_sin"], np.sin(2 * np.pi * hours / 24), atol=1e-15)
    np.testing.assert_allclose(values["hour_cos"], np.cos(2 * np.pi * hours / 24), atol=1e-15)
    np.testing.assert_allclose(values["dow_sin"], np.sin(2 * np.pi * days / 7), atol=1e-15)
    np.testing.assert_allclose(values["dow_cos"], np.cos(2 * np.pi * days / 7), atol=1e-15)
    # 06:00 is a quarter of the day: sin 1, cos 0; midnight Monday is angle 0.
    assert values["hour_sin"][2] == pytest.approx(1.0)
    assert values["dow_sin"][2] == 0.0 and values["dow_cos"][2] == 1.0


# -- names, warm-ups, parameters --------------------------------------------------------------


def test_default_columns() -> None:
    expected = {
        "log_return": ["log_return_1"],
        "zscore": ["zscore_20"],
        "rv_yang_zhang": ["rv_yang_zhang_20"],
        "candle": [
            "candle_14_body",
            "candle_14_upper_wick",
            "candle_14_lower_wick",
            "candle_14_range",
        ],
        "time_cyclical": [
            "time_cyclical_hour_sin",
            "time_cyclical_hour_cos",
            "time_cyclical_dow_sin",
            "time_cyclical_dow_cos",
        ],
        "amd_phase": [
            f"amd_phase_48_0p6_1p5_24_{o}"
            for o in ("compression", "false_breakout", "expansion", "phase", "bars_since_sweep")
        ],
    }
    for name, columns in expected.items():
        indicator = get_indicator(name)
        assert indicator.columns(indicator.resolve()) == columns
    log_return = get_indicator("log_return")
    assert log_return.columns(log_return.resolve({"price": "high", "n": 3})) == [
        "high_log_return_3"
    ]


@pytest.mark.parametrize(("name", "given"), SETTINGS, ids=[f"{n}{g}" for n, g in SETTINGS])
def test_warmup_is_exact(candles: pd.DataFrame, name: str, given: dict[str, Any]) -> None:
    indicator = get_indicator(name)
    params = indicator.resolve(given)
    warmup = indicator.warmup(params)
    bars = Bars.from_candles(candles)
    raw = indicator.compute(bars, params)
    ran = dict(zip(indicator.outputs, indicator.run(bars, params).values(), strict=True))
    for output in indicator.outputs:
        # What the user gets: NaN up to the warm-up, a value at it.
        assert np.flatnonzero(~np.isnan(ran[output]))[0] == warmup, f"{name} {output}"
        if name == "amd_phase":
            # Its warm-up is where every output stops depending on the start (the phase looks
            # back `memory` bars twice), after the compression ratio's first value: the raw
            # outputs start earlier; the masked ones are checked above.
            continue
        # The raw output, before Indicator.run masks the warm-up: not one bar shorter either.
        defined = np.flatnonzero(~np.isnan(np.asarray(raw[output], dtype=np.float64)))
        assert defined[0] == warmup, f"{name} {output}"


@pytest.mark.parametrize(
    ("name", "given", "match"),
    [
        ("log_return", {"n": 0}, "n=0 is below its minimum 1"),
        ("log_return", {"price": "vwap"}, "price='vwap' is not one of"),
        ("zscore", {"window": 1}, "window=1 is below its minimum 2"),
        ("rv_close", {"window": 2.5}, "must be an integer"),
        ("rv_yang_zhang", {"window": 1}, "below its minimum 2"),
        ("candle", {"atr_window": 0}, "atr_window=0 is below its minimum 1"),
        ("dist_high", {"window": 0}, "below its minimum 1"),
        ("vwap_distance", {"window": -3}, "below its minimum 1"),
        ("volume_zscore", {"window": 10**6}, "above its maximum"),
        ("time_cyclical", {"window": 5}, "unknown parameter"),
        ("amd_phase", {"window": 4}, "window=4 is below its minimum 5"),
        ("amd_phase", {"compression": 0.0}, "compression=0.0 must be above 0"),
        ("amd_phase", {"compression": 1.2}, "compression=1.2 is above its maximum 1"),
        ("amd_phase", {"expansion": 0.9}, "expansion=0.9 is below its minimum 1"),
        ("amd_phase", {"memory": 0}, "memory=0 is below its minimum 1"),
    ],
)
def test_bad_parameters_are_refused(name: str, given: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        get_indicator(name).resolve(given)


# -- AMD phases -------------------------------------------------------------------------------


def test_amd_phase_on_a_constructed_sequence() -> None:
    # 60 wide bars, 15 flat ones (the accumulation), a sweep of the lows that closes back
    # inside (manipulation), then a large bar closing above the range (distribution).
    wide, flat = 60, 15
    open_ = np.r_[np.full(wide + flat, 100.0), 100.0, 100.0, 110.0]
    close = np.r_[100 + 2 * (-1.0) ** np.arange(wide), np.full(flat, 100.0), 100.0, 110.0, 110.0]
    high = np.r_[np.full(wide, 105.0), np.full(flat, 100.1), 100.05, 110.5, 110.2]
    low = np.r_[np.full(wide, 95.0), np.full(flat, 99.9), 99.5, 99.95, 109.8]
    bars = synthetic_bars(open_, high, low, close)
    values = run("amd_phase", bars, window=10, compression=0.6, expansion=1.5, memory=5)
    sweep, burst = wide + flat, wide + flat + 1

    # Warm-up max(5w - 1 + 2 * memory, 5w) = 59: the phase looks back at compressions and
    # manipulations `memory` bars each, past the first compression ratio at 5w - 1.
    assert np.isnan(values["phase"][:59]).all() and not np.isnan(values["phase"][59])
    assert (values["compression"][sweep - 5 : sweep + 1] < 0.6).all()
    assert (values["phase"][sweep - 5 : sweep] == 1).all()  # accumulation
    assert values["false_breakout"][sweep] == 1
    assert values["phase"][sweep] == 2  # manipulation
    assert values["bars_since_sweep"][sweep] == 0
    assert values["expansion"][burst] == 1
    assert values["false_breakout"][burst] == 0
    assert values["phase"][burst] == 3  # distribution
    assert values["bars_since_sweep"][burst] == 1

    # Without the accumulation (threshold too low) the same sweep is no manipulation, and
    # the burst that follows is no distribution.
    loose = run("amd_phase", bars, window=10, compression=0.001, expansion=1.5, memory=5)
    assert loose["false_breakout"][sweep] == 1 and loose["phase"][sweep] == 0
    assert loose["expansion"][burst] == 1 and loose["phase"][burst] == 0


def test_amd_phase_mirror_sweep_of_the_highs() -> None:
    wide, flat = 60, 15
    open_ = np.r_[np.full(wide + flat, 100.0), 100.0, 100.0]
    close = np.r_[100 + 2 * (-1.0) ** np.arange(wide), np.full(flat, 100.0), 100.0, 90.0]
    high = np.r_[np.full(wide, 105.0), np.full(flat, 100.1), 100.5, 100.05]
    low = np.r_[np.full(wide, 95.0), np.full(flat, 99.9), 99.95, 89.5]
    values = run("amd_phase", synthetic_bars(open_, high, low, close), window=10, memory=5)
    assert values["false_breakout"][wide + flat] == -1 and values["phase"][wide + flat] == 2
    assert values["expansion"][wide + flat + 1] == -1 and values["phase"][wide + flat + 1] == 3


def test_amd_phase_on_real_data(candles: pd.DataFrame) -> None:
    indicator = get_indicator("amd_phase")
    params = indicator.resolve()
    values = run("amd_phase", Bars.from_candles(candles))
    warmup = indicator.warmup(params)
    phase = values["phase"]
    assert np.isnan(phase[:warmup]).all()
    assert set(np.unique(phase[warmup:])) <= {0.0, 1.0, 2.0, 3.0}
    assert {0.0, 1.0, 2.0} <= set(np.unique(phase[warmup:]))
    assert set(np.unique(values["false_breakout"][warmup:])) <= {-1.0, 0.0, 1.0}
    assert set(np.unique(values["expansion"][warmup:])) <= {-1.0, 0.0, 1.0}
    since = values["bars_since_sweep"][warmup:]
    assert np.nanmax(since) <= 10 * params["window"]
    # On a sweep bar the count restarts.
    assert (since[values["false_breakout"][warmup:] != 0] == 0).all()


# -- causality --------------------------------------------------------------------------------


def perturbed_after(bars: Bars, cut: int, rng: np.random.Generator) -> Bars:
    """``bars`` with every bar after ``cut`` rescaled at random, OHLC kept consistent."""
    after = slice(cut + 1, None)
    factors = np.exp(rng.normal(0.0, 0.05, size=(5, len(bars) - cut - 1)))
    open_, high, low, close, volume = (
        a.copy() for a in (bars.open, bars.high, bars.low, bars.close, bars.volume)
    )
    open_[after] *= factors[0]
    close[after] *= factors[1]
    high[after] = np.maximum(high[after] * factors[2], np.maximum(open_[after], close[after]))
    low[after] = np.minimum(low[after] / factors[3], np.minimum(open_[after], close[after]))
    volume[after] *= factors[4]
    return dataclasses.replace(bars, open=open_, high=high, low=low, close=close, volume=volume)


@pytest.mark.parametrize(("name", "given"), SETTINGS, ids=[f"{n}{g}" for n, g in SETTINGS])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_later_bars_do_not_change_earlier_values(
    btc: pd.DataFrame, name: str, given: dict[str, Any], seed: int
) -> None:
    bars = Bars.from_candles(btc.iloc[-1_200:])
    rng = np.random.default_rng(seed)
    # After every warm-up here, with room for later bars to move every output.
    cut = int(rng.integers(300, len(bars) - 50))
    reference = run(name, bars, **given)
    changed = run(name, perturbed_after(bars, cut, rng), **given)
    for output, values in reference.items():
        np.testing.assert_array_equal(changed[output][: cut + 1], values[: cut + 1], err_msg=output)
        # The probe has teeth: values after the cut do move (time features excepted).
        if name != "time_cyclical" and output in ("", "body", "compression"):
            assert not np.array_equal(changed[output], values, equal_nan=True), output
