"""Conformance checks of a model kind: the promises of :class:`~trademl.models.base.BaseModel`.

Each check takes an unfitted model (as configured: its task and hyperparameters) and raises
:class:`~trademl.testing.data.ConformanceError` naming the kind and the broken promise. Which
checks apply follows the kind's declared capabilities: ``tasks`` (a task it does not declare
must be refused), ``supports_interval`` (intervals are checked), ``is_sequence`` (the first
rows of a prediction may be NaN while windows fill).
"""

from __future__ import annotations

import inspect
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trademl.errors import ConfigError, TradeMLError
from trademl.models.base import TASKS, BaseModel, load_model, make_model
from trademl.testing.data import ConformanceError, sample_features

ModelCheck = Callable[[BaseModel], None]


def _fresh(model: BaseModel, **changes: Any) -> BaseModel:
    """An unfitted copy of ``model`` built from its parameters (with ``changes``)."""
    return type(model)(**{**model.get_params(), **changes})


def _target(task: str, y: pd.Series) -> pd.Series:
    return (y > 0).astype(float) if task == "classification" else y


def _label(model: BaseModel) -> str:
    return f"{model.kind}[{model.task}]"


def _fail(model: BaseModel, promise: str) -> ConformanceError:
    return ConformanceError(f"{_label(model)}: {promise}")


def check_constructor_stores_params(model: BaseModel) -> None:
    """The constructor stores each hyperparameter as given, and nothing else."""
    signature = inspect.signature(type(model).__init__).parameters
    names = [name for name in signature if name != "self"]
    params = model.get_params()
    if sorted(params) != sorted(names):
        raise _fail(model, f"get_params() keys {sorted(params)} are not the constructor's {names}")
    fresh = _fresh(model)
    if vars(fresh) != params:
        raise _fail(
            model,
            f"the constructor stored {sorted(vars(fresh))}, expected exactly its parameters "
            f"{sorted(params)} as given (no logic in __init__)",
        )


def check_fit_predict(model: BaseModel) -> None:
    """fit returns self and leaves its inputs alone; predict gives one finite value per row (a
    float64 value, or for classification a label of ``classes_``, with ``predict_proba``
    probabilities in [0, 1] summing to 1), by column name; clone is unfitted; a saved model
    predicts the same after loading."""
    X, y = sample_features(300, seed=1)
    y = _target(model.task, y)
    X_before, y_before = X.copy(), y.copy()
    fitted = _fresh(model)
    if fitted.fit(X, y) is not fitted:
        raise _fail(model, "fit(X, y) must return the model itself")
    if not (X.equals(X_before) and y.equals(y_before)):
        raise _fail(model, "fit changed its X or y")
    X_new, _ = sample_features(120, seed=2)
    prediction = _value(fitted, X_new)
    reordered = _value(fitted, X_new[X_new.columns[::-1]])
    if not np.array_equal(reordered, prediction, equal_nan=True):
        raise _fail(model, "predict must pick its columns by name (reordered X changed it)")
    twin = fitted.clone()
    if type(twin) is not type(fitted) or twin.get_params() != fitted.get_params():
        raise _fail(model, "clone() must give the same kind with the same parameters")
    if _is_fitted(twin):
        raise _fail(model, "clone() must give an unfitted model")
    with tempfile.TemporaryDirectory() as folder:
        loaded = load_model(fitted.save(Path(folder) / "saved"))
        again = _value(loaded, X_new)
    if not np.array_equal(again, prediction, equal_nan=True):
        raise _fail(model, "a saved and loaded model predicts differently")


def _value(fitted: BaseModel, X: pd.DataFrame) -> np.ndarray:
    """The checked prediction: the value, or P(class 1) for a classifier."""
    prediction = fitted.predict(X)
    if not isinstance(prediction, np.ndarray) or prediction.shape != (len(X),):
        shape = getattr(prediction, "shape", type(prediction).__name__)
        raise _fail(fitted, f"predict gave {shape}, expected one value per row ({len(X)},)")
    _check_finite(fitted, prediction)
    if fitted.task != "classification":
        if prediction.dtype != np.float64:
            raise _fail(fitted, f"predict gave dtype {prediction.dtype}, expected float64")
        return prediction
    proba = getattr(fitted, "predict_proba", None)
    if proba is None:  # P(class 1) straight from predict
        probability = prediction
    else:
        labels = prediction[np.isfinite(prediction)]
        classes = getattr(fitted, "classes_", np.array([0.0, 1.0]))
        if not np.isin(labels, classes).all():
            raise _fail(fitted, f"predict gave labels outside classes_ {list(classes)}")
        both = np.asarray(proba(X), dtype=np.float64)
        if both.shape != (len(X), 2):
            raise _fail(fitted, f"predict_proba gave {both.shape}, expected ({len(X)}, 2)")
        defined = np.isfinite(both).all(axis=1)
        if not np.allclose(both[defined].sum(axis=1), 1.0):
            raise _fail(fitted, "predict_proba rows must sum to 1")
        probability = both[:, 1]
    inside = probability[np.isfinite(probability)]
    if ((inside < 0) | (inside > 1)).any():
        raise _fail(fitted, "classification predictions must be probabilities in [0, 1]")
    return np.asarray(probability, dtype=np.float64)


