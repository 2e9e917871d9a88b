"""``run(config)``: the one library entry point of a training run — candles from the store,
causal features and labels, purged out-of-sample validation of every model beside the naive
baselines, metrics, and the final max/min predictor, all written under ``output``.

The CLI (``trademl train``), the API and job workers call this; no logic lives in them.
"""

from __future__ import annotations

import json
import pickle
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from loguru import logger

from trademl import __version__
from trademl.atomic import atomic_path
from trademl.config import RunConfig, Settings, get_settings, load_run_config
from trademl.data.ingest import open_default_store, read_series
from trademl.data.sources.base import parse_time
from trademl.data.timeframes import Timeframe
from trademl.errors import ConfigError, DataValidationError
from trademl.features import (
    FeatureCache,
    build_features,
    build_labels,
    get_indicator,
    load_feature_set,
)
from trademl.features.cache import data_hash
from trademl.features.horizons import resolve_horizon
from trademl.features.indicators import Bars
from trademl.features.sets import FeatureSet
from trademl.models.aci import AdaptiveConformal
from trademl.models.base import MODELS, BaseModel, load_all_models, make_model
from trademl.models.maxmin import MaxMinPredictor
from trademl.models.naive import BASELINE_PREFIX
from trademl.models.residual import ResidualRegressor
from trademl.models.stacking import on_baseline
from trademl.models.uncertainty import (
    CalibratedClassifier,
    ConformalQuantileRegressor,
    SplitConformalRegressor,
)
from trademl.paths import PathPolicy, output_lock, resolve_run_paths
from trademl.validation.coverage import rolling_coverage, worst_window
from trademl.validation.metrics import classification_metrics, interval_coverage, regression_metrics
from trademl.validation.runner import Evaluation, evaluate
from trademl.validation.selection import TargetChoice, choose_sources
from trademl.validation.splitters import make_splitter

# The HAR baseline's trailing windows, as multiples of the horizon (short, medium, long), like
# the day/week/month of daily volatility forecasts.
HAR_WINDOW_MULTIPLES = (1, 4, 16)
# The long window stops here: beyond it the served window (the warm-up) would grow with the
# horizon for little gain.
HAR_MAX_WINDOW = 480
# Realised return volatility, realised range and the size of session gaps (overnight moves of
# stocks; about zero around the clock), each over a short, a medium and a long window.
HAR_ESTIMATORS = ("rv_close", "rv_parkinson", "rv_gap")
# The HAR columns whose mean scales normalised conformal intervals.
SCALE_PREFIXES = ("rv_close_", "rv_parkinson_")
# The bucket of the HAR baseline's seasonal profile (fitted on each training fold).
HAR_SEASONAL = "hour_of_week"
# Targets whose learned models start from the HAR baseline (unless `residual: false`).
RESIDUAL_TARGETS = ("max_high", "min_low")
# Regularised defaults for a residual booster: the residual is mostly noise, so few leaves,
# large leaves, column subsampling and L2 (the config's own params win).
RESIDUAL_DEFAULTS: dict[str, dict[str, Any]] = {
    "lgbm": {
        "num_leaves": 7,
        "min_child_samples": 300,
        "colsample_bytree": 0.5,
        "reg_lambda": 10.0,
    },
    "xgb": {"max_depth": 3, "min_child_weight": 50.0, "colsample_bytree": 0.5, "reg_lambda": 10.0},
}
# Kinds with a quantile task, usable for conformalised quantile regression; the baselines and
# other kinds get split-conformal intervals under `intervals: cqr`.
QUANTILE_KINDS = ("lgbm", "xgb")


@dataclass(frozen=True)
class RunResult:
    """What a run produced (also written under ``output``), and where MLflow recorded it
    (``run_id`` None when tracking is off; ``model_version`` None when not registered)."""

    output: Path
    folds: pd.DataFrame
    summary: pd.DataFrame
    predictions: pd.DataFrame
    data_hash: str
    seconds: float
    run_id: str | None = None
    model_name: str | None = None
    model_version: int | None = None
    alias: str | None = None
    registry_reason: str | None = None
    # "{kind}_{bars}" -> what serves the target and the tests that chose it.
    choices: dict[str, TargetChoice] = field(default_factory=dict)


def run(
    config: RunConfig | str | Path | dict[str, Any],
    *,
    settings: Settings | None = None,
    trigger: str = "manual",
    progress: Callable[[float, str], None] | None = None,
    paths: PathPolicy | None = None,
) -> RunResult:
    """Train and validate as ``config`` says; see :class:`trademl.config.RunConfig`.

    With tracking on (``Settings.tracking``, the default) the run is recorded in MLflow and
    its pipeline model registered; ``trigger`` (manual, scheduled, drift, performance) tags it,
    and non-manual runs go to the retraining experiment. ``progress(fraction, message)`` is
    called before each stage (data, each target's validation, the final fit, tracking); an
    exception it raises (a job being cancelled) stops the run there, nothing half-written.
    ``paths`` says where the config's feature-set file and ``output`` may be (a job's policy
    keeps them under ``TRADEML_HOME``); anything the user can reach by default. The output
    folder is held for the whole run: a second run naming it meanwhile fails at once.
    """
    cfg = config if isinstance(config, RunConfig) else load_run_config(config)
    cfg = resolve_run_paths(cfg, paths or PathPolicy.local())
    with output_lock(Path(cfg.output)):
        return _run(cfg, settings or get_settings(), trigger, progress)


