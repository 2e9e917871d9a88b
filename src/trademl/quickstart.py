"""``trademl quickstart``: candles in, a validated, backtested, registered and served model out.

The stages a newcomer runs first, in order: ingest (the Binance public archives, or a local
file or folder), the standard features and labels, a purged walk-forward of the baselines and
a learned model, a backtest of its out-of-sample predictions with the deflated Sharpe ratio,
the MLflow run and registration through the gate, and the server's parity check. ``make
demo`` runs these stages (:func:`trademl.demo.run_demo`) and continues with monitoring.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from trademl.api import backtest, load_model
from trademl.api import train as run_training
from trademl.backtest.outcome import BacktestRun
from trademl.config import Settings
from trademl.data.candles import candle_index
from trademl.data.gaps import GapReport, gap_report
from trademl.data.ingest import (
    ImportResult,
    candle_files,
    import_path,
    ingest,
    open_default_store,
    read_series,
)
from trademl.data.sources.files import FileName, infer_name
from trademl.errors import ConfigError, SourceError
from trademl.features import FeatureCache, build_features, build_labels
from trademl.features.horizons import HORIZON_NAMES
from trademl.run_outputs import RunResult

FEATURE_SET = "standard"
# The training span: the last year of 1h bars (any timeframe: the same number of bars, so the
# run takes the same time); the download covers it and the features' warm-up.
TRAIN_BARS = 8760
DOWNLOAD_DAYS = 400
# The last stored bars replayed one at a time through the served computation (a few seconds).
REPLAY_BARS = 48
STAGES = ("ingest", "features and labels", "training", "backtest", "registry and parity")

Say = Callable[[str], None]


@dataclass(frozen=True)
class QuickstartResult:
    """What the quickstart ingested, built, trained, backtested and checked, and where."""

    origin: str
    symbol: str
    timeframe: str
    store_url: str
    imported: ImportResult
    candles: pd.DataFrame
    gaps: GapReport
    features: pd.DataFrame
    features_seconds: float
    labels: pd.DataFrame
    training: RunResult | None = None
    backtest: BacktestRun | None = None
    parity: Any = None  # serving.parity.ParityReport
    # The run folder's pipeline (loaded without MLflow) predicts what the registered one does.
    folder_matches_registry: bool | None = None
    stage_seconds: dict[str, float] = field(default_factory=dict)


def run_config(
    settings: Settings,
    symbol: str,
    timeframe: str,
    span: tuple[str, str],
    *,
    output: Path,
    deep: bool = False,
) -> dict[str, Any]:
    """The quickstart's training run: examples/btc_1h.yaml on ``symbol`` over ``span``.

    Parameters
    ----------
    settings : Settings
        Unused today; the signature every run-config builder shares.
    symbol, timeframe : str
        The stored series.
    span : tuple of str
        ``(start, end)``, ISO times, end exclusive.
    output : Path
        The run folder.
    deep : bool
        Add a small GRU beside the LightGBM (needs the ``deep`` extra).

    Returns
    -------
    dict
        A run config (see :class:`trademl.config.RunConfig`).
    """
    del settings
    models: list[dict[str, Any]] = [
        {
            "kind": "lgbm",
            "params": {
                "n_estimators": 300,
                "learning_rate": 0.03,
                "num_leaves": 15,
                "min_child_samples": 200,
            },
        }
    ]
    if deep:
        # A deep kind under the same folds and in the same report.
        models.append({"kind": "gru", "params": {"hidden": 16, "epochs": 5, "seq_len": 24}})
    return {
        "data": {"symbol": symbol, "timeframe": timeframe, "start": span[0], "end": span[1]},
        "features": FEATURE_SET,
        "labels": {
            "kinds": ["direction", "max_high", "min_low"],
            "horizons": ["intraday", "swing"],
        },
        "models": models,
        "validation": {
            "kind": "walk_forward",
            "params": {"test_size": 500, "n_splits": 8, "min_train_size": 3500},
        },
        "uncertainty": {"alpha": 0.1, "intervals": "conformal", "calibration": "sigmoid"},
        # The gate asks what the product promises: a better range forecast than the HAR
        # volatility baseline, out of sample, with intervals that cover.
        "registry": {
            "gate": {
                "target": "min_low",
                "metric": "r2",
                "horizon": "intraday",
                "coverage_tolerance": 0.05,
            }
        },
        "output": str(output),
        "seed": 0,
    }


def backtest_config(run: Path, output: Path) -> dict[str, Any]:
    """The max/min strategy on the LightGBM intraday predictions, after 10 + 5 bps a side;
    the grid makes the deflated Sharpe ratio count every configuration tried, and gives PBO."""
    return {
        "run": str(run),
        "strategy": {
            "kind": "maxmin",
            "model": "lgbm",
            "horizon": "intraday",
            "params": {"max_bars": 6},
        },
        "costs": {"fee_bps": 10, "slippage_bps": 5},
        "grid": {"reward_risk": [1.0, 1.5, 2.0, 3.0], "min_confidence": [0.0, 0.1]},
        "output": str(output),
    }


def folder_name(symbol: str, timeframe: str) -> str:
    """A run folder's name for a series: ``BTC/USDT`` at 1h is ``BTCUSDT_1h``.

    >>> folder_name("BTC/USDT", "1h")
    'BTCUSDT_1h'
    """
    return re.sub(r"[^A-Za-z0-9_.-]", "", f"{symbol}_{timeframe}")


def ingest_series(
    settings: Settings,
    source: str | Path,
    symbol: str | None,
    timeframe: str | None,
    download_start: pd.Timestamp | None = None,
) -> tuple[str, ImportResult, str, str]:
    """Store the candles of ``source`` (``binance`` or a local file or folder).

    Returns
    -------
    tuple
        The origin as printed, the import result of the series, its symbol and timeframe.

    Raises
    ------
    SourceError
        The Binance archives cannot be reached (the message suggests ``--source PATH``).
    ConfigError
        No candle file there for the series (see :func:`local_file`).
    """
    if str(source) != "binance":
        path, symbol, timeframe = local_file(Path(source).expanduser(), symbol, timeframe)
        with open_default_store(settings) as store:
            imported = import_path(path, store, symbol=symbol, timeframe=timeframe)[0]
        return str(path), imported, symbol, timeframe
    with open_default_store(settings) as store:
        symbol, timeframe = symbol or "BTCUSDT", timeframe or "1h"
        start = download_start or pd.Timestamp.now(tz="UTC").floor("D") - pd.Timedelta(
            days=DOWNLOAD_DAYS
        )
        try:
            imported = ingest(
                "binance", store, settings, symbol=symbol, timeframe=timeframe, start=start
            )
        except SourceError as error:
            raise SourceError(
                f"{error}\nThe Binance public archives ({settings.binance_data_url}) cannot be "
                "reached: offline, run the quickstart on local candles instead: "
                "trademl quickstart --source PATH (a .csv, .csv.gz or .parquet file named "
                "SYMBOL_TIMEFRAME, or a folder of them)"
            ) from error
        return "binance public archives", imported, symbol, timeframe


def local_file(path: Path, symbol: str | None, timeframe: str | None) -> tuple[Path, str, str]:
    """The candle file of ``path`` (a file, or the ``SYMBOL_TIMEFRAME`` file of a folder),
    with its symbol and timeframe (given, else from the file's name).

    Raises
    ------
    ConfigError
        No such file, or a name that says neither and no ``--symbol`` / ``--timeframe``.
    """
    if path.is_dir():
        symbol, timeframe = symbol or "BTCUSDT", timeframe or "1h"
        wanted = FileName(re.sub(r"[^A-Za-z0-9_.-]", "", symbol), timeframe)
        files = [f for f in candle_files(path) if infer_name(f) == wanted]
        if not files:
            raise ConfigError(
                f"--source {path}: no {wanted.symbol}_{timeframe} candle file (.csv, .csv.gz, "
                ".parquet) in this folder; pass --symbol and --timeframe, or the file itself"
            )
        return files[0], symbol, timeframe
    if not path.is_file():
        raise ConfigError(f"--source {path}: no such file or folder (or 'binance')")
    named = infer_name(path)
    symbol = symbol or (named.symbol if named else None)
    timeframe = timeframe or (named.timeframe if named else None)
    if symbol is None or timeframe is None:
        raise ConfigError(
            f"--source {path}: the name does not read SYMBOL_TIMEFRAME (e.g. BTCUSDT_1h.csv); "
            "pass --symbol and --timeframe"
        )
    return path, symbol, timeframe


def run_quickstart(
    settings: Settings,
    *,
    source: str | Path = "binance",
    symbol: str | None = None,
    timeframe: str | None = None,
    span: tuple[str, str] | None = None,
    deep: bool = False,
    train: bool = True,
    output: Path | None = None,
    download_start: pd.Timestamp | None = None,
    say: Say | None = None,
) -> QuickstartResult:
    """Run the quickstart's stages on one series; see the module docstring.

    Parameters
    ----------
    settings : Settings
        Home, store and tracking; with tracking off nothing is registered or replayed.
    source : str or Path
        ``binance`` (the public archives, from ``download_start``, default 400 days back) or a
        local file or folder of candles.
    symbol, timeframe : str or None
        The series (default: the file's own; BTCUSDT 1h from Binance).
    span : tuple of str or None
        The training span (start, end); default the last :data:`TRAIN_BARS` stored bars.
    deep : bool
        Train a small GRU beside the LightGBM (the ``deep`` extra).
    train : bool
        Stop after features and labels.
    output : Path or None
        The run folder (default ``runs/{SYMBOL}_{timeframe}_quickstart`` under home); the
        backtest writes beside it (``..._backtest``).
    download_start : Timestamp or None
        The first bar downloaded from Binance.
    say : callable or None
        Called with each stage's name as it starts (the CLI prints it).

    Returns
    -------
    QuickstartResult
        Every stage's output.
    """
    announce = say or (lambda _: None)
    seconds: dict[str, float] = {}
    clock = time.perf_counter()

    def stage(index: int) -> None:
        nonlocal clock
        now = time.perf_counter()
        if index > 0:
            seconds[STAGES[index - 1]] = now - clock
        clock = now
        if index < len(STAGES):
            announce(f"[{index + 1}/{len(STAGES)}] {STAGES[index]}")

    stage(0)
    origin, imported, symbol, timeframe = ingest_series(
        settings, source, symbol, timeframe, download_start
    )
    with open_default_store(settings) as store:
        candles = read_series(store, symbol, timeframe)
    gaps = gap_report(candle_index(candles), timeframe)
    stage(1)
    started = time.perf_counter()
    cache = FeatureCache(settings.cache_dir / "features")
    features = build_features(candles, FEATURE_SET, warmup="drop", cache=cache)
    features_seconds = time.perf_counter() - started
    specs = [
        {"kind": kind, "horizon": horizon}
        for horizon in HORIZON_NAMES
        for kind in ("direction", "max_high", "min_low")
    ]
    labels = build_labels(candles, specs)
    common = (origin, symbol, timeframe, settings.market_store_url, imported, candles, gaps)
    if not train:
        return QuickstartResult(*common, features, features_seconds, labels)
    stage(2)
    folder = output or settings.home / "runs" / f"{folder_name(symbol, timeframe)}_quickstart"
    if span is None:
        first = candles.index[max(0, len(candles) - TRAIN_BARS)]
        span = (first.isoformat(), (candles.index[-1] + pd.Timedelta(seconds=1)).isoformat())
    config = run_config(settings, symbol, timeframe, span, output=folder, deep=deep)
    if output is None:
        config["registry"]["name"] = f"{folder_name(symbol, timeframe)}_quickstart"
    training = run_training(config, settings=settings)
    stage(3)
    trades = backtest(
        backtest_config(training.output, folder.with_name(f"{folder.name}_backtest")),
        settings=settings,
    )
    stage(4)
    parity, same = _parity(settings, training, candles)
    stage(5)
    return QuickstartResult(
        *common, features, features_seconds, labels, training, trades, parity, same, seconds
    )


def _parity(
    settings: Settings, training: RunResult, candles: pd.DataFrame
) -> tuple[Any, bool | None]:
    """The registered version, as the server loads it, replayed over the last stored bars;
    and the run folder's own pipeline against it on the last bar."""
    if training.model_name is None or training.model_version is None:
        return None, None
    # Serving and tracking are outer layers: imported once something was registered.
    from trademl.serving.parity import replay_parity
    from trademl.tracking.pipeline import load_pipeline

    pipeline, _ = load_pipeline(training.model_name, training.model_version, settings)
    parity = replay_parity(pipeline, candles, REPLAY_BARS)
    folder = load_model(training.output)
    same = bool(folder.predict_last(candles).values == pipeline.predict_last(candles).values)
    return parity, same
