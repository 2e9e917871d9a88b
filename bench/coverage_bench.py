"""Out-of-sample coverage of 90 % max-high / min-low intervals on every shared series.

For each series of ../shared/data (the last ``--bars`` bars; 20,000 by default), at horizons
6 and 24 bars (5 and 20 for daily series), the HAR volatility baseline is validated
walk-forward (5 test blocks of an eighth of the rows each, purged, expanding training
window) with four kinds of interval, all calibrated on the last 20 % of each training fold:

``plain``        split conformal on absolute residuals (trademl's former default)
``plain+aci``    the same, its level moved by adaptive conformal inference
``normalized``   split conformal on residuals divided by trailing realised volatility
``norm+aci``     normalised, with adaptive conformal inference (trademl's default)

and it prints, per series, horizon and target, the pooled out-of-sample coverage of each, then
per method the worst ``|coverage - 0.90|``, the worst rolling window (500 rows) and the mean
interval width relative to ``plain``. Only labels that had matured feed the adaptive update.

    .venv/bin/python bench/coverage_bench.py                 # every series (~2 min on 2 cores)
    .venv/bin/python bench/coverage_bench.py --only BTCUSDT_1h --rate 0.01
"""

from __future__ import annotations

import argparse
import os
import time
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from trademl.features import build_labels, get_indicator
from trademl.features.indicators import Bars
from trademl.har import HAR_ESTIMATORS, har_columns, har_windows
from trademl.models.aci import AdaptiveConformal
from trademl.models.naive import NaiveModel
from trademl.models.uncertainty import SplitConformalRegressor
from trademl.validation.coverage import rolling_coverage
from trademl.validation.runner import evaluate
from trademl.validation.splitters import make_splitter

DATA = Path(
    os.environ.get(
        "TRADEML_TEST_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
    )
)
ALPHA = 0.1
WINDOW = 500
METHODS = ("plain", "plain+aci", "normalized", "norm+aci")
# The HAR columns whose mean scales normalised intervals, as trademl.workflow.interval_scale.
SCALE_PREFIXES = ("rv_close_", "rv_parkinson_")


def load(path: Path, bars: int) -> pd.DataFrame:
    frame = pd.read_csv(path, index_col="timestamp", parse_dates=["timestamp"])
    frame = frame.astype("float64").iloc[-bars:]
    frame.index = pd.DatetimeIndex(frame.index, tz="UTC") if frame.index.tz is None else frame.index
    return frame


def har_inputs(candles: pd.DataFrame, horizon: int) -> pd.DataFrame:
    bars = Bars.from_candles(candles)
    columns: dict[str, np.ndarray] = {}
    for name in HAR_ESTIMATORS:
        estimator = get_indicator(name)
        for window in har_windows(horizon):
            columns.update(estimator.run(bars, estimator.resolve({"window": window})))
    return pd.DataFrame(columns, index=candles.index)


def measure(candles: pd.DataFrame, horizon: int, rate: float) -> dict[str, dict[str, object]]:
    """Coverage, worst rolling window and width of each method, per target."""
    X = har_inputs(candles, horizon)
    labels = build_labels(
        candles, [{"kind": k, "horizon": horizon} for k in ("max_high", "min_low")]
    )
    first = max(har_windows(horizon))
    rows = slice(first, len(candles) - horizon)
    X, labels = X.iloc[rows], labels.iloc[rows]
    columns = har_columns(horizon)
    scale_columns = [c for c in columns if c.startswith(SCALE_PREFIXES)]
    n = len(X)
    splitter = make_splitter(
        "walk_forward",
        {"test_size": n // 8, "n_splits": 5, "min_train_size": n // 4},
        horizon,
    )

    def conformal(scale: bool) -> SplitConformalRegressor:
        baseline = NaiveModel(strategy="volatility", volatility_features=columns)
        return SplitConformalRegressor(
            baseline,
            calibration_fraction=0.2,
            gap=horizon,
            scale_features=scale_columns if scale else None,
        )

    adaptive = partial(AdaptiveConformal, ALPHA, rate, horizon=horizon)
    out: dict[str, dict[str, object]] = {}
    for kind in ("max_high", "min_low"):
        y = labels[f"{kind}_{horizon}"]
        frames = []
        for aci in (False, True):
            factories = {
                ("plain+aci" if aci else "plain"): partial(conformal, False),
                ("norm+aci" if aci else "normalized"): partial(conformal, True),
            }
            evaluation = evaluate(
                factories,
                dict.fromkeys(factories, X),
                y,
                splitter.split(X, y),
                task="regression",
                alpha=ALPHA,
                adaptive=adaptive if aci else None,
                description=f"{kind}_{horizon}",
            )
            frames.append(evaluation.predictions)
        predictions = pd.concat([frames[0], frames[1].drop(columns=["fold", "target"])], axis=1)
        target = predictions["target"].to_numpy()
        result: dict[str, object] = {}
        for method in METHODS:
            lower = predictions[f"{method}__lo"].to_numpy()
            upper = predictions[f"{method}__hi"].to_numpy()
            covered = (lower <= target) & (target <= upper)
            rolling = rolling_coverage(target, lower, upper, WINDOW)
            result[method] = {
                "coverage": float(covered.mean()),
                "worst_window": float(rolling[np.argmax(np.abs(rolling - (1 - ALPHA)))]),
                "width": float(np.mean(upper - lower)),
            }
        out[kind] = result
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=20_000, help="last bars of each series")
    parser.add_argument("--rate", type=float, default=0.005, help="adaptive step gamma")
    parser.add_argument("--only", default=None, help="a file stem, e.g. BTCUSDT_1h")
    args = parser.parse_args()
    started = time.perf_counter()
    files = sorted(p for p in DATA.glob("*/*.csv*") if args.only in (None, p.name.split(".")[0]))
    rows = []
    for path in files:
        stem = path.name.split(".")[0]
        candles = load(path, args.bars)
        horizons = (5, 20) if stem.endswith("_1d") else (6, 24)
        for horizon in horizons:
            for kind, result in measure(candles, horizon, args.rate).items():
                for method, values in result.items():
                    rows.append(
                        {"series": stem, "h": horizon, "target": kind, "method": method, **values}
                    )
    table = pd.DataFrame(rows)
    wide = table.pivot_table(
        index=["series", "h", "target"], columns="method", values="coverage", sort=False
    )[list(METHODS)]
    pd.set_option("display.width", 160)
    pd.set_option("display.max_rows", 500)
    print(f"90 % interval coverage, out of sample ({len(files)} series, rate {args.rate}):")
    print(wide.round(3).to_string())
    print()
    plain_width = table[table["method"] == "plain"].set_index(["series", "h", "target"])["width"]
    summary = []
    for method in METHODS:
        part = table[table["method"] == method].set_index(["series", "h", "target"])
        gap = (part["coverage"] - (1 - ALPHA)).abs()
        summary.append(
            {
                "method": method,
                "worst |cov-0.90|": gap.max(),
                "worst at": " ".join(map(str, gap.idxmax())),
                "within 2 pts": f"{int((gap <= 0.02).sum())}/{len(gap)}",
                "mean |cov-0.90|": gap.mean(),
                f"worst {WINDOW}-row window": part["worst_window"].iloc[
                    int(np.argmax((part["worst_window"] - (1 - ALPHA)).abs().to_numpy()))
                ],
                "width / plain": float((part["width"] / plain_width).median()),
            }
        )
    print(pd.DataFrame(summary).round(4).to_string(index=False))
    print(f"\n{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