def _run(
    cfg: RunConfig,
    settings: Settings,
    trigger: str,
    progress: Callable[[float, str], None] | None,
) -> RunResult:
    if cfg.data.panel:  # one model over many symbols' pooled rows
        from trademl.panel import run_panel

        return run_panel(cfg, settings, trigger, progress)
    report = progress or (lambda fraction, message: None)
    started = time.perf_counter()
    if settings.tracking:
        from trademl.tracking.training import preflight

        preflight(cfg, settings, trigger)  # an unreachable backend fails before training
    report(0.0, "features and labels")
    prepared = prepare(cfg, settings=settings)
    X, base_X, labels, horizons = prepared.X, prepared.baselines, prepared.labels, prepared.horizons

    records: list[dict[str, Any]] = []
    predictions: list[pd.DataFrame] = []
    served_alpha: dict[str, float] = {}
    # Stages: data, one per (horizon, target), the final fit; tracking ends it.
    stages = 2 + len(horizons) * len(cfg.labels.kinds)
    for name, bars in horizons.items():
        splitter = make_splitter(cfg.validation.kind, dict(cfg.validation.params), bars)
        for kind in cfg.labels.kinds:
            report((1 + len(predictions)) / stages, f"validating {kind} at {name} ({bars} bars)")
            evaluation = _evaluate_target(cfg, kind, bars, X, base_X, labels, splitter)
            records.extend(_fold_records(evaluation, kind, name, bars, cfg.uncertainty.alpha))
            predictions.append(_wide(evaluation, kind, bars))
            served_alpha.update(adaptive_levels(evaluation, kind, name))
    folds = pd.DataFrame.from_records(records)
    summary = _summary(predictions, folds, cfg, horizons)
    wide = _join(predictions)
    # Per served target: the primary model where it beat every baseline at the gate's level,
    # else the best baseline the served pipeline can compute; the final fit serves that. (The
    # gate's margin and min_rows judge promotion, not what a run serves.)
    choices = choose_sources(
        wide,
        model_name(cfg.models[0].kind, cfg.models[0].name),
        level=cfg.registry.gate.level,
        min_rows=1,
        servable=partial(_servable, list(X.columns)),
    )

    output = Path(cfg.output)
    report((stages - 1) / stages, "fitting the final models")
    final = _fit_final(cfg, X, labels, horizons, interval_alpha=served_alpha, choices=choices)
    _write_outputs(
        output,
        cfg,
        wide,
        folds,
        summary,
        final,
        prepared.data_hash,
        prepared.feature_set,
        prepared.candles,
    )
    seconds = time.perf_counter() - started
    logger.info("run written to {} in {:.1f}s", output, seconds)
    result = RunResult(output, folds, summary, wide, prepared.data_hash, seconds, choices=choices)
    return record_run(cfg, result, final, prepared, settings, trigger, report)


def record_run(
    cfg: RunConfig,
    result: RunResult,
    final: MaxMinPredictor,
    prepared: Prepared,
    settings: Settings,
    trigger: str,
    report: Callable[[float, str], None],
) -> RunResult:
    """``result`` as recorded in MLflow (run, registered version, alias) when tracking is on."""
    if not settings.tracking:
        return result
    from trademl.tracking.training import track_training

    report(1.0, "recording in MLflow")
    tracked = track_training(cfg, result, final, prepared, settings=settings, trigger=trigger)
    logger.info("MLflow run {} ({})", tracked.run_id, tracked.reason or "not registered")
    return replace(
        result,
        run_id=tracked.run_id,
        model_name=tracked.model_name,
        model_version=tracked.model_version,
        alias=tracked.alias,
        registry_reason=tracked.reason,
    )


@dataclass(frozen=True)
class Prepared:
    """The inputs of a run's validation, shared by :func:`run` and hyperparameter tuning.

    Attributes
    ----------
    X : pandas.DataFrame
        Causal features of the usable rows (after the warm-up, before the last horizon).
    baselines : pandas.DataFrame
        What the naive baselines read, on the same rows.
    labels : pandas.DataFrame
        Every label column ``{kind}_{bars}`` on the same rows.
    horizons : dict of str to int
        Horizon name (as written in the config) → bars.
    candles : pandas.DataFrame
        All the candles read from the store.
    data_hash : str
        Digest of the candles.
    fingerprint : str
        Fingerprint of the feature set.
    feature_set : FeatureSet
        The feature set the models read (the config's, plus the HAR columns that residual
        models start from): what the pipeline model serves.
    """

    X: pd.DataFrame
    baselines: pd.DataFrame
    labels: pd.DataFrame
    horizons: dict[str, int]
    candles: pd.DataFrame
    data_hash: str
    fingerprint: str
    feature_set: FeatureSet


