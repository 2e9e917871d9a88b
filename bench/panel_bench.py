"""Panel benchmark: walk-forward over a panel of the shared series through trademl (the
:class:`~trademl.validation.panel.PanelSplitter` on the common timeline + ``evaluate`` with the
``lgbm`` kind) beside plain LightGBM fitted on exactly the same pooled fold indices.

The shared data's 20 files hold 15 distinct (symbol, timeframe) series: the BTCUSDT/ETHUSDT
1m, 5m and 15m files are the same markets as their 1h files (they add up to them exactly), and
daily bars are not resampled to hours. So two panels are timed:

1h  the 10 hourly series (AVAX, BNB, BTC, DOT, ETH, LINK, XRP, AAPL, SPY, EURUSD), the last
    ``--bars`` bars of each; their spans differ (EURUSD is 2017-18, the stocks end in 2021), so
    the common timeline is their union and the latest test blocks hold the crypto rows only.
1d  the 5 daily equity series (AAPL, GOOG, IBM, QQQ, SPY), every bar.

Each panel is prepared once (``standard`` features, max-high label at the horizon; not timed),
then, alternating, best of ``--repeats``:

ours   ``evaluate({"lgbm": factory}, {"lgbm": X}, y, PanelSplitter(...).split(X, y))``: the
       panel's fold mapping and purge, the pandas row selection, the model wrapper.
plain  ``X.to_numpy()`` once, fold indices from the same splitter beforehand (not timed),
       ``lightgbm.train`` with the same parameters per fold, ``predict`` on the test rows.

    .venv/bin/python bench/panel_bench.py                 # ~3-4 minutes, one thread
    .venv/bin/python bench/panel_bench.py --bars 2000 --repeats 1
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from plain_lightgbm import plain_params

DATA = Path(
    os.environ.get(
        "TRADEML_TEST_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
    )
)
HOURLY = [
    *(f"crypto/{s}USDT_1h.csv" for s in ("AVAX", "BNB", "BTC", "DOT", "ETH", "LINK", "XRP")),
    "equities/AAPL_1h.csv",
    "equities/SPY_1h.csv",
    "fx/EURUSD_1h.csv",
]
DAILY = [f"equities/{s}_1d.csv" for s in ("AAPL", "GOOG", "IBM", "QQQ", "SPY")]
# One thread each: on a shared machine, other work starves a multi-threaded fit unevenly.
THREADS = int(os.environ.get("PANEL_BENCH_THREADS", "1"))
MODEL: dict[str, Any] = {
    "task": "regression",
    "n_estimators": 100,
    "learning_rate": 0.05,
    "num_leaves": 31,
    "early_stopping_rounds": None,
    "n_jobs": THREADS,
}
# LGBMModel's defaults spelled out for lightgbm.train.
PLAIN_PARAMS = plain_params(THREADS)


def prepared_panel(files: list[str], timeframe: str, horizon: int, bars: int | None) -> Any:
    """Import the last ``bars`` bars of each file into a scratch store; prepare the panel."""
    from trademl.config import Settings, load_run_config
    from trademl.data.ingest import open_default_store
    from trademl.data.sources.files import read_candle_file
    from trademl.panel import prepare_panel

    home = Path(tempfile.mkdtemp(prefix="panel_bench_"))
    settings = Settings(home=home, tracking=False)
    symbols = []
    with open_default_store(settings) as store:
        for name in files:
            candles = read_candle_file(DATA / name)
            symbol = Path(name).name.split("_")[0]
            store.write(candles if bars is None else candles.iloc[-bars:], symbol, timeframe)
            symbols.append(symbol)
    cfg = load_run_config(
        {
            "data": {"symbols": symbols, "timeframe": timeframe},
            "features": "standard",
            "labels": {"kinds": ["max_high"], "horizons": [horizon]},
            "models": [{"kind": "lgbm", "residual": False}],
            "validation": {"kind": "walk_forward", "params": {"test_size": 1, "n_splits": 5}},
            "output": str(home / "runs" / "bench"),
        }
    )
    return cfg, prepare_panel(cfg, settings=settings)


def splitter(panel: Any, horizon: int, folds: int) -> Any:
    from trademl.validation.panel import PanelSplitter
    from trademl.validation.splitters import WalkForward

    index = panel.pooled.X.index
    times = pd.DatetimeIndex(index.get_level_values("timestamp"))
    timeline = len(times.unique())
    test_size = timeline // (folds + 2)
    base = WalkForward(
        test_size=test_size, horizon_bars=horizon, n_splits=folds, min_train_size=test_size
    )
    return PanelSplitter(
        base, times, panel.label_ends[horizon], pd.Index(index.get_level_values("symbol"))
    )


def ours(panel: Any, y: pd.Series, split: Any) -> np.ndarray:
    from trademl.models.gbm import LGBMModel
    from trademl.validation.runner import evaluate

    X = panel.pooled.X
    result = evaluate(
        {"lgbm": lambda: LGBMModel(**MODEL)},
        {"lgbm": X},
        y,
        split.split(X, y),
        task="regression",
    )
    return result.predictions["lgbm"].to_numpy()


def plain(X: pd.DataFrame, y: pd.Series, folds: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    import lightgbm as lgb

    matrix, target = X.to_numpy(np.float64), y.to_numpy(np.float64)
    out = []
    for train, test in folds:
        booster = lgb.train(
            PLAIN_PARAMS,
            lgb.Dataset(matrix[train], label=target[train]),
            num_boost_round=MODEL["n_estimators"],
        )
        out.append(booster.predict(matrix[test]))
    return np.concatenate(out)


def measure(name: str, files: list[str], timeframe: str, horizon: int, args: Any) -> None:
    started = time.perf_counter()
    _, panel = prepared_panel(files, timeframe, horizon, args.bars if timeframe == "1h" else None)
    y = panel.pooled.labels[f"max_high_{horizon}"]
    split = splitter(panel, horizon, args.folds)
    folds = list(split.split(y))
    rows = len(y)
    print(
        f"{name}: {len(panel.members)} symbols, {rows:,} pooled rows, "
        f"{panel.pooled.X.shape[1]} features, timeline {split.timeline_bars:,} bars, "
        f"{len(folds)} folds, {sum(len(t) for _, t in folds):,} test rows "
        f"(prepared in {time.perf_counter() - started:.1f}s)"
    )
    best = {"ours": np.inf, "plain": np.inf}
    predictions: dict[str, np.ndarray] = {}
    for _ in range(args.repeats):
        for side in ("ours", "plain"):
            start = time.perf_counter()
            if side == "ours":
                predictions[side] = ours(panel, y, split)
            else:
                predictions[side] = plain(panel.pooled.X, y, folds)
            best[side] = min(best[side], time.perf_counter() - start)
    diff = float(np.max(np.abs(predictions["ours"] - predictions["plain"])))
    print(
        f"{name}: ours {best['ours']:.2f}s, plain LightGBM {best['plain']:.2f}s, "
        f"ratio {best['ours'] / best['plain']:.3f}x (target <= 1.1x); "
        f"max abs prediction diff {diff:.2e}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bars", type=int, default=6000, help="last bars per hourly series")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    print(f"lightgbm threads: {THREADS}")
    measure("1h panel", HOURLY, "1h", 6, args)
    measure("1d panel", DAILY, "1d", 5, args)


if __name__ == "__main__":
    main()
