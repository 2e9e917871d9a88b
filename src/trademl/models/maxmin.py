"""The max/min predictor: per horizon, the future high and low (log ratios and prices), the
probability of an up move, and a confidence.

The intervals' miscoverage is ``alpha``, or for a target validated with adaptive conformal
inference the level its out-of-sample path ended at (``interval_alpha``), so that what is served
is what was validated.

Confidence is defined from the calibrated probability: ``|2 · p_up - 1|``, 0 when the model
cannot tell up from down and 1 when it is certain; because ``p_up`` is calibrated inside each
training fold, a confidence of 0.2 means the model's up/down calls at that level are right about
60% of the time out of sample. Interval bounds on the high and low come from conformal
intervals fitted within the training data.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from trademl.models.base import BaseModel, predicted_value


@dataclass
class HorizonModels:
    """The three fitted models of one horizon."""

    horizon_bars: int
    direction: BaseModel
    max_high: BaseModel
    min_low: BaseModel
    # Target -> the forecast serving it: the learned model's name or a baseline's (naive_*).
    sources: dict[str, str] = field(default_factory=dict)


@dataclass
class MaxMinPredictor:
    """Fitted per-horizon models turned into high / low / P(up) / confidence."""

    horizons: dict[str, HorizonModels] = field(default_factory=dict)
    alpha: float = 0.1
    # "{horizon}__{max_high|min_low}" -> miscoverage served (the end of the adaptive path).
    interval_alpha: dict[str, float] = field(default_factory=dict)

    def served_alpha(self, horizon: str, target: str) -> float:
        """The miscoverage of the intervals served for ``target`` at ``horizon``.

        Parameters
        ----------
        horizon : str
            Horizon name, as in :attr:`horizons`.
        target : str
            ``max_high`` or ``min_low``.

        Returns
        -------
        float
            The adaptive level the validated path ended at, else the nominal ``alpha``.
        """
        # Pickles written before adaptive intervals carry no interval_alpha.
        levels = self.__dict__.get("interval_alpha") or {}
        return float(levels.get(f"{horizon}__{target}", self.alpha))

    def fit(
        self,
        X: pd.DataFrame,
        labels: pd.DataFrame,
        factories: Mapping[str, Callable[[], BaseModel]],
        horizons: Mapping[str, int],
        *,
        sources: Mapping[str, str] | None = None,
        columns: Sequence[str] | None = None,
    ) -> MaxMinPredictor:
        """Fit, per named horizon, a direction classifier and max-high / min-low regressors.

        ``labels`` holds ``direction_{h}``, ``max_high_{h}`` and ``min_low_{h}``; ``factories``
        maps ``"classification"`` and ``"regression"`` to model builders; a
        ``"regression_{bars}"`` builder, when given, serves that horizon's regressors, and a
        ``"{kind}_{bars}"`` builder (a baseline the gate chose) serves that one target.
        ``sources`` names what serves each target (``"{kind}_{bars}"`` keys, ``"model"`` the
        default name of the learned one); ``columns``: the columns of ``X`` the learned models
        read (all by default; the baselines select their own).
        """
        named = dict(sources or {})
        learned_X = X if columns is None else X.loc[:, list(columns)]
        for name, bars in horizons.items():
            direction = labels[f"direction_{bars}"]
            up_rows = direction.notna() & (direction != 0)
            reg_rows = labels[f"max_high_{bars}"].notna() & labels[f"min_low_{bars}"].notna()
            regression = factories.get(f"regression_{bars}", factories["regression"])
            fitted: dict[str, BaseModel] = {}
            for kind, rows, default in (
                ("direction", up_rows, factories["classification"]),
                ("max_high", reg_rows, regression),
                ("min_low", reg_rows, regression),
            ):
                chosen = factories.get(f"{kind}_{bars}")
                y = labels.loc[rows, f"{kind}_{bars}"]
                if kind == "direction":
                    y = (y > 0).astype(float)
                inputs = X if chosen is not None else learned_X
                fitted[kind] = (chosen or default)().fit(inputs[rows], y)
            served = {
                kind: named.get(f"{kind}_{bars}", named.get("model", "model"))
                for kind in ("direction", "max_high", "min_low")
            }
            self.horizons[name] = HorizonModels(
                bars, fitted["direction"], fitted["max_high"], fitted["min_low"], served
            )
        return self

    def served_by(self, horizon: str) -> dict[str, str]:
        """What serves each target of ``horizon``: the learned model's name or a baseline's.

        Pipelines saved before the gate chose per target serve their learned model everywhere
        (``"model"``).
        """
        sources = getattr(self.horizons[horizon], "sources", None) or {}
        return {kind: sources.get(kind, "model") for kind in ("direction", "max_high", "min_low")}

    def predict(self, X: pd.DataFrame, close: pd.Series) -> pd.DataFrame:
        """Per horizon: ``p_up``, ``confidence``, ``high_log``, ``low_log``, ``high``, ``low`` and
        the interval bounds ``high_lo``/``high_hi``/``low_lo``/``low_hi`` (prices)."""
        out: dict[str, np.ndarray] = {}
        price = close.to_numpy(dtype=np.float64)
        for name, models in self.horizons.items():
            p_up = predicted_value(models.direction, X)
            high_log, low_log = models.max_high.predict(X), models.min_low.predict(X)
            out[f"{name}__p_up"] = p_up
            out[f"{name}__confidence"] = np.abs(2.0 * p_up - 1.0)
            out[f"{name}__high_log"], out[f"{name}__low_log"] = high_log, low_log
            out[f"{name}__high"], out[f"{name}__low"] = (
                price * np.exp(high_log),
                price * np.exp(low_log),
            )
            for target, label, model in (
                ("high", "max_high", models.max_high),
                ("low", "min_low", models.min_low),
            ):
                if model.supports_interval:
                    lower, upper = model.predict_interval(X, self.served_alpha(name, label))
                    out[f"{name}__{target}_lo"] = price * np.exp(lower)
                    out[f"{name}__{target}_hi"] = price * np.exp(upper)
        return pd.DataFrame(out, index=X.index)
