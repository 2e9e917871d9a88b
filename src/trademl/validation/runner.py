"""Out-of-sample evaluation, written once above the models: every fold of a splitter, every
model cloned and fitted on the fold's training rows only, predictions on its test rows.

Intervals (split-conformal or CQR) and probability calibration are fitted inside each training
fold, on its last rows, so nothing of the test rows reaches them. With adaptive conformal
inference the quantile level of each model's intervals moves along the test rows in time order,
across folds, using only the test labels that had matured before each row
(:mod:`trademl.models.aci`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from trademl.errors import ConfigError
from trademl.models.aci import AdaptiveConformal, ConformalModel
from trademl.models.base import BaseModel, predicted_value
from trademl.progress import progress_bar

ModelFactory = Callable[[], BaseModel]
Splits = Iterator[tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class Evaluation:
    """Out-of-sample predictions of several models over the folds of one target."""

    predictions: pd.DataFrame  # index: timestamp; columns: fold, target, {model}, {model}__lo/__hi
    models: tuple[str, ...]
    task: str
    folds: int
    # Model name -> the adaptive level alpha_t at the end of its path (all labels absorbed).
    adaptive_alpha: dict[str, float] = field(default_factory=dict)


def evaluate(
    factories: Mapping[str, ModelFactory],
    inputs: Mapping[str, pd.DataFrame],
    y: pd.Series,
    splits: Splits,
    *,
    task: str,
    alpha: float | None = None,
    keep: np.ndarray | None = None,
    description: str = "folds",
    n_folds: int | None = None,
    adaptive: Callable[[], AdaptiveConformal] | None = None,
) -> Evaluation:
    """Fit and predict every model on every fold.

    Parameters
    ----------
    factories:
        Model name → a function returning a fresh, unfitted model (wrappers included).
    inputs:
        Model name → the feature frame that model reads (baselines read their own columns).
        Every frame shares ``y``'s index.
    y:
        The target; rows are bars in time order (positions are what the splitter indexes).
    splits:
        ``(train_positions, test_positions)`` pairs, already purged and embargoed.
    task:
        ``"classification"`` (predictions are P(y = 1)) or ``"regression"``.
    alpha:
        Nominal miscoverage of prediction intervals; intervals are skipped when None or when a
        model does not support them.
    keep:
        Boolean mask of rows usable as training or test rows (e.g. outside a dead zone); the
        splitter still sees every row, so purging follows the bars' real spacing.
    adaptive:
        A builder of a fresh :class:`~trademl.models.aci.AdaptiveConformal` path: when given,
        the intervals of conformal models follow one adaptive path per model along the test
        rows (its levels in ``{model}__alpha``, its final level in ``adaptive_alpha``).
    """
    if not factories:
        raise ConfigError("no models to evaluate")
    index = y.index
    for name, frame in inputs.items():
        if not frame.index.equals(index):
            raise ConfigError(f"features of {name!r} are not aligned with the target")
    usable = np.ones(len(y), dtype=bool) if keep is None else np.asarray(keep, dtype=bool)
    parts: list[pd.DataFrame] = []
    paths: dict[str, AdaptiveConformal] = {}
    fold = 0
    with progress_bar(description, n_folds, unit="folds") as advance:
        for fold, (train, test) in enumerate(splits):
            train, test = train[usable[train]], test[usable[test]]
            if len(train) == 0 or len(test) == 0:
                continue
            part = pd.DataFrame(
                {"fold": fold, "target": y.iloc[test].to_numpy()}, index=index[test]
            )
            for name, factory in factories.items():
                model = factory()
                X = inputs[name]
                model.fit(X.iloc[train], y.iloc[train])
                part[name] = predicted_value(model, X.iloc[test])
                if alpha is not None and adaptive is not None and isinstance(model, ConformalModel):
                    path = paths.setdefault(name, adaptive())
                    X_test = X.iloc[test]
                    scores = model.conformity_scores(X_test, y.iloc[test].to_numpy())
                    lower, upper = model.interval_at(X_test, path.step(model.scores_, scores, test))
                    part[f"{name}__lo"], part[f"{name}__hi"] = lower, upper
                    part[f"{name}__alpha"] = path.levels_[-len(test) :]
                elif alpha is not None and model.supports_interval:
                    lower, upper = model.predict_interval(X.iloc[test], alpha)
                    part[f"{name}__lo"], part[f"{name}__hi"] = lower, upper
                    # A sequence model inside a conformal wrapper also has its own MC-dropout
                    # band: record it so reports show the coverage of both.
                    inner = getattr(model, "model_", None)
                    if (
                        isinstance(inner, BaseModel)
                        and inner.is_sequence
                        and inner.supports_interval
                    ):
                        lower, upper = inner.predict_interval(X.iloc[test], alpha)
                        part[f"{name}__mclo"], part[f"{name}__mchi"] = lower, upper
            parts.append(part)
            advance()
    if not parts:
        raise ConfigError("the splitter produced no usable fold")
    final = {name: path.finish() for name, path in paths.items()}
    return Evaluation(pd.concat(parts), tuple(factories), task, fold + 1, final)
