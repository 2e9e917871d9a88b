"""A run's inputs: the config checked, candles read, causal features, labels and what the
baselines read, on one shared row range."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from loguru import logger

from trademl.config import RunConfig, Settings, get_settings
from trademl.data.candles import as_candles
from trademl.data.ingest import open_default_store, read_series
from trademl.data.sources.base import clip_range, parse_time
from trademl.data.timeframes import Timeframe
from trademl.errors import ConfigError, DataValidationError
from trademl.features import (
    FeatureCache,
    build_features,
    build_labels,
    load_feature_set,
)
from trademl.features.cache import data_hash
from trademl.features.horizons import resolve_horizon
from trademl.features.sets import FeatureSet
from trademl.har import baseline_inputs, with_har_features
from trademl.targets import RESIDUAL_TARGETS, check_models, labels_with_dead_zone
from trademl.validation.splitters import make_splitter


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


def prepare(
    cfg: RunConfig, *, settings: Settings | None = None, candles: pd.DataFrame | None = None
) -> Prepared:
    """Check ``cfg``, load its candles and build its features, labels and baseline inputs.

    Parameters
    ----------
    cfg : RunConfig
        The run config.
    settings : Settings or None
        Where the store and the feature cache live; the process settings by default.
    candles : pandas.DataFrame or None
        The candles of ``data.symbol`` at ``data.timeframe`` (see
        :func:`trademl.data.candles.as_candles`); read from the store when None. ``data.start``
        and ``data.end`` cut them either way.

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
    check_models(cfg)
    if cfg.validation.kind == "cpcv":
        # CPCV tests every bar on several paths; a training run reports one out-of-sample
        # prediction per bar. CPCV paths feed the overfitting statistics of backtests instead.
        raise ConfigError(
            "validation.kind: cpcv gives several predictions per bar (one per path) and is used "
            "for backtest overfitting statistics; train with walk_forward or purged_kfold"
        )
    for bars in horizons.values():
        make_splitter(cfg.validation.kind, dict(cfg.validation.params), bars)

    start = parse_time(cfg.data.start, argument="data.start")
    end = parse_time(cfg.data.end, argument="data.end")
    if candles is None:
        with open_default_store(settings) as store:
            candles = read_series(store, symbol, timeframe.name, start, end)
    else:
        candles = clip_range(
            as_candles(candles, timeframe.name, what=f"candles of {symbol}"), start, end
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
        else labels_with_dead_zone(candles, specs, cfg.labels.dead_zone)
    )
    base_inputs = baseline_inputs(candles, horizons.values())

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
        baselines=base_inputs.iloc[rows],
        labels=labels.iloc[rows],
        horizons=horizons,
        candles=candles,
        data_hash=digest,
        fingerprint=feature_set.fingerprint(),
        feature_set=feature_set,
    )
