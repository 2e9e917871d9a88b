"""One target of a run: its task and rows, the model builders of the config (residual, conformal,
calibrated), the naive baselines beside them, their purged out-of-sample evaluation and the final
fit that serves each target."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import pandas as pd

from trademl.config import RunConfig
from trademl.errors import ConfigError
from trademl.features import (
    build_labels,
)
from trademl.har import HAR_SEASONAL, har_columns, interval_scale
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
from trademl.validation.runner import Evaluation, evaluate
from trademl.validation.selection import TargetChoice

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


def check_models(cfg: RunConfig) -> None:
    """Refuse duplicate model names and any model the config could not build, naming its
    position, before any data is read."""
    names = [model_name(m.kind, m.name) for m in cfg.models]
    if len(set(names)) != len(names):
        raise ConfigError(f"models: names must be unique, got {names}; give each a 'name'")
    for position, spec in enumerate(cfg.models):
        try:
            load_all_models()
            make_model(spec.kind, model_params(spec.kind, spec.params, "regression", cfg.seed))
        except ConfigError as error:
            raise ConfigError(f"models.{position}: {error}") from None


def model_name(kind: str, name: str | None) -> str:
    """The column name of a model in predictions and tables."""
    return name or kind


def model_params(kind: str, params: dict[str, Any], task: str, seed: int) -> dict[str, Any]:
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
    merged = model_params(kind, params, task, cfg.seed)
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
        # Kinds declaring supports_quantile get CQR under `intervals: cqr`; the baselines and
        # the other kinds get split-conformal intervals there.
        if task == "regression" and unc.intervals == "cqr" and MODELS.get(kind).supports_quantile:
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


def baseline_models(kind: str, bars: int) -> dict[str, tuple[str, dict[str, Any]]]:
    """The naive baselines validated beside the models of a target: name → (kind, params)."""
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


def evaluate_target(
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
    """Every model of the config and the target's baselines, out of sample on ``splitter``'s
    purged folds. ``gap`` is the rows between a model's fitting rows and its internal hold-out
    (default: the horizon; a panel's rows hold several symbols per bar)."""
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
    for name, (naive_kind, params) in baseline_models(kind, bars).items():
        factories[name] = model_factory(
            naive_kind, params, task, cfg, gap, scale_features=interval_scale(base_X, bars)
        )
        inputs[name] = base_X
    n_folds = splitter.get_n_splits(X)
    unc = cfg.uncertainty
    adaptive: Callable[[], AdaptiveConformal] | None = None
    if task == "regression" and unc.adaptive and unc.intervals != "none":
        # Labels mature `gap` rows later (a panel holds several symbols' rows per bar).
        adaptive = partial(AdaptiveConformal, unc.alpha, unc.adaptive_rate, horizon=gap)
    return evaluate(
        factories,
        inputs,
        y,
        splitter.split(X, y),
        task=task,
        alpha=cfg.uncertainty.alpha if task == "regression" else None,
        keep=keep,
        description=f"{kind}_{bars} folds",
        n_folds=n_folds,
        adaptive=adaptive,
    )


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


def labels_with_dead_zone(
    candles: pd.DataFrame, specs: list[dict[str, Any]], dead_zone: float
) -> pd.DataFrame:
    """The labels of ``specs``, direction labelled 0 inside the ``dead_zone``."""
    return build_labels(
        candles, [{**s, "dead_zone": dead_zone} if s["kind"] == "direction" else s for s in specs]
    )


def fit_final(
    cfg: RunConfig,
    X: pd.DataFrame,
    labels: pd.DataFrame,
    horizons: dict[str, int],
    *,
    gap: int | None = None,
    interval_alpha: dict[str, float] | None = None,
    choices: dict[str, TargetChoice] | None = None,
) -> MaxMinPredictor:
    """The served max/min predictor, refit on every row: per target the primary model, or the
    baseline that ``choices`` says serves it. ``interval_alpha`` maps
    ``{horizon}__{target}__{model}`` to the adaptive level that model's validated path ended
    at; the served intervals start from it."""
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
        naive_kind, params = baseline_models(choice.kind, choice.bars)[choice.source]
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


def servable(columns: list[str], kind: str, bars: int, baseline: str) -> bool:
    """Whether the served pipeline computes what ``baseline`` reads (its features)."""
    _, params = baseline_models(kind, bars)[baseline]
    reads = [*(params.get("volatility_features") or []), params.get("seasonal_feature")]
    return all(c in columns for c in reads if c is not None)
