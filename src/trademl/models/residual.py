"""Residual learning: a learned model fitted on top of the HAR volatility baseline.

The size of a bar range (``max_high``, ``min_low``) is mostly volatility, and a linear
regression on trailing realised volatility and range (the HAR baseline,
:class:`~trademl.models.naive.NaiveModel` with ``strategy="volatility"``) already captures
most of what can be forecast. A learned model that starts from zero must rediscover that
relation from noisy rows, and in practice loses to the baseline. :class:`ResidualRegressor`
fits the baseline on the training rows, then fits the learned model on what the baseline
leaves (``y - baseline``), and predicts their sum. For squared and quantile losses this is
the same as boosting from the baseline's predictions as initial scores (LightGBM's
``init_score``, XGBoost's ``base_margin``): the gradient of ``(b + f) - y`` in ``f`` is the
gradient of ``f - (y - b)``. It works the same for every kind, deep ones included.

>>> import numpy as np, pandas as pd
>>> from trademl.models.naive import NaiveModel
>>> rng = np.random.default_rng(0)
>>> X = pd.DataFrame({"rv": rng.uniform(0.01, 0.05, 500), "f": rng.normal(size=500)})
>>> y = pd.Series(2 * X["rv"] + 0.001 * X["f"])
>>> model = ResidualRegressor(NaiveModel(strategy="mean"), ["rv"]).fit(X, y)
>>> round(float(model.baseline_.coefficients_[0]), 2)  # the baseline took the volatility
2.0
>>> bool(np.abs(model.predict(X) - y).max() < 0.005)  # the learned part: what is left
True
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from trademl.models.base import BaseModel
from trademl.models.naive import NaiveModel


class ResidualRegressor(BaseModel):
    """A regression (or quantile) model fitted on the residual of the HAR baseline.

    Parameters
    ----------
    model : BaseModel
        The unfitted learned model; it is cloned, not changed.
    volatility_features : list of str
        The columns of ``X`` the baseline regresses on (trailing realised volatility and
        range over several windows).
    seasonal_feature : str or None
        The column of ``X`` holding the hour-of-week bucket of the baseline's seasonal profile
        (fitted on the training rows, as the rest of it); None for none.

    Attributes
    ----------
    baseline_ : NaiveModel
        The HAR baseline, fitted on the training rows.
    model_ : BaseModel
        The learned model, fitted on ``y - baseline_.predict(X)``.
    """

    kind = "residual"
    tasks = ("regression", "quantile")
    onnx_export = "residual"

    def __init__(
        self,
        model: BaseModel,
        volatility_features: list[str],
        seasonal_feature: str | None = None,
    ) -> None:
        self.model = model
        self.volatility_features = volatility_features
        self.seasonal_feature = seasonal_feature

    @property
    def task(self) -> str:  # type: ignore[override]
        """The learned model's task (regression or quantile)."""
        return str(self.model.task)

    @property
    def supports_interval(self) -> bool:  # type: ignore[override]
        """Whether the learned model gives intervals (shifted by the baseline)."""
        return bool(self.model.supports_interval)

    @property
    def is_sequence(self) -> bool:  # type: ignore[override]
        """Whether the learned model reads ordered windows of rows."""
        return bool(self.model.is_sequence)

    def _fit(
        self, X: pd.DataFrame, y: pd.Series, eval_set: tuple[pd.DataFrame, pd.Series] | None
    ) -> None:
        baseline = NaiveModel(
            strategy="volatility",
            volatility_features=self.volatility_features,
            seasonal_feature=self.seasonal_feature,
        )
        self.baseline_ = baseline.fit(X, y)
        residual = y - self.baseline_.predict(X)
        if eval_set is not None:
            eval_X, eval_y = eval_set
            eval_set = (eval_X, eval_y - self.baseline_.predict(eval_X))
        self.model_ = self.model.clone().fit(X, residual, eval_set=eval_set)

    def _predict(self, X: pd.DataFrame) -> np.ndarray:
        return np.asarray(self.baseline_.predict(X) + self.model_.predict(X), dtype=np.float64)

    def predict_interval(self, X: pd.DataFrame, alpha: float) -> tuple[np.ndarray, np.ndarray]:
        """The learned model's interval on the residual, shifted by the baseline.

        Parameters
        ----------
        X : pandas.DataFrame
            Features.
        alpha : float
            Nominal miscoverage, in (0, 1).

        Returns
        -------
        tuple of numpy.ndarray
            Lower and upper bounds.
        """
        self._check_fitted()
        base = self.baseline_.predict(X)
        lower, upper = self.model_.predict_interval(X, alpha)
        return base + lower, base + upper
