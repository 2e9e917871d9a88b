"""Serving benchmark: ``POST /api/v1/predict`` of ``trademl serve`` beside ``mlflow models
serve`` of the same registered pipeline model, one worker each, on loopback, in the same run.

Set-up (untimed): a TRADEML_HOME with the real BTCUSDT 1h candles imported and one training
run (standard features, lgbm, intraday and swing horizons) registered in the MLflow registry;
``--home`` reuses one from an earlier run. Both servers then serve that version:

* ``trademl serve --workers 1``, two request kinds:
  - ``store``: ``{"symbol", "timeframe"}``; the server reads the latest stored bars and caches
    the prediction per closed bar (how a trading system polls it);
  - ``candles``: the model's ``warmup_bars + 1`` candles in the body (nothing cached: features
    and model run on every call);
* ``mlflow models serve -m models:/NAME/V --env-manager local --workers 1``:
  ``POST /invocations`` with the same ``warmup_bars + 1`` rows as ``dataframe_split``.

Load: ``wrk`` (Debian's package) with a Lua script that posts the body and reports exact
percentiles, ``--seconds`` per cell after a 2 s warm-up, at concurrency 8 and 32, wrk on 2
threads. wrk shares the machine's cores with the server, for both servers alike. Without wrk
on PATH an asyncio + httpx client stands in; it saturates before the server on 2 cores, so its
figures are a floor, and the table says which driver measured it.

The prediction log's cost: the logged and the unlogged server in alternating cells (ABBA,
``--log-repeats`` pairs per path and concurrency), each logged cell started with the journal
drained and ended with its backlog recorded; reported as the median over pairs of the req/s
lost and of the extra server CPU per answer (the process tree's user + system time, the
journal's mover included: a figure that other load on the machine does not move).
``--log-only`` runs just these cells.

Then, in process, where the time of one request goes: each stage of the store path and of
the candles path timed alone (median of many calls), and with ``--profile`` a yappi CPU
profile of the running server under wrk load on the store path (needs ``yappi`` importable).

Run: .venv/bin/python bench/serve_bench.py [--seconds 10] [--home DIR] [--profile] [--log-only]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("TRADEML_TEST_DATA", ROOT / ".." / "shared" / "data"))
SYMBOL, TIMEFRAME = "BTCUSDT", "1h"
CONCURRENCY = (8, 32)
WARMUP_S = 2.0
PREDICT_PATH = "/api/v1/predict"
# Issue 13's targets for one worker on this machine.
TARGETS = {"store_rps_c8": 3000.0, "store_p99_ms_c8": 10.0, "store_p99_ms_c32": 50.0}
TARGET_CANDLES_X_MLFLOW = 5.0
BARE_LABEL = "bare FastAPI (same bytes, floor)"
UNLOGGED_STORE = "trademl, no prediction log (store)"
UNLOGGED_CANDLES = "trademl, no prediction log (candles)"
# Issue 17: logging every prediction may cost at most this share of the throughput.
TARGET_LOG_COST = 0.10

# wrk posts the body of a file and prints one JSON line with exact percentiles and errors.
WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local file = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
wrk.body = file:read("*a")
file:close()
done = function(summary, latency, requests)
  io.write(string.format(
    'BENCH {"requests": %d, "duration_us": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, '
    .. '"max_us": %d, "connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.status, summary.errors.timeout))
end
"""


# -- set-up ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Setup:
    """A home with the candles imported and one pipeline registered."""

    home: Path
    name: str
    version: int
    settings: Any


def prepare_home(home: Path | None) -> Setup:
    """Import the candles and train + register one pipeline under a fresh home, or find the
    pipeline an earlier run registered under ``home``."""
    from trademl.config import reload_settings
    from trademl.tracking.registry import list_models, promote

    setup: Setup | None = None
    if home is not None and (home / "bench_model.json").exists():
        settings = reload_settings(home=home)
        known = json.loads((home / "bench_model.json").read_text())
        if any(row["name"] == known["name"] for row in list_models(settings)):
            setup = Setup(home, known["name"], int(known["version"]), settings)
    if setup is None:
        home = home or Path(tempfile.mkdtemp(prefix="trademl-serve-bench-"))
        home.mkdir(parents=True, exist_ok=True)
        print(f"training and registering a pipeline under {home} ...", file=sys.stderr, flush=True)
        name, version, settings = train(home)
        (home / "bench_model.json").write_text(json.dumps({"name": name, "version": version}))
        setup = Setup(home, name, version, settings)
    row = next(r for r in list_models(setup.settings) if r["name"] == setup.name)
    if row.get("champion") is None:
        # The server loads champions only; a one-year run need not beat the gate to be timed.
        promote(setup.name, setup.version, force=True, settings=setup.settings, reason="benchmark")
    return setup


