"""Feature benchmark: ``build_features`` on N one-minute bars, beside the floor (the same
indicator functions called straight on numpy arrays, no framework) and beside
pandas-ta-classic on the indicators it shares with the ``standard`` preset.

The input is the real BTCUSDT 5-minute bars of ../shared/data, relabelled as consecutive
minutes and tiled up to N rows (every bar a real bar; only the clock is new).

Every measurement runs in a fresh process (this script with a hidden flag): wall seconds are
the best of ``--repeats`` runs; peak MB is ``ru_maxrss`` after the runs minus the RSS just
before them (the candles already loaded), i.e. what the work itself added at its peak.

Floor: the set is resolved beforehand, then for each planned feature ``indicator.compute`` on
the base arrays; higher-timeframe features on arrays resampled with plain numpy (reduceat) and
aligned on closed bars with ``searchsorted`` - that resampling and alignment IS in the floor's
time. The floor keeps the raw output arrays; it builds no frame and does no NaN/warm-up pass.

pandas-ta-classic runs its own implementations: ``talib=False`` is passed wherever a function
takes it and ``pandas_ta_classic.Imports["talib"]`` is switched off, so nothing reaches TA-Lib
(candle patterns use its native ones). Its outputs are kept as returned (no concatenation).

    .venv/bin/python bench/features_bench.py                  # 1 million bars
    .venv/bin/python bench/features_bench.py --rows 1e5 --presets minimal
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import inspect
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from importlib import resources
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from trademl.data.candles import COLUMNS, make_candles
from trademl.data.timeframes import Timeframe
from trademl.errors import ConfigError
from trademl.features.engine import PlannedFeature, build_features, plan
from trademl.features.indicators import Bars, get_indicator
from trademl.features.sets import FeatureSet, load_feature_set

DATA = Path(
    os.environ.get(
        "TRADEML_TEST_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
    )
)
SHARED_WITH = "standard"
SHARED = "shared"  # the set name children know: the shared subset of SHARED_WITH

_CDL = ("doji", "engulfing", "hammer", "shootingstar", "morningstar", "eveningstar")
CANDLE_PATTERNS = (*_CDL, "3whitesoldiers", "3blackcrows", "harami", "marubozu", "spinningtop")
MA_TYPES = ("sma", "ema", "wma", "dema", "tema", "trima", "kama", "mama", "t3")  # TA-Lib's order
# ours -> (pandas-ta function, its inputs in order, "its_kwarg=our_param ...", constant kwargs)
PTA: dict[str, tuple[str, str, str, dict[str, Any]]] = {
    **{n: (n, "c", "length=timeperiod", {}) for n in ("sma", "ema", "wma", "dema", "tema")},
    **{n: (n, "c", "length=timeperiod", {}) for n in ("trima", "kama", "rsi", "mom", "roc")},
    **{n: (n, "hlc", "length=timeperiod", {}) for n in ("adx", "cci", "willr", "atr", "natr")},
    "cmo": ("cmo", "c", "length=timeperiod", {}),
    "sar": ("psar", "hlc", "af0=acceleration af=acceleration max_af=maximum", {}),
    "aroon": ("aroon", "hl", "length=timeperiod", {}),
    "macd": ("macd", "c", "fast=fastperiod slow=slowperiod signal=signalperiod", {}),
    "bbands": ("bbands", "c", "length=timeperiod std=nbdevup mamode=matype", {}),
    "stoch": ("stoch", "hlc", "k=fastk_period smooth_k=slowk_period d=slowd_period", {}),
    "ppo": ("ppo", "c", "fast=fastperiod slow=slowperiod mamode=matype", {}),
    "apo": ("apo", "c", "fast=fastperiod slow=slowperiod mamode=matype", {}),
    "ultosc": ("uo", "hlc", "fast=timeperiod1 medium=timeperiod2 slow=timeperiod3", {}),
    "bop": ("bop", "ohlc", "", {}),
    "trange": ("true_range", "hlc", "", {}),
    "obv": ("obv", "cv", "", {}),
    "ad": ("ad", "hlcv", "", {}),
    "adosc": ("adosc", "hlcv", "fast=fastperiod slow=slowperiod", {}),
    "mfi": ("mfi", "hlcv", "length=timeperiod", {}),
    "linearreg": ("linreg", "c", "length=timeperiod", {}),
    "linearreg_slope": ("linreg", "c", "length=timeperiod", {"slope": True}),
    "stddev": ("stdev", "c", "length=timeperiod", {"ddof": 0}),
    "zscore": ("zscore", "c", "length=window", {}),
    "volume_zscore": ("zscore", "v", "length=window", {}),
    "log_return": ("log_return", "c", "length=n", {}),
    **{f"cdl{n}": ("cdl_pattern", "ohlc", "", {"name": n}) for n in CANDLE_PATTERNS},
}


def pta_kwargs(indicator: str, params: dict[str, Any]) -> dict[str, Any] | None:
    """pandas-ta keyword arguments for our resolved ``params`` (None: a parameter is missing)."""
    pairs = [pair.split("=") for pair in PTA[indicator][2].split()]
    if any(ours not in params for _, ours in pairs):
        return None
    kwargs = {theirs: params[ours] for theirs, ours in pairs} | PTA[indicator][3]
    if "mamode" in kwargs:
        kwargs["mamode"] = MA_TYPES[kwargs["mamode"]]
    return kwargs


# -- input ---------------------------------------------------------------------------------------


def write_input(rows: int, path: Path) -> None:
    """Real 5m bars relabelled as consecutive minutes from 2000-01-01, saved as .npz."""
    real = pd.read_csv(DATA / "crypto" / "BTCUSDT_5m.csv.gz")
    reps = -(-rows // len(real))
    values = np.stack([np.tile(real[c].to_numpy(np.float64), reps)[:rows] for c in COLUMNS])
    start = np.datetime64("2000-01-01T00:00", "ns").astype(np.int64)
    np.savez(path, start + np.arange(rows, dtype=np.int64) * 60 * 10**9, values)


def load_input(path: Path) -> pd.DataFrame:
    with np.load(path) as data:
        index = pd.DatetimeIndex(data["arr_0"].astype("datetime64[ns]"))
        return make_candles(index, *data["arr_1"], symbol="BENCH", timeframe="1m")


# -- the sets ------------------------------------------------------------------------------------


def shared_specs() -> tuple[list[dict[str, Any]], list[str]]:
    """Base-timeframe features of SHARED_WITH that pandas-ta has, and the ones not registered."""
    text = (resources.files("trademl.features") / "presets" / f"{SHARED_WITH}.yaml").read_text()
    specs, unregistered = [], []
    for spec in yaml.safe_load(text)["features"]:
        name = spec["indicator"]
        if spec.get("timeframe") or name not in PTA:
            continue
        try:
            params = get_indicator(name).resolve(spec.get("params"))
        except ConfigError:
            unregistered.append(name)
            continue
        if pta_kwargs(name, params) is not None:
            specs.append({"indicator": name, "params": params})
    return specs, unregistered


def feature_set(name: str) -> FeatureSet:
    if name == SHARED:
        specs, _ = shared_specs()
        name = f"{SHARED_WITH}-pandas-ta-shared"
        return FeatureSet.model_validate({"name": name, "version": 1, "features": specs})
    return load_feature_set(name)


# -- the floor: the same functions on plain arrays -----------------------------------------------


def resample_plain(
    ns: np.ndarray, arrays: dict[str, np.ndarray], base: Timeframe, tf: Timeframe
) -> tuple[Bars, np.ndarray]:
    """Higher-timeframe bars (unfinished last one dropped) and, per base bar, the position of
    the last higher bar closed by its close (-1: none yet)."""
    bins = tf.floor_ns(ns)
    starts = np.flatnonzero(np.r_[True, bins[1:] != bins[:-1]])
    ends = np.r_[starts[1:], len(ns)] - 1
    closes_at = bins[starts] + tf.nanoseconds
    keep = int(np.searchsorted(closes_at, ns[-1] + base.nanoseconds, side="right"))
    bars = Bars(
        open=arrays["open"][starts[:keep]],
        high=np.maximum.reduceat(arrays["high"], starts)[:keep],
        low=np.minimum.reduceat(arrays["low"], starts)[:keep],
        close=arrays["close"][ends[:keep]],
        volume=np.add.reduceat(arrays["volume"], starts)[:keep],
        index=pd.DatetimeIndex(bins[starts[:keep]].astype("datetime64[ns]")).tz_localize("UTC"),
    )
    positions = np.searchsorted(closes_at[:keep], ns + base.nanoseconds, side="right") - 1
    return bars, positions


def floor(candles: pd.DataFrame, planned: list[PlannedFeature], base: Timeframe) -> list[Any]:
    arrays = {c: candles[c].to_numpy() for c in COLUMNS}
    index = pd.DatetimeIndex(candles.index)
    ns = index.as_unit("ns").asi8
    by_timeframe: dict[Timeframe | None, list[PlannedFeature]] = {}
    for feature in planned:
        by_timeframe.setdefault(feature.timeframe, []).append(feature)
    out: list[Any] = []
    for tf, features in by_timeframe.items():
        if tf is None:
            bars = Bars(index=index, **arrays)
            out.extend(v for f in features for v in f.indicator.compute(bars, f.params).values())
            continue
        higher, positions = resample_plain(ns, arrays, base, tf)
        closed = positions >= 0
        for f in features:
            for values in f.indicator.compute(higher, f.params).values():
                out.append(np.where(closed, np.asarray(values)[positions], np.nan))
    return out


# -- pandas-ta-classic ---------------------------------------------------------------------------


def pandas_ta_calls(
    candles: pd.DataFrame, specs: list[dict[str, Any]]
) -> list[tuple[str, Callable[[], Any]]]:
    import pandas_ta_classic as ta

    ta.Imports["talib"] = False  # every talib branch checks this before its own flag
    series = {c[0]: candles[c] for c in COLUMNS}
    calls: list[tuple[str, Callable[[], Any]]] = []
    for spec in specs:
        function_name, inputs, _, _ = PTA[spec["indicator"]]
        function = getattr(ta, function_name)
        kwargs = pta_kwargs(spec["indicator"], spec["params"]) or {}
        if "talib" in inspect.signature(function).parameters:
            kwargs["talib"] = False
        label = get_indicator(spec["indicator"]).base_name(spec["params"])
        price = spec["params"].get("price", "close")[0]  # single-price functions read `price`
        args = (series[price if i == "c" and inputs == "c" else i] for i in inputs)
        calls.append((label, partial(function, *args, **kwargs)))
    return calls


# -- one measurement, in a fresh process ---------------------------------------------------------


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def child(mode: str, set_name: str, input_path: Path, repeats: int) -> dict[str, Any]:
    candles = load_input(input_path)
    fs = feature_set(set_name)
    base = Timeframe.parse("1m")
    per_call: dict[str, float] = {}
    work: Callable[[], Any]
    if mode == "ours":
        work = partial(build_features, candles, fs)
    elif mode == "floor":
        work = partial(floor, candles, plan(fs, base), base)
    else:
        calls = pandas_ta_calls(candles, [s.model_dump() for s in fs.features])

        def work() -> list[Any]:
            outs = []
            for label, call in calls:
                started = time.perf_counter()
                outs.append(call())
                spent = time.perf_counter() - started
                per_call[label] = min(per_call.get(label, spent), spent)
            return outs

    gc.collect()
    baseline = rss_mb()
    seconds, columns = [], 0
    for _ in range(repeats):
        started = time.perf_counter()
        result = work()
        seconds.append(time.perf_counter() - started)
        columns = count_columns(result)
        del result
        gc.collect()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {
        "seconds": min(seconds),
        "runs_s": seconds,
        "peak_mb": peak - baseline,
        "columns": columns,
        "per_call_s": dict(sorted(per_call.items(), key=lambda kv: -kv[1])),
    }


def count_columns(result: Any) -> int:
    if isinstance(result, pd.DataFrame):
        return result.shape[1]
    return sum(0 if r is None else r.shape[1] if r.ndim == 2 else 1 for r in result)


def measure(mode: str, set_name: str, input_path: Path, repeats: int) -> dict[str, Any]:
    print(f"  {set_name}: {mode} ...", file=sys.stderr, flush=True)
    spec = json.dumps([mode, set_name, str(input_path), repeats])
    done = subprocess.run(
        [sys.executable, __file__, "--child", spec], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["?"])[-1][:160]}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# -- report --------------------------------------------------------------------------------------


def ratio(a: dict[str, Any], b: dict[str, Any]) -> float | None:
    return a["seconds"] / b["seconds"] if "seconds" in a and "seconds" in b else None


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def report(results: dict[str, Any]) -> None:
    rows = results["rows"]
    print(f"\nfeatures on {rows:,} 1m bars, best of {results['repeats']} (peak: MB added)")
    head = f"{'set':<22}{'cols':>6}{'ours s':>9}{'floor s':>9}{'ours/floor':>12}"
    print(head + f"{'ours MB':>9}{'floor MB':>10}")
    for entry in results["presets"]:
        ours, fl = entry["ours"], entry["floor"]
        if "error" in ours:
            print(f"{entry['preset']:<22} not run: {ours['error']}")
            continue
        print(
            f"{entry['preset']:<22}{ours['columns']:>6}{ours['seconds']:>9.2f}"
            f"{fmt(fl.get('seconds'), '.2f'):>9}{fmt(entry['ours_over_floor'], '.2f'):>11}x"
            f"{ours['peak_mb']:>9.0f}{fmt(fl.get('peak_mb'), '.0f'):>10}"
        )
    shared = results["pandas_ta"]
    print(
        f"\nshared with pandas-ta-classic {shared['version']} ({shared['implementation']}): "
        f"{shared['indicators']} indicators, {shared['features']} features of {SHARED_WITH}"
    )
    for who in ("pandas_ta", "ours", "floor"):
        r = shared[who]
        figures = f"{r.get('columns', 0):>5} cols{r.get('seconds', 0):>9.2f} s{r.get('peak_mb', 0):>8.0f} MB"
        print(f"  {who:<10}" + (figures if "seconds" in r else f" not run: {r['error']}"))
    print(
        f"  pandas-ta/ours {fmt(shared['pandas_ta_over_ours'], '.1f')}x, "
        f"ours/floor {fmt(shared['ours_over_floor'], '.2f')}x"
    )
    slowest = list(shared["pandas_ta"].get("per_call_s", {}).items())[:5]
    if slowest:
        print("  slowest pandas-ta calls: " + ", ".join(f"{k} {v:.2f}s" for k, v in slowest))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=float, default=1e6)
    parser.add_argument("--presets", default="standard,alpha158")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench/results/features.json"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, set_name, input_path, repeats = json.loads(args.child)
        print(json.dumps(child(mode, set_name, Path(input_path), repeats)))
        return
    rows = int(args.rows)
    specs, unregistered = shared_specs()
    results: dict[str, Any] = {"rows": rows, "timeframe": "1m", "repeats": args.repeats}
    results["floor_includes"] = (
        "indicator.compute per planned feature; higher timeframes resampled with plain numpy "
        "reduceat and aligned on closed bars with searchsorted (included in the time); "
        "no frame, no warm-up/NaN pass"
    )
    results["presets"] = []
    with tempfile.TemporaryDirectory(prefix="trademl-features-bench-") as tmp:
        input_path = Path(tmp) / "bars.npz"
        print(f"building {rows:,} bars ...", file=sys.stderr)
        write_input(rows, input_path)
        for preset in args.presets.split(","):
            ours = measure("ours", preset, input_path, args.repeats)
            fl = measure("floor", preset, input_path, args.repeats) if "error" not in ours else {}
            results["presets"].append(
                {"preset": preset, "ours": ours, "floor": fl, "ours_over_floor": ratio(ours, fl)}
            )
        modes = ("pandas_ta", "ours", "floor")
        shared = {m: measure(m, SHARED, input_path, args.repeats) for m in modes}
    numba = importlib.util.find_spec("numba") is not None
    results["pandas_ta"] = {
        "version": version("pandas-ta-classic"),
        "implementation": "own code, TA-Lib off; numba "
        + ("installed" if numba else "absent: its @njit loops run as plain Python"),
        "shared_with": SHARED_WITH,
        "indicators": len({s["indicator"] for s in specs}),
        "features": len(specs),
        "shared_list": [get_indicator(s["indicator"]).base_name(s["params"]) for s in specs],
        "not_registered_yet": sorted(set(unregistered)),
        **shared,
        "pandas_ta_over_ours": ratio(shared["pandas_ta"], shared["ours"]),
        "ours_over_floor": ratio(shared["ours"], shared["floor"]),
    }
    report(results)
    if unregistered:
        print(f"  (not registered yet, left out: {', '.join(sorted(set(unregistered)))})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
