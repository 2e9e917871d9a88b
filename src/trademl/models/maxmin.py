"""The max/min predictor: per horizon, the future high and low (log ratios and prices), the
probability of an up move, and a confidence.

Confidence is defined from the calibrated probability: ``|2 · p_up - 1|``, 0 when the model
cannot tell up from down and 1 when it is certain; because ``p_up`` is calibrated inside each
training fold, a confidence of 0.2 means the model's up/down calls at that level are right about
60% of the time out of sample. Interval bounds on the high and low come from conformal
intervals fitted within the training data.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from trademl.models.base import BaseModel


@dataclass
class HorizonModels:
    """The three fitted models of one horizon."""

    horizon_bars: int
    direction: BaseModel
    max_high: BaseModel
    min_low: BaseModel


@dataclass
class MaxMinPredictor:
    """Fitted per-horizon models turned into high / low / P(up) / confidence."""

    horizons: dict[str, HorizonModels] = field(default_factory=dict)
    alpha: float = 0.1

    def fit(
        self,
        X: pd.DataFrame,
        labels: pd.DataFrame,
        factories: Mapping[str, Callable[[], BaseModel]],
        horizons: Mapping[str, int],
    ) -> MaxMinPredictor:
        """Fit, per named horizon, a direction classifier and max-high / min-low regressors.

        ``labels`` holds ``direction_{h}``, ``max_high_{h}`` and ``min_low_{h}``; ``factories``
        maps ``"classification"`` and ``"regression"`` to model builders; a
        ``"regression_{bars}"`` builder, when given, serves that horizon's regressors.
        """
        for name, bars in horizons.items():
            direction = labels[f"direction_{bars}"]
            up_rows = direction.notna() & (direction != 0)
            reg_rows = labels[f"max_high_{bars}"].notna() & labels[f"min_low_{bars}"].notna()
            classifier = factories["classification"]().fit(
                X[up_rows], (direction[up_rows] > 0).astype(float)
            )
            regression = factories.get(f"regression_{bars}", factories["regression"])
            high = regression().fit(X[reg_rows], labels.loc[reg_rows, f"max_high_{bars}"])
            low = regression().fit(X[reg_rows], labels.loc[reg_rows, f"min_low_{bars}"])
            self.horizons[name] = HorizonModels(bars, classifier, high, low)
        return self

    def predict(self, X: pd.DataFrame, close: pd.Series) -> pd.DataFrame:
        """Per horizon: ``p_up``, ``confidence``, ``high_log``, ``low_log``, ``high``, ``low`` and
        the interval bounds ``high_lo``/``high_hi``/``low_lo``/``low_hi`` (prices)."""
        out: dict[str, np.ndarray] = {}
        price = close.to_numpy(dtype=np.float64)
        for name, models in self.horizons.items():
            p_up = models.direction.predict(X)
            high_log, low_log = models.max_high.predict(X), models.min_low.predict(X)
            out[f"{name}__p_up"] = p_up
            out[f"{name}__confidence"] = np.abs(2.0 * p_up - 1.0)
            out[f"{name}__high_log"], out[f"{name}__low_log"] = high_log, low_log
            out[f"{name}__high"], out[f"{name}__low"] = (
                price * np.exp(high_log),
                price * np.exp(low_log),
            )
            for target, model in (("high", models.max_high), ("low", models.min_low)):
                if model.supports_interval:
                    lower, upper = model.predict_interval(X, self.alpha)
                    out[f"{name}__{target}_lo"] = price * np.exp(lower)
                    out[f"{name}__{target}_hi"] = price * np.exp(upper)
        return pd.DataFrame(out, index=X.index)
