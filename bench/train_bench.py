"""Training benchmark: an 8-fold expanding walk-forward of ``lgbm`` (regression on a 60-bar
forward return) through ``trademl.validation.evaluate``, beside plain LightGBM doing the same
work on the same fold indices.

The input is the real BTCUSDT 5-minute bars of ../shared/data, relabelled as consecutive
minutes and tiled (every bar a real bar; only the clock is new). The ``standard`` features are
built once on N + warm-up + horizon bars (warm-up dropped, incomplete labels dropped: N rows
left) and cached, with the label, in a temporary parquet file that both measurements read.

ours   ``evaluate({"lgbm": factory}, {"lgbm": X}, y, WalkForward(...).split(X, y))``, no intervals.
plain  ``frame.to_numpy()`` once, then per fold (indices taken from the same splitter
       beforehand, not timed): the model's head/tail early-stopping split (last
       ``validation_fraction`` rows, ``validation_gap`` = horizon rows dropped between),
       ``lightgbm.train`` with the same parameters, ``predict`` on the test rows at the best
       iteration. No trademl object in its timed part.

Every run is a fresh process (this script with a hidden flag), ours and plain alternating:
wall seconds and peak MB are the best of ``--repeats`` runs; peak MB is ``ru_maxrss`` after
the work minus the RSS just before it (the matrix already loaded). The predictions of both
are compared (max abs diff).

    .venv/bin/python bench/train_bench.py                    # 500,000 rows, 8 folds
    .venv/bin/python bench/train_bench.py --rows 5e4 --folds 2
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
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
OHLCV = ("open", "high", "low", "close", "volume")
PRESET = "standard"
HORIZON = 60
TARGET = f"forward_return_{HORIZON}"
THREADS = len(os.sched_getaffinity(0))
# the model's hyperparameters (the rest are LGBMModel's defaults, spelled out for plain below)
MODEL: dict[str, Any] = {
    "task": "regression",
    "n_estimators": 200,
    "learning_rate": 0.05,
    "num_leaves": 31,
    "early_stopping_rounds": 50,
    "validation_fraction": 0.15,
    "validation_gap": HORIZON,
    "n_jobs": THREADS,
}
PLAIN_PARAMS = plain_params(THREADS)


# -- input ---------------------------------------------------------------------------------------


def splitter(rows: int, folds: int) -> Any:
    from trademl.validation.splitters import WalkForward

    test_size = rows // (folds + 2)
    return WalkForward(
        test_size=test_size, horizon_bars=HORIZON, n_splits=folds, min_train_size=test_size
    )


def write_input(rows: int, folds: int, folder: Path) -> tuple[int, int]:
    """Features + label of ``rows`` rows to matrix.parquet, fold indices to folds.npz."""
    from trademl.data.candles import make_candles
    from trademl.features import build_features, build_labels
    from trademl.features.engine import warmup_bars

    bars = rows + warmup_bars(PRESET, "1m") + HORIZON
    real = pd.read_csv(DATA / "crypto" / "BTCUSDT_5m.csv.gz")
    reps = -(-bars // len(real))
    values = [np.tile(real[c].to_numpy(np.float64), reps)[:bars] for c in OHLCV]
    index = pd.date_range("2000-01-01", periods=bars, freq="1min")
    candles = make_candles(index, *values, symbol="BENCH", timeframe="1m")
    X = build_features(candles, PRESET, warmup="drop")
    labels = build_labels(candles, [{"kind": "forward_return", "horizon": HORIZON}])
    y = labels[TARGET].reindex(X.index)
    frame = X.loc[y.notna().to_numpy()].iloc[-rows:].copy()
    frame[TARGET] = y.loc[frame.index]
    frame.to_parquet(folder / "matrix.parquet")
    split = list(splitter(len(frame), folds).split(frame))
    np.savez(
        folder / "folds.npz",
        **{f"train{i}": tr for i, (tr, _) in enumerate(split)},
        **{f"test{i}": te for i, (_, te) in enumerate(split)},
    )
    return frame.shape[1] - 1, len(frame)


# -- the two measured paths ----------------------------------------------------------------------


def ours(frame: pd.DataFrame, folds: int) -> np.ndarray:
    from trademl.models.gbm import LGBMModel
    from trademl.validation.runner import evaluate

    X, y = frame.drop(columns=TARGET), frame[TARGET]
    split = splitter(len(frame), folds).split(X, y)
    result = evaluate(
        {"lgbm": lambda: LGBMModel(**MODEL)}, {"lgbm": X}, y, split, task="regression"
    )
    return result.predictions["lgbm"].to_numpy()


def plain(frame: pd.DataFrame, split: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    import lightgbm as lgb

    X = frame.drop(columns=TARGET).to_numpy(np.float64)
    y = frame[TARGET].to_numpy(np.float64)
    out = []
    for train, test in split:
        X_train, y_train = X[train], y[train]
        n_tail = round(len(train) * MODEL["validation_fraction"])
        head_stop, tail_start = len(train) - n_tail - HORIZON, len(train) - n_tail
        train_set = lgb.Dataset(X_train[:head_stop], label=y_train[:head_stop])
        valid_set = lgb.Dataset(
            X_train[tail_start:], label=y_train[tail_start:], reference=train_set
        )
        booster = lgb.train(
            PLAIN_PARAMS,
            train_set,
            num_boost_round=MODEL["n_estimators"],
            valid_sets=[valid_set],
            callbacks=[lgb.early_stopping(MODEL["early_stopping_rounds"], verbose=False)],
        )
        out.append(booster.predict(X[test], num_iteration=booster.best_iteration))
    return np.concatenate(out)


# -- one measurement, in a fresh process ---------------------------------------------------------


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def child(mode: str, folder: Path, folds: int) -> dict[str, Any]:
    import lightgbm  # noqa: F401 - imported before the baseline, for both

    frame = pd.read_parquet(folder / "matrix.parquet")
    if mode == "ours":
        import trademl.models.gbm
        import trademl.validation.runner  # noqa: F401
    else:
        with np.load(folder / "folds.npz") as saved:
            split = [(saved[f"train{i}"], saved[f"test{i}"]) for i in range(len(saved.files) // 2)]
    gc.collect()
    baseline = rss_mb()
    started = time.perf_counter()
    predictions = ours(frame, folds) if mode == "ours" else plain(frame, split)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    np.save(folder / f"{mode}.npy", predictions)
    return {"seconds": seconds, "peak_mb": peak - baseline, "predictions": len(predictions)}


def measure(mode: str, folder: Path, folds: int) -> dict[str, Any]:
    print(f"  {mode} ...", file=sys.stderr, flush=True)
    spec = json.dumps([mode, str(folder), folds])
    done = subprocess.run(
        [sys.executable, __file__, "--child", spec], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{done.stderr.strip()[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def best(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "seconds": min(r["seconds"] for r in runs),
        "runs_s": [r["seconds"] for r in runs],
        "peak_mb": min(r["peak_mb"] for r in runs),
        "runs_mb": [r["peak_mb"] for r in runs],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=float, default=5e5)
    parser.add_argument("--folds", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("bench/results/train.json"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, folder, folds = json.loads(args.child)
        print(json.dumps(child(mode, Path(folder), folds)))
        return
    rows, folds = int(args.rows), args.folds
    runs: dict[str, list[dict[str, Any]]] = {"ours": [], "plain": []}
    with tempfile.TemporaryDirectory(prefix="trademl-train-bench-") as tmp:
        folder = Path(tmp)
        print(f"building {PRESET} features on {rows:,} rows ...", file=sys.stderr)
        started = time.perf_counter()
        columns, rows = write_input(rows, folds, folder)
        build_s = time.perf_counter() - started
        with np.load(folder / "folds.npz") as saved:
            sizes = [(len(saved[f"train{i}"]), len(saved[f"test{i}"])) for i in range(folds)]
        for _ in range(args.repeats):
            for mode in runs:
                runs[mode].append(measure(mode, folder, folds))
        diff = float(np.max(np.abs(np.load(folder / "ours.npy") - np.load(folder / "plain.npy"))))
    o, p = best(runs["ours"]), best(runs["plain"])
    results: dict[str, Any] = {
        "rows": rows,
        "columns": columns,
        "folds": folds,
        "fold_sizes": sizes,
        "repeats": args.repeats,
        "threads": THREADS,
        "lightgbm": version("lightgbm"),
        "model": MODEL,
        "plain_params": PLAIN_PARAMS,
        "build_features_s": build_s,
        "ours": o,
        "plain": p,
        "ours_over_plain_time": o["seconds"] / p["seconds"],
        "ours_over_plain_memory": o["peak_mb"] / p["peak_mb"] if p["peak_mb"] > 0 else None,
        "max_abs_prediction_diff": diff,
        "same_predictions": diff <= 1e-9,
    }
    print(
        f"\nlgbm walk-forward: {rows:,} rows x {columns} {PRESET} features, {folds} expanding "
        f"folds (train {sizes[0][0]:,}..{sizes[-1][0]:,}, test {sizes[0][1]:,}), "
        f"{THREADS} threads, lightgbm {results['lightgbm']}, best of {args.repeats}"
    )
    print(f"{'':<8}{'wall s':>9}{'peak MB':>10}")
    for name, r in (("ours", o), ("plain", p)):
        print(f"{name:<8}{r['seconds']:>9.2f}{r['peak_mb']:>10.0f}")
    memory = results["ours_over_plain_memory"]
    print(
        f"ours/plain: time {results['ours_over_plain_time']:.3f}x (target <= 1.1x), "
        f"memory {'-' if memory is None else format(memory, '.2f')}x"
    )
    verdict = "same" if results["same_predictions"] else "DIFFERENT"
    print(
        f"predictions: {verdict} (max abs diff {diff:.3g} over {runs['ours'][0]['predictions']:,})"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