def _check_finite(model: BaseModel, prediction: np.ndarray) -> None:
    finite = np.isfinite(prediction)
    if finite.all():
        return
    if not model.is_sequence:
        raise _fail(model, f"predict gave {int((~finite).sum())} non-finite values")
    # A sequence model has no window for its first rows: NaN may lead, nothing else.
    first = int(np.argmax(finite)) if finite.any() else len(finite)
    if not finite[first:].all() or first > len(finite) // 2:
        raise _fail(model, "a sequence model may give NaN only for its first rows")


def _is_fitted(model: BaseModel) -> bool:
    try:
        model.predict(sample_features(5)[0])
    except TradeMLError:
        return False
    return True


def check_unfitted_refuses_to_predict(model: BaseModel) -> None:
    """predict before fit raises a trademl error (NotFittedError), not a library's."""
    try:
        _fresh(model).predict(sample_features(20)[0])
    except TradeMLError:
        return
    except Exception as error:
        raise _fail(
            model, f"predict before fit raised {type(error).__name__}, not a trademl error"
        ) from error
    raise _fail(model, "predict before fit must raise NotFittedError")


def check_nan_target_refused(model: BaseModel) -> None:
    """A NaN in y is refused with a ConfigError saying so."""
    X, y = sample_features(200, seed=3)
    y = _target(model.task, y)
    y.iloc[5] = np.nan
    try:
        _fresh(model).fit(X, y)
    except ConfigError as error:
        if "NaN" not in str(error):
            raise _fail(model, f"the NaN target's error does not say NaN: {error}") from error
        return
    raise _fail(model, "fit must refuse a y holding NaN")


def check_missing_feature_refused(model: BaseModel) -> None:
    """predict without a column the model was fitted on raises a ConfigError naming it."""
    X, y = sample_features(200, seed=4)
    fitted = _fresh(model).fit(X, _target(model.task, y))
    try:
        fitted.predict(X.drop(columns="x2"))
    except ConfigError:
        return
    raise _fail(model, "predict must refuse an X that lacks a fitted feature")


def check_undeclared_task_refused(model: BaseModel) -> None:
    """A task outside the kind's declared ``tasks`` is refused at fit."""
    for task in sorted(set(TASKS) - set(model.tasks)):
        X, y = sample_features(100, seed=5)
        try:
            _fresh(model, task=task).fit(X, _target(task, y))
        except ConfigError:
            continue
        raise _fail(model, f"task {task!r} is not in tasks {model.tasks} but fit accepted it")


def check_interval(model: BaseModel) -> None:
    """predict_interval gives finite lower <= upper bounds, wider at a smaller alpha, and the
    same after saving and loading."""
    X, y = sample_features(300, seed=6)
    fitted = _fresh(model).fit(X, y)
    X_new, _ = sample_features(100, seed=7)
    lower, upper = fitted.predict_interval(X_new, 0.1)
    if lower.shape != (len(X_new),) or upper.shape != (len(X_new),):
        raise _fail(model, "predict_interval must give one lower and one upper bound per row")
    both = np.isfinite(lower) & np.isfinite(upper)
    if not both.any() or (lower[both] > upper[both]).any():
        raise _fail(model, "predict_interval must give finite bounds with lower <= upper")
    wide_lower, wide_upper = fitted.predict_interval(X_new, 0.01)
    if (wide_upper[both] - wide_lower[both] < upper[both] - lower[both] - 1e-9).any():
        raise _fail(model, "an interval at alpha 0.01 must be at least as wide as at 0.1")
    with tempfile.TemporaryDirectory() as folder:
        loaded = load_model(fitted.save(Path(folder) / "saved"))
        if not np.array_equal(loaded.predict_interval(X_new, 0.1)[0], lower, equal_nan=True):
            raise _fail(model, "a saved and loaded model gives other intervals")


def model_checks(model: BaseModel) -> list[ModelCheck]:
    """The checks that apply to ``model``, chosen by its declared capabilities."""
    checks: list[ModelCheck] = [
        check_constructor_stores_params,
        check_fit_predict,
        check_unfitted_refuses_to_predict,
        check_nan_target_refused,
        check_missing_feature_refused,
        check_undeclared_task_refused,
    ]
    if model.supports_interval and model.task in ("regression", "quantile"):
        checks.append(check_interval)
    return checks


def check_model(model: BaseModel) -> None:
    """Run every check that applies to ``model`` (see :func:`model_checks`).

    Raises
    ------
    ConformanceError
        At the first broken promise, naming the kind, its task and the promise.

    Examples
    --------
    >>> from trademl.models.naive import NaiveModel
    >>> check_model(NaiveModel(strategy="mean"))
    """
    for check in model_checks(model):
        check(model)


def model_instances(kind: str, params: Mapping[str, Any] | None = None) -> list[BaseModel]:
    """One model of ``kind`` per task it declares, built from ``params`` (without ``task``).

    Examples
    --------
    >>> [m.task for m in model_instances("naive")]
    ['regression', 'classification']
    """
    probe = make_model(kind, dict(params or {}))
    return [make_model(kind, {**dict(params or {}), "task": task}) for task in probe.tasks]