def prepare(cfg: RunConfig, *, settings: Settings | None = None) -> Prepared:
    """Check ``cfg``, load its candles and build its features, labels and baseline inputs.

    Parameters
    ----------
    cfg : RunConfig
        The run config.
    settings : Settings or None
        Where the store and the feature cache live; the process settings by default.

    Returns
    -------
    Prepared
        Features, labels and baseline inputs on one shared row range.

    Raises
    ------
    ConfigError
        A model, splitter or validation kind of the config is invalid.
    DataValidationError
        Too few bars for the warm-up and the longest horizon.
    """
    settings = settings or get_settings()
    symbol = cfg.data.symbol
    if symbol is None:
        raise ConfigError(
            "data.symbols: this step takes one symbol (data.symbol); a panel is prepared by "
            "trademl.panel.prepare_panel and trained with trademl train"
        )
    timeframe = Timeframe.parse(cfg.data.timeframe)
    horizons = {str(h): resolve_horizon(h, timeframe.name) for h in cfg.labels.horizons}
    feature_set = load_feature_set(cfg.features)
    if set(cfg.labels.kinds) & set(RESIDUAL_TARGETS):
        # Residual models start from the HAR columns, intervals scale by them, and a target
        # where no learned model wins is served by the HAR baseline: the pipeline computes them.
        feature_set = with_har_features(feature_set, timeframe, horizons.values())
    _check_models(cfg)
    if cfg.validation.kind == "cpcv":
        # CPCV tests every bar on several paths; a training run reports one out-of-sample
        # prediction per bar. CPCV paths feed the overfitting statistics of backtests instead.
        raise ConfigError(
            "validation.kind: cpcv gives several predictions per bar (one per path) and is used "
            "for backtest overfitting statistics; train with walk_forward or purged_kfold"
        )
    for bars in horizons.values():
        make_splitter(cfg.validation.kind, dict(cfg.validation.params), bars)

    with open_default_store(settings) as store:
        candles = read_series(
            store,
            symbol,
            timeframe.name,
            parse_time(cfg.data.start, argument="data.start"),
            parse_time(cfg.data.end, argument="data.end"),
        )
    candles.attrs.update(symbol=symbol, timeframe=timeframe.name)
    digest = data_hash(candles, timeframe)
    logger.info("{} {}: {:,} bars, data hash {}", symbol, timeframe.name, len(candles), digest[:12])

    features = build_features(
        candles, feature_set, cache=FeatureCache(settings.cache_dir / "features")
    )
    specs = [
        {"kind": kind, "horizon": bars}
        for bars in horizons.values()
        for kind in ("direction", "max_high", "min_low", "forward_return")
    ]
    labels = (
        build_labels(candles, specs)
        if cfg.labels.dead_zone == 0
        else _labels_with_dead_zone(candles, specs, cfg.labels.dead_zone)
    )
    baseline_inputs = _baseline_inputs(candles, horizons.values())

    # One row range for every horizon, so test blocks (and the fold column) are shared.
    first = int(features.attrs["warmup_bars"])
    last = len(candles) - max(horizons.values())
    if last - first < 2:
        raise DataValidationError(
            f"{len(candles)} bars leave no rows after {first} warm-up bars and a {max(horizons.values())}-bar horizon",
            rule="too_few_bars",
        )
    rows = slice(first, last)
    return Prepared(
        X=features.iloc[rows],
        baselines=baseline_inputs.iloc[rows],
        labels=labels.iloc[rows],
        horizons=horizons,
        candles=candles,
        data_hash=digest,
        fingerprint=feature_set.fingerprint(),
        feature_set=feature_set,
    )


def with_har_features(feature_set: FeatureSet, timeframe: Timeframe, horizons: Any) -> FeatureSet:
    """``feature_set`` plus the HAR baseline's columns for ``horizons`` (bars), where missing.

    Residual models regress on them inside each fold, so the pipeline must compute them when
    serving too: they become part of the set (named ``{name}.har``).
    """
    present = set(feature_set.columns(timeframe))
    extra = [
        {"indicator": name, "params": {"window": window}}
        for name in HAR_ESTIMATORS
        for window in sorted({w for h in set(horizons) for w in har_windows(int(h))})
        if f"{name}_{window}" not in present
    ]
    if HAR_SEASONAL not in present:
        extra.append({"indicator": HAR_SEASONAL})
    if not extra:
        return feature_set
    definition = feature_set.model_dump(mode="json")
    definition["name"] = f"{feature_set.name}.har"
    definition["features"] = [*definition["features"], *extra]
    return FeatureSet.model_validate(definition)