def train(home: Path) -> tuple[str, int, Any]:
    """Import the candles, train and register one pipeline; return (name, version, settings)."""
    from trademl.api import train as run
    from trademl.config import reload_settings
    from trademl.data.ingest import import_path, open_default_store

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


@dataclass(frozen=True)
class Bodies:
    """The request bodies, written to files for wrk."""

    store: Path
    candles: Path
    mlflow: Path
    window_rows: int
    warmup_bars: int


def write_bodies(setup: Setup, folder: Path) -> Bodies:
    """The three bodies: store path, candles path and MLflow's ``dataframe_split``."""
    from trademl.data.ingest import open_default_store, read_series
    from trademl.tracking.pipeline import load_pipeline, to_model_input

    pipeline, _ = load_pipeline(setup.name, setup.version, setup.settings)
    with open_default_store(setup.settings) as store:
        candles = read_series(store, SYMBOL, TIMEFRAME)
    window = candles.iloc[-(pipeline.warmup_bars + 1) :]
    rows = [
        {"timestamp": t.isoformat(), **{c: float(v) for c, v in row.items()}}
        for t, row in window[["open", "high", "low", "close", "volume"]].iterrows()
    ]
    frame = to_model_input(window)
    frame["timestamp"] = frame["timestamp"].astype(str)
    folder.mkdir(parents=True, exist_ok=True)
    bodies = Bodies(
        folder / "store.json",
        folder / "candles.json",
        folder / "mlflow.json",
        len(rows),
        pipeline.warmup_bars,
    )
    bodies.store.write_text(json.dumps({"symbol": SYMBOL, "timeframe": TIMEFRAME}))
    bodies.candles.write_text(
        json.dumps({"symbol": SYMBOL, "timeframe": TIMEFRAME, "candles": rows})
    )
    bodies.mlflow.write_text(json.dumps({"dataframe_split": frame.to_dict(orient="split")}))
    return bodies


# -- servers -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env(setup: Setup) -> dict[str, str]:
    env = {**os.environ, "TRADEML_HOME": str(setup.home)}
    env["MLFLOW_TRACKING_URI"] = setup.settings.mlflow_uri
    # mlflow models serve execs `uvicorn` by name: the venv's bin must be on PATH.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("TRADEML_TRACKING", None)
    # One OpenMP thread, as `trademl serve` sets for itself: LightGBM's pool spins otherwise.
    env["OMP_NUM_THREADS"] = "1"
    return env


