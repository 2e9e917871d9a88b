"""``example_ridge``: ridge regression (and a logistic classifier) on median-filled features."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression, Ridge

from trademl.errors import ConfigError
from trademl.models.base import BaseModel


class ExampleRidge(BaseModel):
    """A linear model: ridge for regression, L2 logistic regression for classification.

    Parameters
    ----------
    task : str
        ``"regression"`` or ``"classification"``.
    l2 : float
        The L2 penalty (> 0).
    """

    kind = "example_ridge"
    tasks = ("regression", "classification")

    def __init__(self, task: str = "regression", l2: float = 1.0) -> None:
        self.task = task
        self.l2 = l2

    def _fit(
        self, X: pd.DataFrame, y: pd.Series, eval_set: tuple[pd.DataFrame, pd.Series] | None
    ) -> None:
        if not self.l2 > 0:
            raise ConfigError(f"example_ridge: l2 must be > 0, got {self.l2!r}")
        values = X.to_numpy(dtype=np.float64)
        medians = np.nanmedian(values, axis=0)
        self.medians_ = np.where(np.isfinite(medians), medians, 0.0)
        self.scale_ = np.nanstd(values, axis=0)
        self.scale_ = np.where(np.isfinite(self.scale_) & (self.scale_ > 0), self.scale_, 1.0)
        inputs = self._inputs(values)
        estimator: Any
        if self.task == "classification":
            estimator = LogisticRegression(C=1.0 / self.l2)
        else:
            estimator = Ridge(alpha=self.l2)
        self.estimator_ = estimator.fit(inputs, y.to_numpy(dtype=np.float64))

    def _inputs(self, values: np.ndarray) -> np.ndarray:
        filled = np.where(np.isfinite(values), values, self.medians_)
        return (filled - self.medians_) / self.scale_

    def _predict(self, X: pd.DataFrame) -> np.ndarray:
        inputs = self._inputs(X.to_numpy(dtype=np.float64))
        if self.task == "classification":
            return np.asarray(self.estimator_.predict_proba(inputs)[:, 1], dtype=np.float64)
        return np.asarray(self.estimator_.predict(inputs), dtype=np.float64)