# -- models ------------------------------------------------------------------------------------


def _check_models(cfg: RunConfig) -> None:
    names = [model_name(m.kind, m.name) for m in cfg.models]
    if len(set(names)) != len(names):
        raise ConfigError(f"models: names must be unique, got {names}; give each a 'name'")
    for position, spec in enumerate(cfg.models):
        try:
            load_all_models()
            make_model(spec.kind, _params(spec.kind, spec.params, "regression", cfg.seed))
        except ConfigError as error:
            raise ConfigError(f"models.{position}: {error}") from None


def model_name(kind: str, name: str | None) -> str:
    """The column name of a model in predictions and tables."""
    return name or kind


def _params(kind: str, params: dict[str, Any], task: str, seed: int) -> dict[str, Any]:
    """The config's params with the task, and the run's seed where the kind takes one."""
    merged = {**params, "task": task}
    if "random_state" in MODELS.get(kind).param_names():
        merged.setdefault("random_state", seed)
    return merged


def model_factory(
    kind: str,
    params: dict[str, Any],
    task: str,
    cfg: RunConfig,
    gap: int,
    residual_features: list[str] | None = None,
    scale_features: list[str] | None = None,
) -> Callable[[], BaseModel]:
    """A builder of fresh models; ``gap`` (the label horizon) separates a model's fitting rows
    from the rows that stop its boosting or calibrate it, whose labels would overlap. With
    ``residual_features`` the model learns what the HAR baseline on those columns leaves; with
    ``scale_features`` and ``intervals: normalized`` its conformal scores are divided by their
    per-row mean (:func:`interval_scale`)."""
    unc = cfg.uncertainty
    if residual_features and kind == "stacking":
        # A stack learns residuals in its base models and weighs the baseline beside them.
        params = {
            **params,
            "base_models": on_baseline(params.get("base_models"), residual_features),
        }
        residual_features = None
    if residual_features:
        params = {**RESIDUAL_DEFAULTS.get(kind, {}), **params}
    merged = _params(kind, params, task, cfg.seed)
    accepted = MODELS.get(kind).param_names()
    for name in ("validation_gap", "horizon_bars"):
        if name in accepted:
            merged.setdefault(name, gap)

    def residual(model: BaseModel) -> BaseModel:
        if not residual_features:
            return model
        return ResidualRegressor(model, list(residual_features), seasonal_feature=HAR_SEASONAL)

    def build() -> BaseModel:
        fraction = unc.calibration_fraction
        if task == "regression" and unc.intervals == "cqr" and kind in QUANTILE_KINDS:
            # CQR: quantile models at alpha/2 and 1 - alpha/2, their band widened by the
            # conformity scores of the calibration tail; the point forecast is its middle.
            lower, upper = (
                residual(make_model(kind, {**merged, "task": "quantile", "alpha": q}))
                for q in (unc.alpha / 2, 1 - unc.alpha / 2)
            )
            return ConformalQuantileRegressor(lower, upper, calibration_fraction=fraction, gap=gap)
        model = make_model(kind, merged)
        if task == "regression":
            model = residual(model)
        if task == "classification" and unc.calibration != "none":
            return CalibratedClassifier(
                model, method=unc.calibration, calibration_fraction=fraction, gap=gap
            )
        if task == "regression" and unc.intervals != "none":
            scale = (
                list(scale_features) if scale_features and unc.intervals == "normalized" else None
            )
            return SplitConformalRegressor(
                model, calibration_fraction=fraction, gap=gap, scale_features=scale
            )
        return model

    return build


def _baselines(kind: str, bars: int) -> dict[str, tuple[str, dict[str, Any]]]:
    if kind == "direction":
        return {f"{BASELINE_PREFIX}prior": ("naive", {"strategy": "prior"})}
    baselines: dict[str, tuple[str, dict[str, Any]]] = {
        f"{BASELINE_PREFIX}mean": ("naive", {"strategy": "mean"})
    }
    if kind in ("max_high", "min_low"):
        baselines[f"{BASELINE_PREFIX}volatility"] = (
            "naive",
            {
                "strategy": "volatility",
                "volatility_features": har_columns(bars),
                "seasonal_feature": HAR_SEASONAL,
            },
        )
    else:
        baselines[f"{BASELINE_PREFIX}zero"] = ("naive", {"strategy": "zero"})
    return baselines