def start_trademl(
    setup: Setup, port: int, *, profile_out: Path | None = None, log: bool = True
) -> subprocess.Popen[bytes]:
    """``trademl serve --workers 1``; under yappi when ``profile_out`` is given; without the
    prediction log when ``log`` is False (the cost of logging, measured beside it)."""
    command = [sys.executable]
    if profile_out is not None:
        command += [str(Path(__file__)), "--serve-profiled", str(profile_out)]
    else:
        command += ["-m", "trademl"]
    command += ["serve", "--port", str(port), "--workers", "1"]
    env = {**server_env(setup), "TRADEML_PREDICTION_LOG": "true" if log else "false"}
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def start_mlflow(setup: Setup, port: int) -> subprocess.Popen[bytes]:
    """``mlflow models serve`` of the same version, one worker, no environment rebuilt."""
    command = [sys.executable, "-m", "mlflow", "models", "serve"]
    command += ["-m", f"models:/{setup.name}/{setup.version}", "--env-manager", "local"]
    command += ["--port", str(port), "--workers", "1"]
    return subprocess.Popen(
        command, env=server_env(setup), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


# The framework's floor on this machine at this moment: FastAPI + uvicorn answering the same
# store-path bytes from memory, nothing else (no middleware, no validation, no lookup).
BARE_APP = """
from pathlib import Path

from fastapi import FastAPI, Response

app = FastAPI()
ANSWER = Path(__file__).with_name("store_answer.json").read_bytes()


@app.get("/ping")
async def ping() -> Response:
    return Response(b"ok")


@app.post("/api/v1/predict")
async def predict() -> Response:
    return Response(ANSWER, media_type="application/json")
"""


def start_bare(setup: Setup, port: int, folder: Path, answer: bytes) -> subprocess.Popen[bytes]:
    """A bare FastAPI app on uvicorn, one worker, answering ``answer`` to every POST."""
    (folder / "store_answer.json").write_bytes(answer)
    (folder / "bare_app.py").write_text(BARE_APP)
    command = [sys.executable, "-m", "uvicorn", "bare_app:app", "--app-dir", str(folder)]
    command += ["--port", str(port), "--workers", "1", "--no-access-log", "--log-level", "warning"]
    return subprocess.Popen(
        command, env=server_env(setup), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 180.0) -> float:
    """Seconds until ``url`` answers 200."""
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


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM (uvicorn shuts down gracefully), then SIGKILL after 30 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def check_answers(url: str, body: Path) -> None:
    """One request first: a cell of errors measures nothing."""
    response = httpx.post(
        url, content=body.read_bytes(), headers={"content-type": "application/json"}, timeout=60
    )
    if response.status_code != 200:
        raise SystemExit(f"{url} answered {response.status_code}: {response.text[:500]}")


# -- load --------------------------------------------------------------------------------------


def wrk_threads(concurrency: int) -> int:
    return min(2, concurrency)  # wrk refuses more threads than connections


def wrk_load(
    url: str, body: Path, concurrency: int, seconds: float, script: Path
) -> dict[str, Any]:
    """One wrk run: req/s, p50/p90/p99/max in ms, and errors (socket errors + non-2xx)."""
    command = [
        "wrk",
        f"-t{wrk_threads(concurrency)}",
        f"-c{concurrency}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        url,
    ]
    env = {**os.environ, "BENCH_BODY": str(body)}
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    match = re.search(r"^BENCH (\{.*\})$", done.stdout, re.MULTILINE)
    if done.returncode != 0 or match is None:
        raise SystemExit(f"wrk failed ({done.returncode}): {done.stdout}\n{done.stderr}")
    raw = json.loads(match.group(1))
    errors = sum(raw[k] for k in ("connect", "read", "write", "status", "timeout"))
    return {
        "driver": "wrk",
        "requests": raw["requests"],
        "rps": raw["requests"] / (raw["duration_us"] / 1e6),
        "p50_ms": raw["p50_us"] / 1e3,
        "p90_ms": raw["p90_us"] / 1e3,
        "p99_ms": raw["p99_us"] / 1e3,
        "max_ms": raw["max_us"] / 1e3,
        "errors": errors,
        "errors_by_kind": {k: raw[k] for k in ("connect", "read", "write", "status", "timeout")},
    }


async def python_load(url: str, body: bytes, concurrency: int, seconds: float) -> dict[str, Any]:
    """The fallback driver: keep ``concurrency`` httpx requests in flight for ``seconds``."""
    headers = {"content-type": "application/json"}
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=60.0) as client:

        async def worker(until: float) -> None:
            nonlocal errors
            while time.perf_counter() < until:
                started = time.perf_counter()
                try:
                    response = await client.post(url, content=body, headers=headers)
                    ok = response.status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    latencies.append(time.perf_counter() - started)
                else:
                    errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker(started + seconds) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    lat = np.asarray(latencies or [np.nan]) * 1e3
    return {
        "driver": "python",
        "requests": len(latencies),
        "rps": len(latencies) / elapsed,
        "p50_ms": float(np.percentile(lat, 50)),
        "p90_ms": float(np.percentile(lat, 90)),
        "p99_ms": float(np.percentile(lat, 99)),
        "max_ms": float(np.max(lat)),
        "errors": errors,
    }


