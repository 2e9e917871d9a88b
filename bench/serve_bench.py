"""Serving benchmark: ``POST /api/v1/predict`` of ``trademl serve`` beside ``mlflow models
serve`` of the same registered pipeline model, on loopback, in the same run.

Set-up (untimed): a fresh TRADEML_HOME, the real BTCUSDT 1h candles imported, one training run
(standard features, lgbm, intraday and swing horizons) registered in the MLflow registry.
Both servers then serve that version, one worker each:

* ``trademl serve``, two request kinds:
  - ``store``: ``{"symbol", "timeframe"}``; the server reads the latest stored bars and caches
    the prediction per closed bar (how a trading system polls it);
  - ``candles``: the same window of candles in the body as MLflow gets (no cache: features and
    model run on every call);
* ``mlflow models serve -m models:/NAME/V --env-manager local``: ``POST /invocations`` with the
  window (``warmup_bars + 1`` rows) as ``dataframe_split``; the pyfunc predicts its last row.

Load: an asyncio + httpx client keeping ``c`` requests in flight for ``--seconds`` after a
warm-up, at c = 1, 8, 32. The client shares the 2 cores with the server, for both servers alike.
Then the time of one ``candles`` request split in process: JSON parsing and validation,
features, model, response serialisation.

Run: .venv/bin/python bench/serve_bench.py [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("TRADEML_TEST_DATA", ROOT / ".." / "shared" / "data"))
SYMBOL, TIMEFRAME = "BTCUSDT", "1h"
CONCURRENCY = (1, 8, 32)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def train(home: Path) -> tuple[str, int, Any]:
    """Import the candles, train and register one pipeline; return (name, version, settings)."""
    from trademl.config import reload_settings
    from trademl.data.ingest import import_path, open_default_store
    from trademl.workflow import run

    settings = reload_settings(home=home)
    with open_default_store(settings) as store:
        import_path(DATA / "crypto" / f"{SYMBOL}_{TIMEFRAME}.csv", store)
    config = {
        "data": {
            "symbol": SYMBOL,
            "timeframe": TIMEFRAME,
            "start": "2023-08-01",
            "end": "2024-08-01",
        },
        "features": "standard",
        "labels": {
            "kinds": ["direction", "max_high", "min_low"],
            "horizons": ["intraday", "swing"],
        },
        "models": [{"kind": "lgbm", "params": {"n_estimators": 200, "num_leaves": 15}}],
        "validation": {
            "kind": "walk_forward",
            "params": {"test_size": 800, "n_splits": 3, "min_train_size": 3500},
        },
        "output": str(home / "runs" / "serve_bench"),
        "seed": 0,
    }
    result = run(config, settings=settings)
    if result.model_name is None or result.model_version is None:
        raise SystemExit(f"the run registered no model: {result.registry_reason}")
    return result.model_name, result.model_version, settings


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 120.0) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout_s:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}: {url}")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return time.perf_counter() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"server not ready after {timeout_s} s: {url}")


async def load(url: str, body: bytes, concurrency: int, seconds: float) -> dict[str, float]:
    """Keep ``concurrency`` requests in flight; latencies of those finished after a warm-up."""
    headers = {"content-type": "application/json"}
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=60.0) as client:

        async def worker(until: float, record: bool) -> None:
            nonlocal errors
            while time.perf_counter() < until:
                started = time.perf_counter()
                response = await client.post(url, content=body, headers=headers)
                if response.status_code != 200:
                    errors += 1
                    continue
                if record:
                    latencies.append(time.perf_counter() - started)

        warm = time.perf_counter() + min(2.0, seconds / 2)
        await asyncio.gather(*(worker(warm, False) for _ in range(concurrency)))
        started = time.perf_counter()
        until = started + seconds
        await asyncio.gather(*(worker(until, True) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    if errors:
        raise SystemExit(f"{errors} failed requests to {url}")
    lat = np.asarray(latencies) * 1e3
    return {
        "requests": len(lat),
        "rps": len(lat) / elapsed,
        "p50_ms": float(np.percentile(lat, 50)),
        "p99_ms": float(np.percentile(lat, 99)),
    }


def breakdown(settings: Any, name: str, version: int, body: bytes) -> dict[str, float]:
    """Median in-process milliseconds of the stages of one ``candles`` request."""
    from trademl.features import build_features
    from trademl.serving.predict import candles_frame
    from trademl.serving.schemas import PredictRequest
    from trademl.tracking.pipeline import load_pipeline

    pipeline, _ = load_pipeline(name, version, settings)
    stages: dict[str, list[float]] = {
        "parse_validate": [],
        "features": [],
        "model": [],
        "serialise": [],
    }
    for _ in range(30):
        t0 = time.perf_counter()
        request = PredictRequest.model_validate_json(body)
        frame = candles_frame(request.candles or [], pipeline.symbol, pipeline.timeframe)
        t1 = time.perf_counter()
        features = build_features(frame, pipeline.feature_set)
        t2 = time.perf_counter()
        out = pipeline.predictor.predict(
            features.iloc[-1:][pipeline.feature_columns], frame["close"].iloc[-1:]
        )
        t3 = time.perf_counter()
        json.dumps({k: float(v) for k, v in out.iloc[0].items()})
        t4 = time.perf_counter()
        for key, value in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            value_ms = value * 1e3
            stages[key].append(value_ms)
    return {key: float(np.median(values)) for key, values in stages.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--out", type=Path, default=Path("bench/results/serve.json"))
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="trademl-serve-bench-"))
    print(f"training and registering a pipeline under {home} ...", file=sys.stderr, flush=True)
    name, version, settings = train(home)

    from trademl.data.ingest import open_default_store, read_series
    from trademl.tracking.pipeline import load_pipeline, to_model_input

    pipeline, _ = load_pipeline(name, version, settings)
    with open_default_store(settings) as store:
        candles = read_series(store, SYMBOL, TIMEFRAME)
    window = candles.iloc[-(pipeline.warmup_bars + 1 + settings.serve_context_bars) :]
    rows = [
        {"timestamp": t.isoformat(), **{c: float(v) for c, v in row.items()}}
        for t, row in window[["open", "high", "low", "close", "volume"]].iterrows()
    ]
    bodies = {
        "store": json.dumps({"symbol": SYMBOL, "timeframe": TIMEFRAME}).encode(),
        "candles": json.dumps({"symbol": SYMBOL, "timeframe": TIMEFRAME, "candles": rows}).encode(),
    }
    frame = to_model_input(window.iloc[-(pipeline.warmup_bars + 1) :])
    frame["timestamp"] = frame["timestamp"].astype(str)
    mlflow_body = json.dumps({"dataframe_split": frame.to_dict(orient="split")}).encode()

    env = {**os.environ, "TRADEML_HOME": str(home), "MLFLOW_TRACKING_URI": settings.mlflow_uri}
    # mlflow models serve execs `uvicorn` by name: the venv's bin must be on PATH.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("TRADEML_TRACKING", None)
    ours_port, mlflow_port = free_port(), free_port()
    ours = subprocess.Popen(
        [sys.executable, "-m", "trademl", "serve", "--port", str(ours_port), "--workers", "1"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    mlflow_server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "models",
            "serve",
            "-m",
            f"models:/{name}/{version}",
            "--env-manager",
            "local",
            "--port",
            str(mlflow_port),
            "--workers",
            "1",
        ],
        env={**env, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    results: dict[str, Any] = {}
    try:
        start_ours = wait_http(f"http://127.0.0.1:{ours_port}/ready", ours)
        start_mlflow = wait_http(f"http://127.0.0.1:{mlflow_port}/ping", mlflow_server)
        results["startup_s"] = {"trademl": start_ours, "mlflow": start_mlflow}
        targets = {
            "trademl (store, cached per bar)": (
                f"http://127.0.0.1:{ours_port}/api/v1/predict",
                bodies["store"],
            ),
            "trademl (candles in body)": (
                f"http://127.0.0.1:{ours_port}/api/v1/predict",
                bodies["candles"],
            ),
            "mlflow models serve (candles)": (
                f"http://127.0.0.1:{mlflow_port}/invocations",
                mlflow_body,
            ),
        }
        table: dict[str, dict[str, Any]] = {}
        for label, (url, body) in targets.items():
            table[label] = {}
            for c in CONCURRENCY:
                print(f"{label}, concurrency {c} ...", file=sys.stderr, flush=True)
                table[label][str(c)] = asyncio.run(load(url, body, c, args.seconds))
        results["load"] = table
    finally:
        for proc in (ours, mlflow_server):
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
    results["breakdown_ms"] = breakdown(settings, name, version, bodies["candles"])
    results["window_rows"] = {"trademl": len(rows), "mlflow": len(frame)}
    results["model"] = {"name": name, "version": version, "warmup_bars": pipeline.warmup_bars}
    results["cpus"] = len(os.sched_getaffinity(0))

    mlflow_row = table["mlflow models serve (candles)"]
    print(
        f"\n{name} v{version}: {len(rows)} candles per body (mlflow {len(frame)}); one worker each"
    )
    print(f"{'server':<34}{'c':>4}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'x mlflow rps':>14}")
    for label, rows_by_c in table.items():
        for c, row in rows_by_c.items():
            ratio = row["rps"] / mlflow_row[c]["rps"]
            print(
                f"{label:<34}{c:>4}{row['rps']:>10.1f}{row['p50_ms']:>10.2f}{row['p99_ms']:>10.2f}"
                f"{ratio:>13.1f}x"
            )
    print("one candles request in process (median ms):", results["breakdown_ms"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