def _evaluate_target(
    cfg: RunConfig,
    kind: str,
    bars: int,
    X: pd.DataFrame,
    base_X: pd.DataFrame,
    labels: pd.DataFrame,
    splitter: Any,
    *,
    gap: int | None = None,
) -> Evaluation:
    # gap: rows between a model's fitting rows and its internal hold-out (default: the
    # horizon; a panel's rows hold several symbols per bar).
    gap = bars if gap is None else gap
    task, y, keep = target(labels, kind, bars)
    factories: dict[str, Callable[[], BaseModel]] = {}
    inputs: dict[str, pd.DataFrame] = {}
    for spec in cfg.models:
        name = model_name(spec.kind, spec.name)
        on_baseline = har_columns(bars) if spec.residual and kind in RESIDUAL_TARGETS else None
        factories[name] = model_factory(
            spec.kind,
            dict(spec.params),
            task,
            cfg,
            gap,
            residual_features=on_baseline,
            scale_features=interval_scale(X, bars),
        )
        inputs[name] = X
    for name, (naive_kind, params) in _baselines(kind, bars).items():
        factories[name] = model_factory(
            naive_kind, params, task, cfg, gap, scale_features=interval_scale(base_X, bars)
        )
        inputs[name] = base_X
    n_folds = splitter.get_n_splits(len(y))
    unc = cfg.uncertainty
    adaptive: Callable[[], AdaptiveConformal] | None = None
    if task == "regression" and unc.adaptive and unc.intervals != "none":
        # Labels mature `gap` rows later (a panel holds several symbols' rows per bar).
        adaptive = partial(AdaptiveConformal, unc.alpha, unc.adaptive_rate, horizon=gap)
    return evaluate(
        factories,
        inputs,
        y,
        splitter.split(len(y)),
        task=task,
        alpha=cfg.uncertainty.alpha if task == "regression" else None,
        keep=keep,
        description=f"{kind}_{bars} folds",
        n_folds=n_folds,
        adaptive=adaptive,
    )


def interval_scale(frame: pd.DataFrame, bars: int) -> list[str] | None:
    """The columns whose per-row mean scales normalised conformal scores at ``bars``: the HAR
    baseline's trailing realised volatility and range (not its gap columns, about zero around
    the clock), when ``frame`` holds them all."""
    columns = [c for c in har_columns(bars) if c.startswith(SCALE_PREFIXES)]
    return columns if all(c in frame.columns for c in columns) else None


def adaptive_levels(evaluation: Evaluation, kind: str, horizon: str) -> dict[str, float]:
    """Every model's adaptive level at the end of its out-of-sample path, keyed
    ``{horizon}__{kind}__{model}``: the final fit serves the level of the forecast that
    serves the target (the learned model or the baseline the gate chose)."""
    return {f"{horizon}__{kind}__{m}": level for m, level in evaluation.adaptive_alpha.items()}


def target(labels: pd.DataFrame, kind: str, bars: int) -> tuple[str, pd.Series, np.ndarray | None]:
    """The task, target and usable-row mask of one label kind at one horizon.

    Parameters
    ----------
    labels : pandas.DataFrame
        Label columns ``{kind}_{bars}``.
    kind : str
        ``direction`` (classification of up moves; rows inside the dead zone, labelled 0, are
        left out) or a regression label kind.
    bars : int
        The horizon in bars.

    Returns
    -------
    tuple of (str, pandas.Series, numpy.ndarray or None)
        ``"classification"`` or ``"regression"``, the target, and the mask of usable rows
        (None: every row).
    """
    column = f"{kind}_{bars}"
    if kind == "direction":
        raw = labels[column]
        return "classification", (raw > 0).astype(np.float64), (raw != 0).to_numpy()
    return "regression", labels[column], None


# -- inputs ------------------------------------------------------------------------------------


def _labels_with_dead_zone(
    candles: pd.DataFrame, specs: list[dict[str, Any]], dead_zone: float
) -> pd.DataFrame:
    return build_labels(
        candles, [{**s, "dead_zone": dead_zone} if s["kind"] == "direction" else s for s in specs]
    )


def har_windows(bars: int) -> list[int]:
    """The HAR baseline's trailing windows for a horizon of ``bars`` (each at least 2)."""
    windows = [min(HAR_MAX_WINDOW, max(2, multiple * bars)) for multiple in HAR_WINDOW_MULTIPLES]
    return sorted(set(windows))


def har_columns(bars: int) -> list[str]:
    """The baseline-input columns the HAR baseline of a ``bars`` horizon regresses on."""
    return [f"{name}_{window}" for name in HAR_ESTIMATORS for window in har_windows(bars)]


def _baseline_inputs(candles: pd.DataFrame, horizons: Any) -> pd.DataFrame:
    """What the naive baselines read: trailing realised volatility and range over the HAR
    windows of every horizon (and past returns)."""
    bars = Bars.from_candles(candles)
    columns: dict[str, np.ndarray] = {}
    windows = sorted({w for h in set(horizons) for w in har_windows(int(h))})
    for name in HAR_ESTIMATORS:
        estimator = get_indicator(name)
        for window in windows:
            columns.update(estimator.run(bars, estimator.resolve({"window": window})))
    returns = get_indicator("log_return")
    for h in sorted(set(horizons)):
        columns.update(returns.run(bars, returns.resolve({"n": h})))
    seasonal = get_indicator(HAR_SEASONAL)
    columns.update(seasonal.run(bars, seasonal.resolve({})))
    return pd.DataFrame(columns, index=candles.index)


