"""Deep-kind benchmark: training throughput and single-window inference latency of ``gru``,
``lstm``, ``transformer`` and ``cnn_lstm``, PyTorch beside ONNX Runtime.

The input is the real BTCUSDT 1-hour bars of ../shared/data with the ``standard`` features
(warm-up dropped) and a 6-bar forward return as the label (rows without one dropped); the last
N rows are used. Every kind runs at its default hyperparameters except ``epochs=1``,
``patience=None`` (no validation tail: every window is trained on) and ``n_threads=2``.

training   windows/s of the one epoch: windows = rows - seq_len + 1. The epoch alone is
           timed, through the trainer's progress-bar hook (from the bar's opening to its one
           ``advance``: every batch's gather, forward, backward, clipping and step, and the LR
           schedule). Feature/target scaling, tensor set-up, network construction and the
           initial weight copy are outside it; the whole ``fit`` is reported beside it (fit_s).
           Each kind is first fitted once, untimed, on 600 rows (one-time set-up kept out).
latency    one window (1, seq_len, n_features) per call, ``--calls`` calls cycling through the
           last distinct windows of the data, after ``--warmup`` calls of each, the two
           alternating call by call. torch: ``network_`` in eval mode under ``torch.no_grad``
           on the window already scaled (scaling not timed), ``torch.set_num_threads(1)``.
           onnxruntime: ``OnnxPredictor(path).predict`` on the raw window (its graph scales
           and maps the output back), 1 intra-op thread. Both must agree within 1e-4 in target
           units (torch output mapped back with ``y_scaler_``).

    .venv/bin/python bench/deep_bench.py                          # 20,000 rows, 4 kinds
    .venv/bin/python bench/deep_bench.py --rows 2000 --calls 50 --kinds gru
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path
from typing import Any
from unittest.mock import patch

import numpy as np
import pandas as pd
import torch

from trademl.data.candles import make_candles
from trademl.features import build_features, build_labels
from trademl.models.base import make_model
from trademl.models.deep import trainer
from trademl.models.onnx_export import (
    OnnxPredictor,
    export_onnx,
    exportable_kinds,
    sliding_windows,
)

DATA = Path(
    os.environ.get(
        "TRADEML_TEST_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
    )
)
PRESET = "standard"
HORIZON = 6
TARGET = f"forward_return_{HORIZON}"
TRAIN_THREADS = 2
TOLERANCE = 1e-4
WARMUP_ROWS = 600  # an untimed fit on this many rows first: one-time set-up stays out


def load_matrix(rows: int) -> tuple[pd.DataFrame, pd.Series]:
    """The last ``rows`` rows of features and label with a label."""
    raw = pd.read_csv(DATA / "crypto" / "BTCUSDT_1h.csv")
    index = pd.DatetimeIndex(pd.to_datetime(raw["timestamp"], utc=True))
    ohlcv = [raw[c].to_numpy(np.float64) for c in ("open", "high", "low", "close", "volume")]
    candles = make_candles(index, *ohlcv, symbol="BTCUSDT", timeframe="1h")
    features = build_features(candles, PRESET, warmup="drop")
    labels = build_labels(candles, [{"kind": "forward_return", "horizon": HORIZON}])
    label = labels[TARGET].reindex(features.index)
    keep = label.notna().to_numpy()
    return features.loc[keep].iloc[-rows:], label.loc[keep].iloc[-rows:]


@contextmanager
def epoch_clock(marks: list[float]) -> Iterator[None]:
    """Record the trainer's progress-bar opening and each ``advance`` (the epoch ends)."""

    @contextmanager
    def timed(description: str, total: float | None, *, unit: str = "items") -> Iterator[Any]:
        marks.append(time.perf_counter())

        def advance(amount: float = 1) -> None:
            marks.append(time.perf_counter())

        yield advance

    with patch.object(trainer, "progress_bar", timed):
        yield


def train(kind: str, features: pd.DataFrame, label: pd.Series) -> tuple[Any, dict[str, Any]]:
    params = {"epochs": 1, "patience": None, "n_threads": TRAIN_THREADS}
    torch.set_num_threads(TRAIN_THREADS)
    make_model(kind, params).fit(features.iloc[:WARMUP_ROWS], label.iloc[:WARMUP_ROWS])
    model = make_model(kind, params)
    marks: list[float] = []
    with epoch_clock(marks):
        marks.append(time.perf_counter())
        model.fit(features, label)
        marks.append(time.perf_counter())
    epoch_s, fit_s = marks[2] - marks[1], marks[3] - marks[0]
    windows = len(features) - model.seq_len + 1  # type: ignore[attr-defined]
    return model, {
        "windows": windows,
        "epoch_s": epoch_s,
        "fit_s": fit_s,
        "windows_per_s": windows / epoch_s,
        "fit_windows_per_s": windows / fit_s,
        "train_loss": model.history_[0]["train"],  # type: ignore[attr-defined]
    }


def percentiles(ns: list[int]) -> dict[str, float]:
    ms = np.asarray(ns, dtype=np.float64) / 1e6
    p50, p99 = np.percentile(ms, [50, 99])
    return {"p50_ms": float(p50), "p99_ms": float(p99), "mean_ms": float(ms.mean())}


