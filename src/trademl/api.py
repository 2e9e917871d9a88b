"""The Python API: candles → features → a validated, recorded pipeline model → backtest → served.

Everything the CLI does, from Python, with the same functions underneath; ``import trademl``
loads none of this until a name is used (see :mod:`trademl`). Tracking is the outer layer:
``track=None`` records in MLflow when ``Settings.tracking`` is on, ``track=False`` never.

>>> import trademl
>>> candles = trademl.read_candles("BTCUSDT_1h.csv")  # doctest: +SKIP
>>> result = trademl.train(config, candles=candles)  # doctest: +SKIP
>>> model = trademl.load_model(result.output)  # doctest: +SKIP
>>> model.predict_last(candles).values["6__high"]  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from trademl.backtest.config import BacktestConfig
from trademl.backtest.outcome import BacktestRun
from trademl.backtest.runner import backtest as run_backtest
from trademl.config import RunConfig, Settings, get_settings
from trademl.data.candles import with_meta
from trademl.data.ingest import open_default_store, read_series
from trademl.data.sources.base import clip_range, parse_time
from trademl.data.sources.files import infer_name, read_candle_file
from trademl.data.timeframes import Timeframe
from trademl.errors import ConfigError
from trademl.extras import require
from trademl.features.engine import build_features as _build_features
from trademl.features.sets import FeatureSet
from trademl.pipeline import PipelineModel, load_run_pipeline
from trademl.run_outputs import RunResult
from trademl.workflow import run

if TYPE_CHECKING:
    from trademl.tracking.recorders import MLflowRecorder
    from trademl.tuning import TuneResult

__all__ = ["backtest", "build_features", "load_model", "read_candles", "train", "tune"]

REGISTRY_SCHEME = "models:/"


def read_candles(
    path: str | Path | None = None,
    *,
    symbol: str | None = None,
    timeframe: str | None = None,
    start: str | None = None,
    end: str | None = None,
    settings: Settings | None = None,
) -> pd.DataFrame:
    """Candles from a file, or from the store.

    Parameters
    ----------
    path : str, Path or None
        A ``.csv``, ``.csv.gz`` or ``.parquet`` file of candles; its symbol and timeframe come
        from a ``SYMBOL_TIMEFRAME.csv`` name unless given. None: read ``symbol`` at
        ``timeframe`` from the store (``trademl data import`` or ``trademl data ingest`` put
        them there).
    symbol, timeframe : str or None
        The series; required when reading from the store.
    start, end : str or None
        ISO dates or times: ``start <= timestamp < end``.
    settings : Settings or None
        Where the store is; the process settings by default.

    Returns
    -------
    pandas.DataFrame
        A Candles frame: UTC ``timestamp`` index, float64 ``open, high, low, close, volume``,
        ``attrs`` naming the symbol and timeframe.

    Raises
    ------
    ConfigError
        The symbol or timeframe is neither given nor in the file name.
    DataValidationError
        The file breaks the Candles contract (the message names the row and the rule).
    NotFoundError
        The store holds no such series.
    """
    first, last = parse_time(start, argument="start"), parse_time(end, argument="end")
    if path is None:
        if symbol is None or timeframe is None:
            raise ConfigError("read_candles: give a file path, or a symbol and a timeframe")
        with open_default_store(settings or get_settings()) as store:
            candles = read_series(store, symbol, timeframe, first, last)
        return with_meta(candles, symbol=symbol, timeframe=Timeframe.parse(timeframe).name)
    file = Path(path)
    inferred = infer_name(file)
    symbol = symbol or (inferred.symbol if inferred else None)
    timeframe = timeframe or (inferred.timeframe if inferred else None)
    if symbol is None or timeframe is None:
        raise ConfigError(
            f"read_candles: cannot tell the symbol and timeframe of {file.name}; name it "
            "SYMBOL_TIMEFRAME.csv or pass symbol= and timeframe="
        )
    candles = clip_range(read_candle_file(file, symbol=symbol, timeframe=timeframe), first, last)
    return with_meta(candles, symbol=symbol, timeframe=Timeframe.parse(timeframe).name)


def build_features(
    candles: pd.DataFrame, feature_set: FeatureSet | str = "standard", *, drop_warmup: bool = False
) -> pd.DataFrame:
    """Causal features of ``candles``: a preset name, a YAML path or a :class:`FeatureSet`.

    The value at bar t reads bars up to t only, and past the warm-up it does not depend on
    where the history starts. ``drop_warmup`` removes the leading rows the set cannot fill.
    """
    return _build_features(candles, feature_set, warmup="drop" if drop_warmup else "keep")


def _recorder(settings: Settings, track: bool | None, trigger: str) -> MLflowRecorder | None:
    if track is False or (track is None and not settings.tracking):
        return None
    # The tracking layer wraps the core; it is imported only when something is recorded.
    require("mlflow", "tracking", "recording runs (TRADEML_TRACKING=true; false turns it off)")
    from trademl.tracking.recorders import MLflowRecorder

    return MLflowRecorder(settings, trigger)


def train(
    config: RunConfig | str | Path | dict[str, Any],
    candles: pd.DataFrame | None = None,
    *,
    settings: Settings | None = None,
    track: bool | None = None,
    trigger: str = "manual",
    progress: Callable[[float, str], None] | None = None,
) -> RunResult:
    """Train and validate as ``config`` says (see :class:`trademl.config.RunConfig`).

    Parameters
    ----------
    config : RunConfig, str, Path or dict
        The run config, a YAML file of one, or its mapping.
    candles : pandas.DataFrame or None
        The candles to train on (one symbol); read from the store when None.
    settings : Settings or None
        Store, cache, home and tracking backend; the process settings by default.
    track : bool or None
        Record the run in MLflow and register its pipeline model through the gate: None
        follows ``Settings.tracking``.
    trigger : str
        Why the run happens (manual, scheduled, drift, performance), tagged on the MLflow run.
    progress : callable or None
        ``progress(fraction, message)`` before each stage.

    Returns
    -------
    RunResult
        Out-of-sample folds and summary beside the baselines, the wide predictions, what
        serves each target, the output folder (with ``pipeline.pkl``), and the MLflow run and
        registered version when tracked.
    """
    settings = settings or get_settings()
    return run(
        config,
        settings=settings,
        progress=progress,
        recorder=_recorder(settings, track, trigger),
        candles=candles,
    )


def backtest(
    config: BacktestConfig | str | Path | dict[str, Any],
    candles: pd.DataFrame | None = None,
    *,
    settings: Settings | None = None,
    track: bool | None = None,
) -> BacktestRun:
    """Backtest a training run's out-of-sample predictions (``run``) or train first
    (``train``), as :class:`trademl.backtest.config.BacktestConfig` says: trades, equity,
    metrics beside buy-and-hold with the deflated Sharpe ratio, and an HTML report.

    ``candles`` are the bars traded (the run's symbol); read from the store when None.
    Top-level, this is ``trademl.run_backtest`` (``trademl.backtest`` is the package).
    """
    settings = settings or get_settings()
    return run_backtest(
        config,
        settings=settings,
        recorder=_recorder(settings, track, "manual"),
        candles=candles,
    )


def tune(
    config: RunConfig | str | Path | dict[str, Any],
    *,
    trials: int | None = None,
    time_limit: float | None = None,
    automl: bool | None = None,
    kinds: Sequence[str] | None = None,
    storage: str | None = None,
    settings: Settings | None = None,
    track: bool | None = None,
) -> TuneResult:
    """Search hyperparameters on the config's purged walk-forward; arguments left None come
    from the config's ``tuning`` section. See :func:`trademl.tuning.tune`."""
    from trademl.tuning import tune as run_tuning

    settings = settings or get_settings()
    return run_tuning(
        config,
        trials=trials,
        time_limit=time_limit,
        automl=automl,
        kinds=kinds,
        storage=storage,
        settings=settings,
        recorder=_recorder(settings, track, "manual"),
    )


def load_model(uri: str | Path, *, settings: Settings | None = None) -> PipelineModel:
    """The pipeline model at ``uri``: what a run validated and what the server serves.

    Parameters
    ----------
    uri : str or Path
        A training run's output folder (its ``pipeline.pkl``, checked against the digest in
        ``run.json``), or a registry URI ``models:/NAME/VERSION`` or ``models:/NAME@ALIAS``
        (``champion``, ``challenger``).
    settings : Settings or None
        The tracking backend of a registry URI; the process settings by default.

    Raises
    ------
    ModelNotFoundError
        No pipeline in the folder, or no such registered model, version or alias.
    ModelFormatError
        The file does not match its run's digest or another feature contract trained it.
    """
    text = str(uri)
    if not text.startswith(REGISTRY_SCHEME):
        return load_run_pipeline(Path(text))
    name, version = _registry_reference(text[len(REGISTRY_SCHEME) :])
    from trademl.tracking.pipeline import load_pipeline

    pipeline, _ = load_pipeline(name, version, settings)
    return pipeline


def _registry_reference(reference: str) -> tuple[str, str | int]:
    """``NAME@ALIAS`` or ``NAME/VERSION`` → (name, alias or version number)."""
    if "@" in reference:
        name, _, alias = reference.partition("@")
        if name and alias:
            return name, alias
    else:
        name, _, version = reference.partition("/")
        if name and version.isdigit():
            return name, int(version)
    raise ConfigError(
        f"load_model: {REGISTRY_SCHEME}{reference} is not a registry URI; use "
        f"{REGISTRY_SCHEME}NAME/VERSION or {REGISTRY_SCHEME}NAME@ALIAS"
    )