# -- metrics -----------------------------------------------------------------------------------


def _fold_records(
    evaluation: Evaluation, kind: str, horizon: str, bars: int, alpha: float
) -> list[dict[str, Any]]:
    records = []
    for fold, part in evaluation.predictions.groupby("fold"):
        for name in evaluation.models:
            row: dict[str, Any] = {
                "fold": int(str(fold)),
                "target": kind,
                "horizon": horizon,
                "horizon_bars": bars,
                "model": name,
                "baseline": name.startswith(BASELINE_PREFIX),
                "test_start": part.index[0],
                "test_end": part.index[-1],
            }
            row.update(_metrics(part, name, evaluation.task, bars))
            records.append(row)
    return records


def _metrics(
    part: pd.DataFrame,
    name: str,
    task: str,
    bars: int = 1,
    *,
    window: int | None = None,
    nominal: float | None = None,
) -> dict[str, float]:
    # Intervals of accuracy, R², IC and coverage resample blocks of rows (labels `bars` ahead
    # overlap); with `window`, the rolling coverage's window farthest from `nominal`.
    y, prediction = part["target"].to_numpy(), part[name].to_numpy()
    if task == "classification":
        return classification_metrics(y, prediction, horizon=bars)
    values = regression_metrics(y, prediction, horizon=bars)
    if f"{name}__lo" in part:
        lower, upper = part[f"{name}__lo"].to_numpy(), part[f"{name}__hi"].to_numpy()
        coverage = interval_coverage(y, lower, upper, horizon=bars)
        values.update(
            {
                "coverage": coverage["coverage"],
                "coverage_lo": coverage["coverage_lo"],
                "coverage_hi": coverage["coverage_hi"],
                "interval_width": coverage["mean_width"],
            }
        )
        if window is not None and nominal is not None:
            rolling = rolling_coverage(y, lower, upper, window)
            values["coverage_worst_window"] = worst_window(rolling, nominal)
    if f"{name}__mclo" in part:
        mc = interval_coverage(
            y, part[f"{name}__mclo"].to_numpy(), part[f"{name}__mchi"].to_numpy()
        )
        values.update(
            {"coverage_mc_dropout": mc["coverage"], "interval_width_mc_dropout": mc["mean_width"]}
        )
    return values


def _summary(
    predictions: list[pd.DataFrame], folds: pd.DataFrame, cfg: RunConfig, horizons: dict[str, int]
) -> pd.DataFrame:
    """Pooled out-of-sample metrics over every test row, per target, horizon and model."""
    rows = []
    for frame in predictions:
        kind, bars = frame.attrs["target"], frame.attrs["horizon_bars"]
        horizon = next(name for name, b in horizons.items() if b == bars)
        task = "classification" if kind == "direction" else "regression"
        target_column = f"target__{kind}_{bars}"
        for name in frame.attrs["models"]:
            part = pd.DataFrame(
                {"target": frame[target_column], name: frame[f"{name}__{kind}_{bars}"]}
            )
            for bound in ("lo", "hi", "mclo", "mchi"):
                column = f"{name}__{kind}_{bars}__{bound}"
                if column in frame:
                    part[f"{name}__{bound}"] = frame[column]
            part = part.dropna(subset=["target"])
            row = {
                "target": kind,
                "horizon": horizon,
                "horizon_bars": bars,
                "model": name,
                "baseline": name.startswith(BASELINE_PREFIX),
                "folds": int(frame["fold"].nunique()),
            }
            row.update(
                _metrics(
                    part,
                    name,
                    task,
                    bars,
                    window=cfg.uncertainty.coverage_window,
                    nominal=1.0 - cfg.uncertainty.alpha,
                )
            )
            rows.append(row)
    summary = pd.DataFrame.from_records(rows)
    summary.attrs["alpha"] = cfg.uncertainty.alpha
    return summary


def _wide(evaluation: Evaluation, kind: str, bars: int) -> pd.DataFrame:
    suffix = f"{kind}_{bars}"
    frame = evaluation.predictions.rename(
        columns={
            c: (f"target__{suffix}" if c == "target" else c if c == "fold" else _rename(c, suffix))
            for c in evaluation.predictions.columns
        }
    )
    frame.attrs.update(target=kind, horizon_bars=bars, models=evaluation.models)
    return frame


def _rename(column: str, suffix: str) -> str:
    name, _, bound = column.partition("__")
    return f"{name}__{suffix}" + (f"__{bound}" if bound else "")