def latency(model: Any, features: pd.DataFrame, folder: Path, calls: int, warmup: int) -> Any:
    seq_len: int = model.seq_len
    path = export_onnx(model, folder / f"{model.kind}.onnx")
    predictor = OnnxPredictor(path)
    rows = features.to_numpy(np.float64)[-(calls + seq_len - 1) :]
    raw = sliding_windows(rows.astype(np.float32), seq_len)  # (calls, seq_len, n_features)
    scaled = [
        torch.from_numpy(model.x_scaler_.transform(window)).unsqueeze(0)
        for window in sliding_windows(rows, seq_len)
    ]
    network = model.network_.eval()
    torch.set_num_threads(1)

    def torch_call(i: int) -> float:
        with torch.no_grad():
            return float(network(scaled[i])[0, 0])

    def onnx_call(i: int) -> float:
        return float(predictor.predict(raw[i : i + 1])[0])

    timed: dict[str, list[int]] = {"torch": [], "onnxruntime": []}
    values: dict[str, list[float]] = {"torch": [], "onnxruntime": []}
    paths: dict[str, Callable[[int], float]] = {"torch": torch_call, "onnxruntime": onnx_call}
    for i in range(warmup):
        for call in paths.values():
            call(i % len(raw))
    for i in range(len(raw)):
        for name, call in paths.items():
            started = time.perf_counter_ns()
            value = call(i)
            timed[name].append(time.perf_counter_ns() - started)
            values[name].append(value)
    mapped = model.y_scaler_.inverse(np.asarray(values["torch"]))  # one target: (calls,)
    diff = float(np.max(np.abs(mapped - np.asarray(values["onnxruntime"]))))
    t, o = percentiles(timed["torch"]), percentiles(timed["onnxruntime"])
    return {
        "calls": len(raw),
        "torch": t,
        "onnxruntime": o,
        "onnx_over_torch_p50": o["p50_ms"] / t["p50_ms"],
        "max_abs_diff": diff,
        "agree": diff <= TOLERANCE,
        "onnx_bytes": path.stat().st_size,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=float, default=2e4)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=50)
    # The kinds exported as networks over windows: the deep kinds, built-in or plug-in.
    deep_kinds = exportable_kinds("network")
    parser.add_argument("--kinds", nargs="+", default=deep_kinds, choices=deep_kinds)
    parser.add_argument("--out", type=Path, default=Path("bench/results/deep.json"))
    args = parser.parse_args()
    print(f"building {PRESET} features on BTCUSDT 1h ...", file=sys.stderr, flush=True)
    started = time.perf_counter()
    features, label = load_matrix(int(args.rows))
    build_s = time.perf_counter() - started
    rows, columns = features.shape
    kinds: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="trademl-deep-bench-") as tmp:
        for kind in args.kinds:
            print(f"  {kind} ...", file=sys.stderr, flush=True)
            model, training = train(kind, features, label)
            kinds[kind] = {
                "params": model.get_params(),
                "training": training,
                "inference": latency(model, features, Path(tmp), args.calls, args.warmup),
            }
    results: dict[str, Any] = {
        "data": "crypto/BTCUSDT_1h.csv",
        "rows": rows,
        "columns": columns,
        "first_row": str(features.index[0]),
        "last_row": str(features.index[-1]),
        "label": TARGET,
        "train_threads": TRAIN_THREADS,
        "inference_threads": 1,
        "warmup_calls": args.warmup,
        "cores": len(os.sched_getaffinity(0)),
        "load_average_at_end": os.getloadavg(),
        "torch": version("torch"),
        "onnxruntime": version("onnxruntime"),
        "build_features_s": build_s,
        "tolerance": TOLERANCE,
        "kinds": kinds,
    }
    print(
        f"\ndeep kinds: {rows:,} rows x {columns} {PRESET} features (BTCUSDT 1h), label "
        f"{TARGET}, seq_len {model.seq_len}, defaults but epochs=1, patience=None; training "
        f"{TRAIN_THREADS} threads (epoch only, scaling/set-up excluded), inference 1 thread, "
        f"{args.calls} single-window calls after {args.warmup} warm-up; torch "
        f"{results['torch']}, onnxruntime {results['onnxruntime']}; latencies in ms, "
        f"ort/torch = p50 ratio; load average {results['load_average_at_end'][0]:.2f}"
    )
    head = ("kind", "windows/s", "fit s", "torch p50", "p99", "ort p50", "p99", "ort/torch", "diff")
    print(f"{head[0]:<12}" + "".join(f"{h:>11}" for h in head[1:]))
    for kind, r in kinds.items():
        t, i = r["training"], r["inference"]
        cells = (
            f"{t['windows_per_s']:,.0f}",
            f"{t['fit_s']:.2f}",
            f"{i['torch']['p50_ms']:.3f}",
            f"{i['torch']['p99_ms']:.3f}",
            f"{i['onnxruntime']['p50_ms']:.3f}",
            f"{i['onnxruntime']['p99_ms']:.3f}",
            f"{i['onnx_over_torch_p50']:.2f}x",
            f"{i['max_abs_diff']:.1e}",
        )
        print(f"{kind:<12}" + "".join(f"{c:>11}" for c in cells))
    bad = [k for k, r in kinds.items() if not r["inference"]["agree"]]
    print(
        f"torch vs onnxruntime: {'DISAGREE ' + ', '.join(bad) if bad else 'agree'} "
        f"(tolerance {TOLERANCE:g})"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
