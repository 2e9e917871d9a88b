"""Uncertainty on top of any model: conformal intervals and calibrated probabilities.

Each wrapper takes unfitted model(s) and, in ``fit``, splits the training rows in time order:
the wrapped model is fitted on the *head*, and the *calibration tail* (the last
``calibration_fraction`` of the rows, after ``gap`` dropped rows) is used only to measure how
wrong the head model is. Everything is therefore learned inside the training fold: a
walk-forward runner that fits the wrapper on a fold's training rows gets intervals and
probabilities that never saw the fold's test rows. Set ``gap`` to the label horizon so that
head labels looking forward do not overlap the calibration rows.

When the wrapped model does its own early stopping, it splits the head again: the trees grow
on the head of the head, stop on its tail, and the calibration rows stay unseen by both.

The wrapped models are cloned in ``fit``; the objects given are never fitted or changed.

``SplitConformalRegressor``
    Split conformal prediction (Vovk et al.; Lei et al., 2018). Scores are the absolute
    residuals ``|y - f(x)|`` on the calibration rows; the interval of miscoverage ``alpha`` is
    ``f(x) ± q``, with ``q`` the ``ceil((n + 1)(1 - alpha))``-th smallest of the ``n`` scores
    (infinite when that rank exceeds ``n``).
    With ``scale_features`` the scores are *normalised* (Lei et al., 2018, locally weighted
    conformal): ``|y - f(x)| / s(x)``, ``s(x)`` a positive per-row scale known at prediction
    time (the mean of trailing realised-volatility columns), and the interval is
    ``f(x) ± q · s(x)``. The size of a bar range is mostly volatility, so a constant ``q``
    over-covers calm rows and under-covers turbulent ones; dividing by ``s`` makes the scores
    closer to exchangeable across regimes.
``ConformalQuantileRegressor``
    Conformalized quantile regression (Romano, Patterson & Candès, 2019). Two quantile models
    give ``lo(x)`` and ``hi(x)``; the scores are ``max(lo(x) - y, y - hi(x))`` and the interval
    is ``[lo(x) - q, hi(x) + q]``, with ``q`` taken as above. The interval adapts its width to
    ``x``. The models' quantile levels should be ``alpha/2`` and ``1 - alpha/2`` of the alpha
    asked for; other levels keep the coverage but widen or narrow the raw band more.
``CalibratedClassifier``
    A classifier (``predict_proba``, ``classes_``) that maps the head model's P(y = 1)
    through a monotone map learned on the calibration rows: isotonic regression, or Platt's
    sigmoid (a logistic regression on the logit of P).

Both regressors expose ``conformity_scores(X, y)`` and ``interval_at(X, q)`` (one threshold per
row), which :class:`trademl.models.aci.AdaptiveConformal` uses to move the quantile level
along a walk-forward path.

The coverage guarantee of conformal prediction assumes exchangeable rows. Market data are not
exchangeable (volatility clusters, regimes change), so coverage out of sample is approximate:
measure it on the test folds rather than assume it.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import pandas as pd

from trademl.errors import ConfigError
from trademl.models.base import BaseModel, predicted_value
from trademl.models.gbm import tail_split

# Probabilities are clipped this far from 0 and 1 before taking their logit.
_EPSILON = 1e-6


def conformal_quantile(scores: np.ndarray, alpha: float) -> float:
    """The split-conformal threshold of miscoverage ``alpha`` for calibration ``scores``.

    Parameters
    ----------
    scores:
        Conformity scores of the ``n`` calibration rows.
    alpha:
        Nominal miscoverage, in (0, 1).

    Returns
    -------
    float
        The ``ceil((n + 1)(1 - alpha))``-th smallest score, or ``inf`` when that rank exceeds
        ``n`` (too few calibration rows for the coverage asked).

    Examples
    --------
    >>> conformal_quantile(np.arange(1.0, 20.0), 0.1)
    18.0
    """
    if not 0.0 < float(alpha) < 1.0:
        raise ConfigError(f"alpha must lie strictly between 0 and 1, got {alpha!r}")
    ordered = np.sort(np.asarray(scores, dtype=np.float64))
    n = len(ordered)
    rank = math.ceil((n + 1) * (1.0 - alpha))
    if rank > n:
        return math.inf
    return float(ordered[rank - 1])


def _scale_values(X: pd.DataFrame, columns: list[str], owner: str) -> np.ndarray:
    """The per-row mean of the finite, positive values of ``columns`` (NaN where none is)."""
    missing = [name for name in columns if name not in X.columns]
    if missing:
        raise ConfigError(
            f"{owner}: scale_features names column(s) {missing} that X lacks; the scale must "
            "be a feature known at prediction time (e.g. rv_parkinson_24)"
        )
    try:
        values = X.to_numpy(dtype=np.float64)[:, X.columns.get_indexer(pd.Index(columns))]
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{owner}: scale column(s) {columns} are not all numeric") from error
    values = np.where(np.isfinite(values) & (values > 0.0), values, np.nan)
    counts = np.sum(np.isfinite(values), axis=1)
    sums = np.nansum(values, axis=1)
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


class _TailCalibrated(BaseModel):
    """Head/tail split shared by the wrappers; subclasses learn from the two parts."""

    calibration_fraction: float
    gap: int

    def _split(self, n_rows: int) -> tuple[int, int]:
        return tail_split(
            n_rows, self.calibration_fraction, self.gap, owner=self.kind, role="calibration"
        )

    @staticmethod
    def _fit_inner(
        model: BaseModel,
        X: pd.DataFrame,
        y: pd.Series,
        eval_set: tuple[pd.DataFrame, pd.Series] | None,
    ) -> BaseModel:
        return model.clone().fit(X, y, eval_set=eval_set)


class SplitConformalRegressor(_TailCalibrated):
    """Split-conformal intervals around any regression model.

    Parameters
    ----------
    model:
        An unfitted regression model (``task="regression"``); it is cloned, not changed.
    calibration_fraction:
        Share of the last training rows used to calibrate, in (0, 1).
    gap:
        Rows dropped between the fitting head and the calibration tail.
    scale_features:
        Columns of ``X`` whose per-row mean is the scale ``s(x)`` of normalised scores
        (trailing realised volatility); ``None`` for plain absolute residuals.

    Attributes
    ----------
    model_ : BaseModel
        The clone fitted on the head.
    scores_ : numpy.ndarray
        Sorted conformity scores on the calibration rows: absolute residuals, divided by the
        scale when ``scale_features`` is set.
    scale_fill_ : float
        With ``scale_features``: the calibration rows' median scale, used where a row has
        no finite positive scale value.
    scale_floor_ : float
        With ``scale_features``: the smallest scale used (a tenth of ``scale_fill_``), so
        that a stale price (zero volatility) gives a narrow interval, not an empty one.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from trademl.models.naive import NaiveModel
    >>> rng = np.random.default_rng(0)
    >>> vol = rng.uniform(0.5, 2.0, 2000)
    >>> X = pd.DataFrame({"vol": vol})
    >>> y = pd.Series(vol * rng.normal(size=2000))
    >>> model = SplitConformalRegressor(NaiveModel(strategy="zero"), scale_features=["vol"])
    >>> lower, upper = model.fit(X, y).predict_interval(X.iloc[:2], 0.1)
    >>> bool(np.allclose((upper - lower) / X["vol"].iloc[:2], (upper - lower)[0] / vol[0]))
    True
    """

    kind = "split_conformal"
    task = "regression"
    tasks = ("regression",)
    supports_interval = True
    onnx_export = "inner"

    def __init__(
        self,
        model: BaseModel,
        calibration_fraction: float = 0.2,
        gap: int = 0,
        scale_features: list[str] | None = None,
    ) -> None:
        self.model = model
        self.calibration_fraction = calibration_fraction
        self.gap = gap
        self.scale_features = scale_features

    def _fit(
        self, X: pd.DataFrame, y: pd.Series, eval_set: tuple[pd.DataFrame, pd.Series] | None
    ) -> None:
        _require_task(self.model, ("regression",), self.kind)
        if self.scale_features is not None and (
            isinstance(self.scale_features, str) or not list(self.scale_features)
        ):
            raise ConfigError(
                f"{self.kind}: scale_features must be a non-empty list of column names or None, "
                f"got {self.scale_features!r}"
            )
        head_stop, tail_start = self._split(len(y))
        self.model_ = self._fit_inner(self.model, X.iloc[:head_stop], y.iloc[:head_stop], eval_set)
        if self.scale_features:
            raw = _scale_values(X.iloc[tail_start:], list(self.scale_features), self.kind)
            known = raw[np.isfinite(raw)]
            if len(known) == 0:
                raise ConfigError(
                    f"{self.kind}: scale column(s) {self.scale_features} have no finite positive "
                    "value on the calibration rows"
                )
            self.scale_fill_ = float(np.median(known))
            self.scale_floor_ = 0.1 * self.scale_fill_
        # Predict from the fold's first row so sequence models see full windows on the tail.
        scores = self._scores(X, y.to_numpy(dtype=np.float64))[tail_start:]
        self.scores_ = np.sort(scores[np.isfinite(scores)])

    def _predict(self, X: pd.DataFrame) -> np.ndarray:
        return self.model_.predict(X)

    def scale(self, X: pd.DataFrame) -> np.ndarray:
        """The per-row scale ``s(x)`` of the scores (ones without ``scale_features``).

        Parameters
        ----------
        X:
            Features.

        Returns
        -------
        numpy.ndarray
            Positive scales, one per row.
        """
        if not self.scale_features:
            return np.ones(len(X), dtype=np.float64)
        raw = _scale_values(X, list(self.scale_features), self.kind)
        filled = np.where(np.isfinite(raw), raw, self.scale_fill_)
        return np.asarray(np.maximum(filled, self.scale_floor_), dtype=np.float64)

    def _scores(self, X: pd.DataFrame, y: np.ndarray) -> np.ndarray:
        return np.asarray(np.abs(y - self.model_.predict(X)) / self.scale(X), dtype=np.float64)

    def conformity_scores(self, X: pd.DataFrame, y: np.ndarray) -> np.ndarray:
        """The score of each row, comparable with ``scores_`` (NaN where ``y`` is NaN).

        Parameters
        ----------
        X:
            Features.
        y:
            Observed targets, one per row.

        Returns
        -------
        numpy.ndarray
            ``|y - f(x)| / s(x)``; a row lies inside ``interval_at(X, q)`` iff its score is at
            most ``q``.
        """
        self._check_fitted()
        return self._scores(X, np.asarray(y, dtype=np.float64))

    def interval_at(self, X: pd.DataFrame, q: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """``f(x) ± q · s(x)`` for a threshold ``q`` (one per row, or one for all).

        Parameters
        ----------
        X:
            Features.
        q:
            Score thresholds, e.g. conformal quantiles at per-row levels.

        Returns
        -------
        tuple of numpy.ndarray
            Lower and upper bounds.
        """
        self._check_fitted()
        point = self.predict(X)
        half = np.asarray(q, dtype=np.float64) * self.scale(X)
        return point - half, point + half

    def predict_interval(self, X: pd.DataFrame, alpha: float) -> tuple[np.ndarray, np.ndarray]:
        """``prediction ± q``, ``q`` the conformal quantile of the calibration residuals.

        Parameters
        ----------
        X:
            Features.
        alpha:
            Nominal miscoverage, in (0, 1).

        Returns
        -------
        tuple of numpy.ndarray
            Lower and upper bounds (infinite when the calibration set is too small).
        """
        self._check_fitted()
        return self.interval_at(X, conformal_quantile(self.scores_, alpha))


class ConformalQuantileRegressor(_TailCalibrated):
    """Conformalized quantile regression (CQR) from a lower and an upper quantile model.

    Parameters
    ----------
    lower_model:
        An unfitted model of the ``alpha/2`` quantile (e.g. ``LGBMModel(task="quantile",
        alpha=0.05)``); it is cloned, not changed.
    upper_model:
        An unfitted model of the ``1 - alpha/2`` quantile.
    calibration_fraction:
        Share of the last training rows used to calibrate, in (0, 1).
    gap:
        Rows dropped between the fitting head and the calibration tail.

    Attributes
    ----------
    lower_model_, upper_model_ : BaseModel
        The clones fitted on the head.
    scores_ : numpy.ndarray
        Sorted CQR scores ``max(lo - y, y - hi)`` on the calibration rows.

    Notes
    -----
    ``predict`` returns the middle of the raw band, ``(lo + hi) / 2``: a point forecast only
    for symmetric levels. Where the correction ``q`` is negative and larger than half the raw
    band, both bounds are set to that middle rather than returned crossed.
    """

    kind = "cqr"
    task = "regression"
    tasks = ("regression",)
    supports_interval = True

    def __init__(
        self,
        lower_model: BaseModel,
        upper_model: BaseModel,
        calibration_fraction: float = 0.2,
        gap: int = 0,
    ) -> None:
        self.lower_model = lower_model
        self.upper_model = upper_model
        self.calibration_fraction = calibration_fraction
        self.gap = gap

    def _band(self, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        return self.lower_model_.predict(X), self.upper_model_.predict(X)

    def _fit(
        self, X: pd.DataFrame, y: pd.Series, eval_set: tuple[pd.DataFrame, pd.Series] | None
    ) -> None:
        for model in (self.lower_model, self.upper_model):
            _require_task(model, ("quantile", "regression"), self.kind)
        head_stop, tail_start = self._split(len(y))
        X_head, y_head = X.iloc[:head_stop], y.iloc[:head_stop]
        self.lower_model_ = self._fit_inner(self.lower_model, X_head, y_head, eval_set)
        self.upper_model_ = self._fit_inner(self.upper_model, X_head, y_head, eval_set)
        low, high = self._band(X)
        tail_y = y.iloc[tail_start:].to_numpy(dtype=np.float64)
        scores = np.maximum(low[tail_start:] - tail_y, tail_y - high[tail_start:])
        self.scores_ = np.sort(scores[np.isfinite(scores)])

    def _predict(self, X: pd.DataFrame) -> np.ndarray:
        low, high = self._band(X)
        return np.asarray((low + high) / 2.0, dtype=np.float64)

    def predict_interval(self, X: pd.DataFrame, alpha: float) -> tuple[np.ndarray, np.ndarray]:
        """``[lo - q, hi + q]``, ``q`` the conformal quantile of the CQR scores.

        Parameters
        ----------
        X:
            Features.
        alpha:
            Nominal miscoverage, in (0, 1).

        Returns
        -------
        tuple of numpy.ndarray
            Lower and upper bounds (infinite when the calibration set is too small).
        """
        self._check_fitted()
        return self.interval_at(X, conformal_quantile(self.scores_, alpha))

    def conformity_scores(self, X: pd.DataFrame, y: np.ndarray) -> np.ndarray:
        """The CQR score ``max(lo(x) - y, y - hi(x))`` of each row (NaN where ``y`` is NaN).

        Parameters
        ----------
        X:
            Features.
        y:
            Observed targets, one per row.

        Returns
        -------
        numpy.ndarray
            Scores comparable with ``scores_``.
        """
        self._check_fitted()
        low, high = self._band(self._align(X))
        target = np.asarray(y, dtype=np.float64)
        return np.asarray(np.maximum(low - target, target - high), dtype=np.float64)

    def interval_at(self, X: pd.DataFrame, q: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """``[lo(x) - q, hi(x) + q]`` for a threshold ``q`` (one per row, or one for all).

        Parameters
        ----------
        X:
            Features.
        q:
            Score thresholds.

        Returns
        -------
        tuple of numpy.ndarray
            Lower and upper bounds (never crossed: see the class notes).
        """
        self._check_fitted()
        low, high = self._band(self._align(X))
        threshold = np.asarray(q, dtype=np.float64)
        lower, upper = low - threshold, high + threshold
        crossed = lower > upper
        middle = (low + high) / 2.0
        return np.where(crossed, middle, lower), np.where(crossed, middle, upper)


class CalibratedClassifier(_TailCalibrated):
    """A binary classifier whose P(y = 1) is recalibrated on the last training rows.

    Parameters
    ----------
    model:
        An unfitted classifier (``task="classification"``); it is cloned, not changed.
    method:
        ``"isotonic"`` (monotone step map; needs a few hundred calibration rows) or
        ``"sigmoid"`` (Platt scaling on the logit of P; two parameters, fine on small sets).
    calibration_fraction:
        Share of the last training rows used to calibrate, in (0, 1).
    gap:
        Rows dropped between the fitting head and the calibration tail.

    Attributes
    ----------
    model_ : BaseModel
        The clone fitted on the head.
    calibrator_ : object
        The fitted scikit-learn ``IsotonicRegression`` or ``LogisticRegression``.
    """

    kind = "calibrated"
    task = "classification"
    tasks = ("classification",)

    def __init__(
        self,
        model: BaseModel,
        method: Literal["isotonic", "sigmoid"] = "isotonic",
        calibration_fraction: float = 0.2,
        gap: int = 0,
    ) -> None:
        self.model = model
        self.method = method
        self.calibration_fraction = calibration_fraction
        self.gap = gap

    def _fit(
        self, X: pd.DataFrame, y: pd.Series, eval_set: tuple[pd.DataFrame, pd.Series] | None
    ) -> None:
        _require_task(self.model, ("classification",), self.kind)
        if self.method not in ("isotonic", "sigmoid"):
            raise ConfigError(
                f"calibrated: method must be 'isotonic' or 'sigmoid', got {self.method!r}"
            )
        head_stop, tail_start = self._split(len(y))
        self.model_ = self._fit_inner(self.model, X.iloc[:head_stop], y.iloc[:head_stop], eval_set)
        raw = predicted_value(self.model_, X)[tail_start:]
        tail_y = y.iloc[tail_start:].to_numpy(dtype=np.float64)
        # Sequence models give no prediction before their first full window.
        defined = np.isfinite(raw)
        raw, tail_y = raw[defined], tail_y[defined]
        if len(np.unique(tail_y)) < 2:
            raise ConfigError(
                "calibrated: the calibration rows hold one class only; "
                "raise calibration_fraction or give more rows"
            )
        self.calibrator_ = self._fit_calibrator(raw, tail_y)

    def _fit_calibrator(self, raw: np.ndarray, target: np.ndarray) -> Any:
        if self.method == "isotonic":
            from sklearn.isotonic import IsotonicRegression

            # Clip outside the calibrated range: a step map has nothing to say beyond it. And no
            # finite calibration set justifies certainty: the ends are kept 1/(m+2) away from 0
            # and 1 (m calibration rows), else one surprise costs an unbounded log loss.
            bound = 1.0 / (len(target) + 2)
            return IsotonicRegression(y_min=bound, y_max=1.0 - bound, out_of_bounds="clip").fit(
                raw, target
            )
        from sklearn.linear_model import LogisticRegression

        # A very weak penalty: Platt scaling is meant as a plain two-parameter fit.
        return LogisticRegression(C=1e6).fit(_logit(raw)[:, None], target.astype(int))

    def _predict(self, X: pd.DataFrame) -> np.ndarray:
        raw = predicted_value(self.model_, X)
        calibrated = np.full(len(raw), np.nan)
        defined = np.isfinite(raw)
        if self.method == "isotonic":
            calibrated[defined] = self.calibrator_.predict(raw[defined])
        elif defined.any():
            calibrated[defined] = self.calibrator_.predict_proba(_logit(raw[defined])[:, None])[
                :, 1
            ]
        return calibrated


def _logit(p: np.ndarray) -> np.ndarray:
    clipped = np.clip(p, _EPSILON, 1.0 - _EPSILON)
    return np.asarray(np.log(clipped / (1.0 - clipped)), dtype=np.float64)


def _require_task(model: BaseModel, tasks: tuple[str, ...], owner: str) -> None:
    if not isinstance(model, BaseModel):
        raise ConfigError(f"{owner}: expected a trademl model, got {type(model).__name__}")
    if model.task not in tasks:
        raise ConfigError(
            f"{owner}: the wrapped {model.kind} model has task {model.task!r}; "
            f"expected {' or '.join(tasks)}"
        )


__all__ = [
    "CalibratedClassifier",
    "ConformalQuantileRegressor",
    "SplitConformalRegressor",
    "conformal_quantile",
]