def _join(frames: list[pd.DataFrame]) -> pd.DataFrame:
    joined = pd.concat([f.drop(columns="fold") for f in frames], axis=1).sort_index()
    folds = pd.concat([f["fold"] for f in frames], axis=1).max(axis=1)
    joined.insert(0, "fold", folds.astype("int64"))
    joined.index.name = "timestamp"
    return joined


# -- final model and outputs -------------------------------------------------------------------


def _fit_final(
    cfg: RunConfig,
    X: pd.DataFrame,
    labels: pd.DataFrame,
    horizons: dict[str, int],
    *,
    gap: int | None = None,
    interval_alpha: dict[str, float] | None = None,
    choices: dict[str, TargetChoice] | None = None,
) -> MaxMinPredictor:
    # interval_alpha: "{horizon}__{target}__{model}" -> the adaptive level the validated path
    # of that model ended at; the served intervals start from it.
    primary = cfg.models[0]
    gap = max(horizons.values()) if gap is None else gap
    factories = {
        task: model_factory(primary.kind, dict(primary.params), task, cfg, gap)
        for task in ("classification", "regression")
    }
    for bars in horizons.values():
        scale = interval_scale(X, bars)
        if primary.residual or scale:
            # The max-high and min-low models of each horizon start from that horizon's HAR
            # baseline and scale their intervals by its columns, as they did in validation.
            factories[f"regression_{bars}"] = model_factory(
                primary.kind,
                dict(primary.params),
                "regression",
                cfg,
                gap,
                residual_features=har_columns(bars) if primary.residual else None,
                scale_features=scale,
            )
    primary_name = model_name(primary.kind, primary.name)
    paths = dict(interval_alpha or {})
    levels = {
        key[: -len(f"__{primary_name}")]: level
        for key, level in paths.items()
        if key.endswith(f"__{primary_name}")
    }
    sources = {"model": primary_name}
    for choice in (choices or {}).values():
        if choice.learned or choice.bars not in horizons.values():
            continue
        # A baseline serves this target: fit it as validated, on the columns it reads.
        naive_kind, params = _baselines(choice.kind, choice.bars)[choice.source]
        task = "classification" if choice.kind == "direction" else "regression"
        factories[choice.target] = model_factory(
            naive_kind,
            params,
            task,
            cfg,
            choice.bars,
            scale_features=interval_scale(X, choice.bars),
        )
        sources[choice.target] = choice.source
        for name, bars in horizons.items():
            if bars == choice.bars:  # the level of the baseline's own validated path
                key = f"{name}__{choice.kind}"
                levels.pop(key, None)
                if f"{key}__{choice.source}" in paths:
                    levels[key] = paths[f"{key}__{choice.source}"]
    return MaxMinPredictor(alpha=cfg.uncertainty.alpha, interval_alpha=levels).fit(
        X, labels, factories, horizons, sources=sources
    )


def _servable(columns: list[str], kind: str, bars: int, baseline: str) -> bool:
    """Whether the served pipeline computes what ``baseline`` reads (its features)."""
    _, params = _baselines(kind, bars)[baseline]
    reads = [*(params.get("volatility_features") or []), params.get("seasonal_feature")]
    return all(c in columns for c in reads if c is not None)


def _write_outputs(
    output: Path,
    cfg: RunConfig,
    predictions: pd.DataFrame,
    folds: pd.DataFrame,
    summary: pd.DataFrame,
    final: MaxMinPredictor,
    digest: str,
    feature_set: FeatureSet,
    candles: pd.DataFrame,
) -> None:
    fingerprint = feature_set.fingerprint()
    output.mkdir(parents=True, exist_ok=True)
    # The set the saved models read (the config's plus any HAR columns): load it with
    # trademl.features.load_feature_set to compute their inputs.
    with atomic_path(output / "feature_set.yaml") as temp:
        Path(temp).write_text(
            yaml.safe_dump(
                feature_set.model_dump(mode="json", exclude_defaults=True), sort_keys=False
            )
        )
    with atomic_path(output / "predictions.parquet") as temp:
        predictions.to_parquet(temp)
    with atomic_path(output / "folds.csv") as temp:
        folds.to_csv(temp, index=False)
    with atomic_path(output / "summary.csv") as temp:
        summary.to_csv(temp, index=False)
    with atomic_path(output / "coverage.parquet") as temp:
        coverage_paths(predictions, cfg.uncertainty.coverage_window).to_parquet(temp)
    with atomic_path(output / "summary.md") as temp:
        Path(temp).write_text(summary_markdown(summary, cfg))
    with atomic_path(output / "config.yaml") as temp:
        Path(temp).write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    (output / "models").mkdir(exist_ok=True)
    with atomic_path(output / "models" / "maxmin.pkl") as temp, open(temp, "wb") as handle:
        pickle.dump(final, handle, protocol=pickle.HIGHEST_PROTOCOL)
    meta = {
        "trademl_version": __version__,
        "python": platform.python_version(),
        "seed": cfg.seed,
        "data_hash": digest,
        "feature_set": cfg.features,
        "feature_set_fingerprint": fingerprint,
        "symbol": cfg.data.symbol,
        "timeframe": cfg.data.timeframe,
        "first_bar": candles.index[0].isoformat(),
        "last_bar": candles.index[-1].isoformat(),
        "bars": len(candles),
    }
    with atomic_path(output / "run.json") as temp:
        Path(temp).write_text(json.dumps(meta, indent=2))


