"""Alpha158 indicators against slow, direct computations from the raw windows of real bars."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from trademl.data.sources.files import read_candle_file
from trademl.errors import ConfigError
from trademl.features import alpha158
from trademl.features.indicators import Bars, get_indicator

PRESET = Path(alpha158.__file__).parent / "presets" / "alpha158.yaml"
EPS = 1e-12
# How many bars of the hourly file the tests use: enough for every window, quick to scan.
BARS = 4000


@pytest.fixture(scope="module")
def bars(data_dir: Path) -> Bars:
    candles = read_candle_file(data_dir / "crypto" / "BTCUSDT_1h.csv")
    return Bars.from_candles(candles.iloc[-BARS:])


def _sample_positions(rng: np.random.Generator, low: int, high: int, count: int = 12) -> list[int]:
    return sorted({int(t) for t in rng.integers(low, high, size=count)} | {low, high - 1})


# -- slow references: one bar t, one window, plain numpy on the raw values ---------------------


def _first_index(window: np.ndarray, largest: bool) -> int:
    target = window.max() if largest else window.min()
    for i, value in enumerate(window):
        if value == target:
            return i + 1
    raise AssertionError("no extreme found")


def _sum_ratio(changes: np.ndarray) -> tuple[float, float, float]:
    gains = sum(x for x in changes if x > 0)
    losses = sum(-x for x in changes if x < 0)
    moves = sum(abs(x) for x in changes) + EPS
    return gains / moves, losses / moves, (gains - losses) / moves


def reference_rolling(b: Bars, t: int, d: int) -> dict[str, float]:
    """Every rolling output at bar ``t`` from the raw windows ending at ``t``."""
    c, h, low, v = b.close, b.high, b.low, b.volume
    w = c[t - d + 1 : t + 1]
    wh, wl, wv = h[t - d + 1 : t + 1], low[t - d + 1 : t + 1], v[t - d + 1 : t + 1]
    prev_c, prev_v = c[t - d : t], v[t - d : t]
    times = np.arange(1, d + 1, dtype=float)
    slope, intercept = np.polyfit(times, w, 1)
    rsquare = np.corrcoef(times, w)[0, 1] ** 2
    resi = w[-1] - (slope * d + intercept)
    rank = (np.sum(w < w[-1]) + (np.sum(w == w[-1]) + 1) / 2) / d
    i_max, i_min = _first_index(wh, True), _first_index(wl, False)
    changes = w - prev_c
    v_changes = wv - prev_v
    sump, sumn, sumd = _sum_ratio(changes)
    vsump, vsumn, vsumd = _sum_ratio(v_changes)
    up = float(np.mean(changes > 0))
    down = float(np.mean(changes < 0))
    weighted = np.abs(w / prev_c - 1) * wv
    return {
        "roc": c[t - d] / c[t],
        "ma": np.mean(w) / c[t],
        "std": np.std(w, ddof=1) / c[t],
        "beta": slope / c[t],
        "rsqr": rsquare,
        "resi": resi / c[t],
        "max": wh.max() / c[t],
        "min": wl.min() / c[t],
        "qtlu": np.quantile(w, 0.8) / c[t],
        "qtld": np.quantile(w, 0.2) / c[t],
        "rank": rank,
        "rsv": (c[t] - wl.min()) / (wh.max() - wl.min() + EPS),
        "imax": i_max / d,
        "imin": i_min / d,
        "imxd": (i_max - i_min) / d,
        "corr": np.corrcoef(w, np.log(wv + 1))[0, 1],
        "cord": np.corrcoef(w / prev_c, np.log(wv / prev_v + 1))[0, 1],
        "cntp": up,
        "cntn": down,
        "cntd": up - down,
        "sump": sump,
        "sumn": sumn,
        "sumd": sumd,
        "vma": np.mean(wv) / (v[t] + EPS),
        "vstd": np.std(wv, ddof=1) / (v[t] + EPS),
        "wvma": np.std(weighted, ddof=1) / (np.mean(weighted) + EPS),
        "vsump": vsump,
        "vsumn": vsumn,
        "vsumd": vsumd,
    }


def reference_bar(b: Bars, t: int) -> dict[str, float]:
    """The k-bar and price outputs at bar ``t``."""
    o, h, low, c = b.open[t], b.high[t], b.low[t], b.close[t]
    span = h - low + EPS
    return {
        "kmid": (c - o) / o,
        "klen": (h - low) / o,
        "kmid2": (c - o) / span,
        "kup": (h - max(o, c)) / o,
        "kup2": (h - max(o, c)) / span,
        "klow": (min(o, c) - low) / o,
        "klow2": (min(o, c) - low) / span,
        "ksft": (2 * c - h - low) / o,
        "ksft2": (2 * c - h - low) / span,
        "open0": o / c,
        "high0": h / c,
        "low0": low / c,
        "vwap0": (h + low + c) / 3 / c,
    }


# -- tests -------------------------------------------------------------------------------------


@pytest.mark.parametrize("window", alpha158.ROLLING_WINDOWS)
def test_rolling_matches_direct_computation(bars: Bars, window: int) -> None:
    indicator = get_indicator("alpha158_rolling")
    params = indicator.resolve({"window": window})
    columns = indicator.run(bars, params)
    rng = np.random.default_rng(window)
    for t in _sample_positions(rng, window, len(bars)):
        expected = reference_rolling(bars, t, window)
        for output in alpha158.ROLLING_OUTPUTS:
            got = columns[f"alpha158_rolling_{window}_{output}"][t]
            np.testing.assert_allclose(
                got, expected[output], rtol=1e-8, atol=1e-10, err_msg=f"{output} at bar {t}"
            )


def test_kbar_and_price_match_direct_computation(bars: Bars) -> None:
    columns = {
        **get_indicator("alpha158_kbar").run(bars, {}),
        **get_indicator("alpha158_price").run(bars, {}),
    }
    rng = np.random.default_rng(7)
    for t in _sample_positions(rng, 0, len(bars)):
        for output, value in reference_bar(bars, t).items():
            family = "kbar" if output in alpha158.KBAR_OUTPUTS else "price"
            got = columns[f"alpha158_{family}_{output}"][t]
            np.testing.assert_allclose(got, value, rtol=1e-12, err_msg=f"{output} at bar {t}")


@pytest.mark.parametrize("window", [2, 5, 60])
def test_each_output_starts_at_its_warmup(bars: Bars, window: int) -> None:
    produced = alpha158.rolling(bars, {"window": window})
    indicator = get_indicator("alpha158_rolling")
    assert indicator.warmup({"window": window}) == window
    for output in alpha158.ROLLING_OUTPUTS:
        values = produced[output]
        warmup = alpha158.rolling_output_warmup(output, window)
        assert np.isnan(values[:warmup]).all(), output
        assert not np.isnan(values[warmup : warmup + 200]).any(), output
    assert get_indicator("alpha158_kbar").warmup({}) == 0


def test_preset_has_158_columns() -> None:
    preset = yaml.safe_load(PRESET.read_text())
    assert preset["name"] == "alpha158"
    entries = preset["features"]
    assert len(entries) == 7
    columns: list[str] = []
    for entry in entries:
        indicator = get_indicator(entry["indicator"])
        assert indicator.family == "alpha158"
        columns += indicator.columns(indicator.resolve(entry.get("params")))
    assert len(columns) == 158
    assert len(set(columns)) == 158
    assert "alpha158_rolling_20_roc" in columns
    assert "alpha158_kbar_kmid" in columns
    assert "alpha158_price_vwap0" in columns


def test_window_bounds() -> None:
    indicator = get_indicator("alpha158_rolling")
    assert indicator.resolve({})["window"] == 5
    assert indicator.resolve({"window": 7})["window"] == 7
    with pytest.raises(ConfigError, match="below its minimum"):
        indicator.resolve({"window": 1})


def _perturbed(b: Bars, t: int, rng: np.random.Generator) -> Bars:
    """``b`` with every bar after ``t`` changed (prices scaled, volume redrawn)."""
    arrays = {}
    for name in ("open", "high", "low", "close", "volume"):
        values = getattr(b, name).copy()
        values[t + 1 :] *= rng.uniform(0.5, 1.5, size=len(values) - t - 1)
        arrays[name] = values
    return Bars(index=b.index, **arrays)


@pytest.mark.parametrize("name", ["alpha158_kbar", "alpha158_price", "alpha158_rolling"])
def test_causal(bars: Bars, name: str) -> None:
    head = Bars(
        open=bars.open[:1500],
        high=bars.high[:1500],
        low=bars.low[:1500],
        close=bars.close[:1500],
        volume=bars.volume[:1500],
        index=bars.index[:1500],
    )
    indicator = get_indicator(name)
    windows = alpha158.ROLLING_WINDOWS if name == "alpha158_rolling" else (None,)
    rng = np.random.default_rng(11)
    for window in windows:
        params = indicator.resolve({} if window is None else {"window": window})
        original = indicator.run(head, params)
        for t in rng.integers(0, len(head) - 1, size=4):
            changed = indicator.run(_perturbed(head, int(t), rng), params)
            for column, values in original.items():
                np.testing.assert_array_equal(
                    changed[column][: t + 1], values[: t + 1], err_msg=f"{column} t={t}"
                )


def test_constant_windows_give_nan_correlations_and_zero_spreads() -> None:
    n, window = 50, 5
    close = np.full(n, 100.0)
    bars = Bars(
        open=close.copy(),
        high=close + 1,
        low=close - 1,
        close=close,
        volume=np.full(n, 3.0),
        index=pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC"),
    )
    out = alpha158.rolling(bars, {"window": window})
    tail = slice(window, None)
    for output in ("rsqr", "corr", "cord"):
        assert np.isnan(out[output][tail]).all(), output
    for output in ("std", "beta", "resi", "vstd", "wvma", "sump", "sumn", "cntp", "vsumd"):
        assert (out[output][tail] == 0).all(), output
    assert (out["rank"][tail] == 0.6).all()  # five ties: average rank 3 of 5


@pytest.mark.slow
def test_time_one_window_on_a_million_bars(data_dir: Path) -> None:
    candles = read_candle_file(data_dir / "crypto" / "BTCUSDT_5m.csv.gz")
    size = 1_000_000
    reps = -(-size // len(candles))
    arrays = {
        name: np.tile(candles[name].to_numpy(dtype=np.float64), reps)[:size]
        for name in ("open", "high", "low", "close", "volume")
    }
    index = pd.date_range("2000-01-01", periods=size, freq="5min", tz="UTC")
    bars = Bars(index=index, **arrays)
    indicator = get_indicator("alpha158_rolling")
    for window in (5, 60):
        params = indicator.resolve({"window": window})
        start = time.perf_counter()
        columns = indicator.run(bars, params)
        elapsed = time.perf_counter() - start
        print(f"alpha158_rolling window={window}: {elapsed:.2f}s on {size:,} bars")
        assert len(columns) == len(alpha158.ROLLING_OUTPUTS)