def measure(
    url: str, body: Path, concurrency: int, seconds: float, script: Path | None
) -> dict[str, Any]:
    """One cell after a warm-up run whose figures are dropped (its request count is kept as
    ``warmup_requests``: the server's CPU is read across both)."""
    if script is not None:
        warm = wrk_load(url, body, concurrency, WARMUP_S, script)
        cell = wrk_load(url, body, concurrency, seconds, script)
    else:
        payload = body.read_bytes()
        warm = asyncio.run(python_load(url, payload, concurrency, WARMUP_S))
        cell = asyncio.run(python_load(url, payload, concurrency, seconds))
    return {**cell, "warmup_requests": warm["requests"]}


# -- where the time goes -----------------------------------------------------------------------


def _median_ms(call: Any, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return float(np.median(times) * 1e3)


def breakdown(setup: Setup, bodies: Bodies) -> dict[str, dict[str, float]]:
    """Median in-process milliseconds of each stage of a store and of a candles request."""
    from trademl.serving.predict import candles_frame
    from trademl.serving.schemas import PredictRequest, PredictResponse
    from trademl.serving.store import StoreReader
    from trademl.tracking.pipeline import load_pipeline

    pipeline, _ = load_pipeline(setup.name, setup.version, setup.settings)
    reader = StoreReader(setup.settings.market_store_url)
    info = reader.info(SYMBOL, TIMEFRAME, fresh=True)
    assert info is not None
    window = reader.tail(SYMBOL, TIMEFRAME, pipeline.warmup_bars + 1, info)
    last = pipeline.predict_last(window)
    horizons = {
        name: {"bars": int(bars), "p_up": 0.5, "confidence": 0.0, "high": 1.0, "low": 1.0}
        for name, bars in pipeline.horizons.items()
    }
    response = {
        "symbol": SYMBOL,
        "timeframe": TIMEFRAME,
        "bar_timestamp": last.timestamp.to_pydatetime(),
        "close": last.close,
        "source": "store",
        "gapped": False,
        "missing_bars": 0,
        "model": {
            "name": setup.name,
            "version": setup.version,
            "alias": None,
            "latest_unpromoted": True,
        },
        "horizons": {
            name: {**h, "high_interval": None, "low_interval": None, "alpha": 0.1}
            for name, h in horizons.items()
        },
    }
    store_body = bodies.store.read_bytes()
    candles_body = bodies.candles.read_bytes()
    request = PredictRequest.model_validate_json(candles_body)
    frame = candles_frame(request.candles or [], pipeline.symbol, pipeline.timeframe)
    features_of = _features_function(pipeline)
    row, close = features_of(frame).iloc[-1:], frame["close"].iloc[-1:]

    def serialise() -> bytes:
        checked = PredictResponse.model_validate(response)
        return json.dumps(checked.model_dump(mode="json")).encode()

    store = {
        "parse_validate_request": _median_ms(
            lambda: PredictRequest.model_validate_json(store_body), 2000
        ),
        "store_info_fresh (DuckDB open + query)": _median_ms(
            lambda: reader.info(SYMBOL, TIMEFRAME, fresh=True), 50
        ),
        "store_info_cached": _median_ms(lambda: reader.info(SYMBOL, TIMEFRAME), 2000),
        "store_tail (DuckDB open + read)": _median_ms(
            lambda: reader.tail(SYMBOL, TIMEFRAME, pipeline.warmup_bars + 1, info), 50
        ),
        "response_validate_serialise": _median_ms(serialise, 2000),
    }
    candles = {
        "parse_validate_request": _median_ms(
            lambda: PredictRequest.model_validate_json(candles_body), 50
        ),
        "candles_frame (+ contract check)": _median_ms(
            lambda: candles_frame(request.candles or [], pipeline.symbol, pipeline.timeframe), 50
        ),
        "last_bar_features": _median_ms(lambda: features_of(frame), 50),
        "model (predictor on the feature row)": _median_ms(
            lambda: pipeline.predictor.predict(row[pipeline.feature_columns], close), 50
        ),
        "predict_last (features + model)": _median_ms(lambda: pipeline.predict_last(frame), 50),
        "response_validate_serialise": _median_ms(serialise, 2000),
    }
    return {"store": store, "candles": candles}


def _features_function(pipeline: Any) -> Any:
    from trademl.features import last_bar_features

    return lambda frame: last_bar_features(
        frame.iloc[-pipeline.window_bars :], pipeline.feature_set
    )


def serve_profiled(out: Path, serve_args: list[str]) -> None:
    """Run ``trademl serve`` with yappi (CPU clock, every thread) switched by SIGUSR1: the
    first signal starts the profile, the second stops it and writes the stats to ``out``.
    (uvicorn re-raises SIGTERM after its shutdown, so nothing can be written at exit.)"""
    import yappi  # type: ignore[import-not-found]

    from trademl.cli.app import main as cli_main

    yappi.set_clock_type("cpu")

    def toggle(*_: Any) -> None:
        if not yappi.is_running():
            yappi.start(builtins=False, profile_threads=True)
            return
        yappi.stop()
        stats = yappi.get_func_stats()
        stats.save(str(out.with_suffix(".pstat")), type="pstat")
        with out.open("w") as handle:
            stats.sort("ttot").print_all(
                out=handle,
                columns={0: ("name", 100), 1: ("ncall", 10), 2: ("tsub", 8), 3: ("ttot", 8)},
            )

    signal.signal(signal.SIGUSR1, toggle)
    cli_main(serve_args)


def profile_store_path(
    setup: Setup, bodies: Bodies, seconds: float, script: Path, folder: Path
) -> Path:
    """yappi's CPU profile of the server under ``seconds`` of wrk at concurrency 8 (store)."""
    port = free_port()
    out = folder / "serve_profile.txt"
    out.unlink(missing_ok=True)
    server = start_trademl(setup, port, profile_out=out)
    try:
        wait_http(f"http://127.0.0.1:{port}/ready", server)
        url = f"http://127.0.0.1:{port}{PREDICT_PATH}"
        check_answers(url, bodies.store)
        wrk_load(url, bodies.store, 8, WARMUP_S, script)
        server.send_signal(signal.SIGUSR1)
        time.sleep(0.2)
        result = wrk_load(url, bodies.store, 8, seconds, script)
        server.send_signal(signal.SIGUSR1)
        for _ in range(600):  # the server writes them from its signal handler
            if out.exists() and out.stat().st_size > 0:
                break
            time.sleep(0.1)
        time.sleep(1.0)
        print(
            f"under yappi: {result['rps']:.0f} req/s (profiling slows the server)", file=sys.stderr
        )
    finally:
        stop(server)
    return out


# -- report ------------------------------------------------------------------------------------


def print_table(table: dict[str, dict[str, dict[str, Any]]], bodies: Bodies) -> None:
    mlflow_row = table["mlflow models serve (candles)"]
    floor = table[BARE_LABEL]
    print(
        f"\none worker each; candles bodies: {bodies.window_rows} rows "
        f"(warm-up {bodies.warmup_bars} + 1); {len(os.sched_getaffinity(0))} CPUs shared with "
        f"the load driver; load average {os.getloadavg()[0]:.1f} at the end"
    )
    header = f"{'server / path':<34}{'c':>4}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}"
    print(header + f"{'errors':>8}{'x mlflow':>10}{'of floor':>10}  driver")
    for label, by_c in table.items():
        for c, row in by_c.items():
            ratio = row["rps"] / mlflow_row[c]["rps"] if mlflow_row[c]["rps"] else float("nan")
            share = row["rps"] / floor[c]["rps"] if floor[c]["rps"] else float("nan")
            print(
                f"{label:<34}{c:>4}{row['rps']:>9.0f}{row['p50_ms']:>9.2f}{row['p99_ms']:>9.2f}"
                f"{row['max_ms']:>9.1f}{row['errors']:>8}{ratio:>9.1f}x{share:>10.0%}  "
                f"{row['driver']}"
            )


def verdicts(
    table: dict[str, dict[str, dict[str, Any]]], costs: dict[str, dict[str, float]]
) -> dict[str, bool]:
    """Issue 13's targets, met or not, on this run's figures."""
    store = table["trademl (store, cached per bar)"]
    candles = table["trademl (candles in body)"]
    mlflow_row = table["mlflow models serve (candles)"]
    return {
        f"store c8 >= {TARGETS['store_rps_c8']:.0f} req/s": store["8"]["rps"]
        >= TARGETS["store_rps_c8"],
        f"store c8 p99 <= {TARGETS['store_p99_ms_c8']:.0f} ms": store["8"]["p99_ms"]
        <= TARGETS["store_p99_ms_c8"],
        f"store c32 p99 <= {TARGETS['store_p99_ms_c32']:.0f} ms": store["32"]["p99_ms"]
        <= TARGETS["store_p99_ms_c32"],
        f"candles >= {TARGET_CANDLES_X_MLFLOW:.0f}x mlflow req/s (c8 and c32)": all(
            candles[c]["rps"] >= TARGET_CANDLES_X_MLFLOW * mlflow_row[c]["rps"] for c in ("8", "32")
        ),
        "no errors": all(row["errors"] == 0 for by_c in table.values() for row in by_c.values()),
        f"prediction log costs <= {TARGET_LOG_COST:.0%} of req/s (median of paired cells, "
        "every path and c)": all(
            cost <= TARGET_LOG_COST for by_c in costs.values() for cost in by_c.values()
        ),
    }


def log_cost(pairs: dict[str, dict[str, list[dict[str, float]]]]) -> dict[str, dict[str, float]]:
    """Throughput lost to the prediction log: the median over paired cells of
    1 - logged / unlogged req/s, per path and concurrency."""
    return {
        path: {c: float(np.median([p["cost"] for p in cells])) for c, cells in by_c.items()}
        for path, by_c in pairs.items()
    }


def journal_backlog(settings: Any) -> int:
    """Bytes the logged server's journal holds that its mover has not moved yet."""
    import sqlalchemy as sa

    from trademl.monitoring.journal import journal_folder

    files = {p.name: p.stat().st_size for p in journal_folder(settings).glob("*.jsonl")}
    if not files:
        return 0
    engine = sa.create_engine(settings.prediction_log_url or settings.jobs_store_url)
    offsets: dict[str, int] = {}
    try:
        with engine.connect() as connection:
            offsets = dict(
                connection.exec_driver_sql(
                    'SELECT name, "offset" FROM prediction_log_journal'
                ).all()
            )
    except sa.exc.DBAPIError:
        pass  # not created yet: nothing moved
    finally:
        engine.dispose()
    return int(sum(size - int(offsets.get(name, 0)) for name, size in files.items()))


def tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of a process and every process below it, from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    total, pending = 0.0, [pid]
    while pending:
        current = pending.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue  # gone meanwhile
    return total


def wait_drained(settings: Any, timeout_s: float = 60.0) -> float:
    """Wait until the mover has moved everything; returns the seconds waited."""
    started = time.monotonic()
    while journal_backlog(settings) > 0 and time.monotonic() - started < timeout_s:
        time.sleep(0.1)
    return time.monotonic() - started


def paired_log_cost(
    setup: Setup,
    servers: dict[str, tuple[str, int]],
    bodies: Bodies,
    seconds: float,
    script: Path | None,
    repeats: int,
) -> dict[str, dict[str, list[dict[str, float]]]]:
    """The logged and the unlogged server (``servers``: url and pid of each) measured in
    alternating cells (ABBA...), each logged cell started with the journal drained and ended
    with its backlog recorded: the machine's drift during the run falls on both alike, and a
    mover that falls behind shows. Each cell also records the CPU its server's process tree
    (the logged one's mover included) spent per answer, which other load on the machine does
    not move; a candles cell runs three times as long (tens of answers a second)."""
    pairs: dict[str, dict[str, list[dict[str, float]]]] = {}
    for path, body in (("store", bodies.store), ("candles", bodies.candles)):
        pairs[path] = {}
        for c in CONCURRENCY:
            cells = pairs[path][str(c)] = []
            for repeat in range(repeats):
                figures: dict[str, float] = {}
                order = ("logged", "unlogged") if repeat % 2 == 0 else ("unlogged", "logged")
                for which in order:
                    print(
                        f"log cost, {path}, c{c}, {which} ({repeat + 1}/{repeats}) ...",
                        file=sys.stderr,
                        flush=True,
                    )
                    if which == "logged":
                        wait_drained(setup.settings)
                    url, pid = servers[which]
                    cpu = tree_cpu_s(pid)
                    cell = measure(url, body, c, seconds * (3 if path == "candles" else 1), script)
                    figures[which] = cell["rps"]
                    if which == "logged":
                        figures["backlog_bytes"] = journal_backlog(setup.settings)
                        figures["drain_s"] = wait_drained(setup.settings)
                    answered = cell["requests"] + cell["warmup_requests"]
                    figures[f"{which}_cpu_us"] = (tree_cpu_s(pid) - cpu) / answered * 1e6
                figures["cost"] = 1.0 - figures["logged"] / figures["unlogged"]
                figures["cpu_cost"] = figures["logged_cpu_us"] / figures["unlogged_cpu_us"] - 1.0
                cells.append(figures)
    return pairs


def print_log_cost(results: dict[str, Any]) -> None:
    for path, by_c in results["prediction_log_pairs"].items():
        for c, cells in by_c.items():
            each = ", ".join(
                f"{p['cost']:+.1%} ({p['logged']:.0f} vs {p['unlogged']:.0f} req/s, "
                f"{p['logged_cpu_us']:.0f} vs {p['unlogged_cpu_us']:.0f} CPU us/answer, "
                f"backlog {p['backlog_bytes'] / 1024:.0f} KiB)"
                for p in cells
            )
            median = results["prediction_log_cost"][path][c]
            cpu = float(np.median([p["cpu_cost"] for p in cells]))
            print(
                f"prediction log, {path} path, c{c}: median {median:+.1%} req/s lost, "
                f"{cpu:+.1%} server CPU per answer; pairs: {each}"
            )


def log_only(setup: Setup, bodies: Bodies, args: argparse.Namespace, script: Path | None) -> None:
    """``--log-only``: the logged and the unlogged server alone, in paired cells."""
    ports = {"logged": free_port(), "unlogged": free_port()}
    procs = {w: start_trademl(setup, port, log=w == "logged") for w, port in ports.items()}
    results: dict[str, Any] = {}
    try:
        servers = {}
        for which, port in ports.items():
            wait_http(f"http://127.0.0.1:{port}/ready", procs[which])
            servers[which] = (f"http://127.0.0.1:{port}{PREDICT_PATH}", procs[which].pid)
            for body in (bodies.store, bodies.candles):
                check_answers(servers[which][0], body)
        results["prediction_log_pairs"] = paired_log_cost(
            setup, servers, bodies, args.seconds, script, args.log_repeats
        )
    finally:
        for proc in procs.values():
            stop(proc)
    results["prediction_log_cost"] = log_cost(results["prediction_log_pairs"])
    results["cpus"] = len(os.sched_getaffinity(0))
    results["load_average_after"] = os.getloadavg()
    print_log_cost(results)
    met = all(
        c <= TARGET_LOG_COST
        for by_c in results["prediction_log_cost"].values()
        for c in by_c.values()
    )
    print(f"{'met ' if met else 'MISS'}  prediction log costs <= {TARGET_LOG_COST:.0%} of req/s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str))
    print(f"written to {args.out}")


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--serve-profiled":
        serve_profiled(Path(sys.argv[2]), sys.argv[3:])
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per cell")
    parser.add_argument(
        "--home",
        type=Path,
        default=None,
        help="reuse (or create) this home; remove it when trademl changed its pickled pipeline",
    )
    parser.add_argument("--profile", action="store_true", help="yappi profile of the store path")
    parser.add_argument(
        "--profile-only", action="store_true", help="only the yappi profile, no load table"
    )
    parser.add_argument(
        "--log-only", action="store_true", help="only the prediction log's paired cells"
    )
    parser.add_argument(
        "--log-repeats", type=int, default=3, help="paired logged/unlogged cells per path and c"
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results/serve.json"))
    args = parser.parse_args()

    setup = prepare_home(args.home)
    folder = setup.home / "bench"
    bodies = write_bodies(setup, folder)
    script: Path | None = None
    if shutil.which("wrk"):
        script = folder / "post.lua"
        script.write_text(WRK_SCRIPT)
    else:
        print("wrk not found: the Python client drives the load", file=sys.stderr)
    if args.profile_only:
        if script is None:
            raise SystemExit("--profile-only needs wrk")
        out = profile_store_path(setup, bodies, args.seconds, script, folder)
        print(out.read_text()[:6000])
        return

    if args.log_only:
        log_only(setup, bodies, args, script)
        return
    ours_port, mlflow_port, bare_port = free_port(), free_port(), free_port()
    ours, mlflow_server = start_trademl(setup, ours_port), start_mlflow(setup, mlflow_port)
    unlogged_port = free_port()
    unlogged = start_trademl(setup, unlogged_port, log=False)
    bare: subprocess.Popen[bytes] | None = None
    results: dict[str, Any] = {}
    table: dict[str, dict[str, dict[str, Any]]] = {}
    try:
        results["startup_s"] = {
            "trademl": wait_http(f"http://127.0.0.1:{ours_port}/ready", ours),
            "mlflow": wait_http(f"http://127.0.0.1:{mlflow_port}/ping", mlflow_server),
        }
        wait_http(f"http://127.0.0.1:{unlogged_port}/ready", unlogged)
        unlogged_url = f"http://127.0.0.1:{unlogged_port}{PREDICT_PATH}"
        ours_url = f"http://127.0.0.1:{ours_port}{PREDICT_PATH}"
        mlflow_url = f"http://127.0.0.1:{mlflow_port}/invocations"
        answer = httpx.post(ours_url, content=bodies.store.read_bytes(), timeout=60).content
        bare = start_bare(setup, bare_port, folder, answer)
        wait_http(f"http://127.0.0.1:{bare_port}/ping", bare)
        targets = {
            "trademl (store, cached per bar)": (ours_url, bodies.store),
            "trademl (candles in body)": (ours_url, bodies.candles),
            UNLOGGED_STORE: (unlogged_url, bodies.store),
            UNLOGGED_CANDLES: (unlogged_url, bodies.candles),
            "mlflow models serve (candles)": (mlflow_url, bodies.mlflow),
            BARE_LABEL: (f"http://127.0.0.1:{bare_port}{PREDICT_PATH}", bodies.store),
        }
        for url, body in targets.values():
            check_answers(url, body)
        for label, (url, body) in targets.items():
            table[label] = {}
            for c in CONCURRENCY:
                print(f"{label}, concurrency {c} ...", file=sys.stderr, flush=True)
                table[label][str(c)] = measure(url, body, c, args.seconds, script)
        results["prediction_log_pairs"] = paired_log_cost(
            setup,
            {"logged": (ours_url, ours.pid), "unlogged": (unlogged_url, unlogged.pid)},
            bodies,
            args.seconds,
            script,
            args.log_repeats,
        )
    finally:
        for proc in (ours, mlflow_server, bare, unlogged):
            if proc is not None:
                stop(proc)
    results["load"] = table
    results["breakdown_ms"] = breakdown(setup, bodies)
    if args.profile and script is not None:
        results["profile"] = str(profile_store_path(setup, bodies, args.seconds, script, folder))
    results["prediction_log_cost"] = log_cost(results["prediction_log_pairs"])
    results["verdicts"] = verdicts(table, results["prediction_log_cost"])
    results["window_rows"] = bodies.window_rows
    results["model"] = {
        "name": setup.name,
        "version": setup.version,
        "warmup_bars": bodies.warmup_bars,
    }
    results["cpus"] = len(os.sched_getaffinity(0))
    results["load_average_after"] = os.getloadavg()

    print_table(table, bodies)
    for stage_kind, stages in results["breakdown_ms"].items():
        cells = ", ".join(f"{k} {v:.3f}" for k, v in stages.items())
        print(f"one {stage_kind} request in process (median ms): {cells}")
    print_log_cost(results)
    for name, met in results["verdicts"].items():
        print(f"{'met ' if met else 'MISS'}  {name}")
    if "profile" in results:
        print(f"yappi profile of the store path: {results['profile']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