def coverage_paths(predictions: pd.DataFrame, window: int) -> pd.DataFrame:
    """Rolling coverage of every interval in ``predictions`` (the wide out-of-sample frame).

    Returns
    -------
    pandas.DataFrame
        One row per model, target and out-of-sample row from the ``window``-th on (of the rows
        with a label): ``timestamp``, ``model``, ``target`` (``{kind}_{bars}``), ``coverage``
        over the trailing ``window`` rows, and ``alpha``, the adaptive level used at that row
        (NaN without adaptive intervals).
    """
    frames = []
    for column in predictions.columns:
        if not column.endswith("__lo"):
            continue
        name, _, label = column[: -len("__lo")].partition("__")
        truth = predictions[f"target__{label}"]
        rows = truth.notna() & predictions[column].notna()
        part = predictions.loc[rows]
        values = rolling_coverage(
            part[f"target__{label}"], part[column], part[f"{name}__{label}__hi"], window
        )
        if len(values) == 0:
            continue
        level = part.get(f"{name}__{label}__alpha", pd.Series(np.nan, index=part.index))
        ends = part.index[len(part) - len(values) :]
        frames.append(
            pd.DataFrame(
                {
                    "model": name,
                    "target": label,
                    "coverage": values,
                    "alpha": level.to_numpy()[len(part) - len(values) :],
                },
                index=pd.Index(ends, name="timestamp"),
            )
        )
    columns = ["model", "target", "coverage", "alpha"]
    return pd.concat(frames) if frames else pd.DataFrame(columns=columns)


def summary_markdown(summary: pd.DataFrame, cfg: RunConfig) -> str:
    """The out-of-sample summary as Markdown tables, baselines beside the models."""
    lines = [f"# {cfg.data.label} {cfg.data.timeframe}: out-of-sample results", ""]
    for (target, horizon), part in summary.groupby(["target", "horizon"], sort=False):
        lines.append(f"## {target}, horizon {horizon} ({int(part['horizon_bars'].iloc[0])} bars)")
        lines.append("")
        if target == "direction":
            header = "| model | accuracy (95% CI) | balanced acc. | log loss | AUC | Brier | n |"
            lines += [header, "|---|---|---|---|---|---|---|"]
            for _, r in part.iterrows():
                lines.append(
                    f"| {r['model']} | {r['accuracy']:.4f} [{r['accuracy_lo']:.4f}, {r['accuracy_hi']:.4f}] | "
                    f"{r['balanced_accuracy']:.4f} | {r['log_loss']:.4f} | {r['roc_auc']:.4f} | "
                    f"{r['brier']:.4f} | {int(r['n']):,} |"
                )
        else:
            header = (
                "| model | R² (95% CI) | MAE | RMSE | IC (95% CI) | rank IC | coverage (95% CI) "
                "| worst window | MC-dropout coverage | n |"
            )
            lines += [header, "|---|---|---|---|---|---|---|---|---|---|"]
            for _, r in part.iterrows():
                worst, mc = (
                    _cell(r.get(key)) for key in ("coverage_worst_window", "coverage_mc_dropout")
                )
                lines.append(
                    f"| {r['model']} | {_ci(r, 'r2', 4)} | {r['mae']:.5f} | {r['rmse']:.5f} | "
                    f"{_ci(r, 'ic', 4)} | {r['rank_ic']:.4f} | {_ci(r, 'coverage', 3)} | {worst} | "
                    f"{mc} | {int(r['n']):,} |"
                )
        lines.append("")
    lines.append(
        f"Intervals: nominal coverage {1 - cfg.uncertainty.alpha:.0%}; worst window: the "
        f"rolling coverage over {cfg.uncertainty.coverage_window} rows farthest from nominal. "
        "Confidence intervals: circular block bootstrap over blocks of max(3 h, n^(1/3)) rows "
        "(labels h bars ahead overlap); Wilson's for 1-bar accuracy."
    )
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    return "-" if value is None or pd.isna(value) else f"{value:.3f}"


def _ci(row: pd.Series, metric: str, digits: int) -> str:
    value, low, high = (row.get(key) for key in (metric, f"{metric}_lo", f"{metric}_hi"))
    if value is None or pd.isna(value):
        return "-"
    if low is None or high is None or pd.isna(low) or pd.isna(high):
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"
