"""Naive baselines: the forecasts a model must beat before it is worth anything.

Kind ``naive``, one class, the rule chosen by ``strategy``:

``zero`` (regression)
    Predicts 0: no move. For log returns this is the random-walk forecast.
``mean`` (regression or classification)
    The training-fold mean of ``y``: the historical drift. On a 0/1 target this is P(up).
``persistence`` (regression)
    The last value of the target known at ``t``. Labels look forward, so the value known at
    ``t`` of a forward ``h``-bar return is the *past* ``h``-bar return ``log(c[t] / c[t-h])``;
    the model reads it from the feature column ``persistence_feature`` (e.g. ``log_return_6``,
    from the ``log_return`` indicator with ``n: 6``). A model holds no prices, so the column is
    required.
``prior`` (classification)
    The class prior P(y = 1) of the training fold.
``volatility`` (regression)
    ``y ≈ a + Σ b_k · vol_k,t``, fitted by least squares on the training fold, where the
    ``vol_k,t`` are trailing realised volatilities known at ``t`` and the ``b_k`` share the
    target's sign (non-negative least squares on the sign-adjusted target: more volatility,
    wider range): the baseline for range targets
    such as ``max_high`` or ``-min_low``, whose size scales with volatility. With several columns
    (``volatility_features``: realised return volatility and realised range over a short, a
    medium and a long window) it is the HAR model of the volatility literature (Corsi's
    heterogeneous autoregression), the strongest simple forecast of a range. With one column
    (``volatility_feature``, by default ``rv_close_{volatility_window}``) it is ``a + b · vol_t``.
    The columns are required.

Regression strategies support ``predict_interval``: the interval is the point forecast plus the
``alpha/2`` and ``1 - alpha/2`` quantiles of the training-fold residuals. These baselines have
at most two free parameters, so in-sample residuals are a fair estimate of out-of-sample ones.

Missing feature values (NaN at the start of a series) fall back to a neutral forecast: zero
for ``persistence``, the training-fold median volatility for ``volatility``; a baseline should
always produce a number.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
from scipy.optimize import nnls

from trademl.errors import ConfigError
from trademl.models.base import BaseModel, register_model
from trademl.models.space import SearchSpace

if TYPE_CHECKING:
    from sklearn.utils import Tags

Strategy = Literal["zero", "mean", "persistence", "prior", "volatility"]

# Which tasks each strategy answers; anything else is refused at fit time.
_STRATEGY_TASKS: dict[str, tuple[str, ...]] = {
    "zero": ("regression",),
    "mean": ("regression", "classification"),
    "persistence": ("regression",),
    "prior": ("classification",),
    "volatility": ("regression",),
}


BASELINE_PREFIX = "naive_"
"""How runs name the baselines' columns (``naive_mean``, ``naive_volatility``...)."""
SEASONAL_BUCKETS = 168  # hours of a week
SEASONAL_SHRINKAGE = 50.0  # rows of prior weight on a factor of 1
SEASONAL_LIMITS = (0.25, 4.0)


def seasonal_factors(buckets: np.ndarray, target: np.ndarray, forecast: np.ndarray) -> np.ndarray:
    """Per bucket, the ratio of the mean target to the mean forecast, shrunk towards 1.

    ``(n_b · r_b + k) / (n_b + k)`` with ``r_b`` the bucket's ratio on its ``n_b`` rows and
    ``k`` = :data:`SEASONAL_SHRINKAGE`, clipped to :data:`SEASONAL_LIMITS`; rows whose bucket
    is unknown (-1) are left out.

    >>> b = np.array([0, 0, 1, 1])
    >>> seasonal_factors(b, np.array([2.0, 2.0, 1.0, 1.0]), np.ones(4))[:3].round(3)
    array([1.038, 1.   , 1.   ])
    """
    known = buckets >= 0
    b, t, f = buckets[known], target[known], forecast[known]
    count = np.bincount(b, minlength=SEASONAL_BUCKETS).astype(np.float64)
    total_t = np.bincount(b, weights=t, minlength=SEASONAL_BUCKETS)
    total_f = np.bincount(b, weights=f, minlength=SEASONAL_BUCKETS)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where((count > 0) & (total_f * total_t > 0), total_t / total_f, 1.0)
    shrunk = (count * ratio + SEASONAL_SHRINKAGE) / (count + SEASONAL_SHRINKAGE)
    return np.clip(shrunk, *SEASONAL_LIMITS)


@register_model
class NaiveModel(BaseModel):
    """A naive baseline forecast (see the module docstring for each strategy).

    Parameters
    ----------
    task:
        ``"regression"`` or ``"classification"`` (the latter for ``mean`` and ``prior``).
    strategy:
        ``"zero"``, ``"mean"``, ``"persistence"``, ``"prior"`` or ``"volatility"``.
    persistence_feature:
        Column of ``X`` holding the past value of the target (``persistence`` only).
    volatility_feature:
        Column of ``X`` holding the trailing realised volatility (``volatility`` only);
        ``None`` means ``rv_close_{volatility_window}``.
    volatility_window:
        Window of the default volatility column name.
    volatility_features:
        Several volatility columns for a HAR-style regression (``volatility`` only); takes
        precedence over ``volatility_feature``.
    seasonal_feature:
        Column of ``X`` holding a seasonal bucket 0-167 (``hour_of_week``; ``volatility``
        only): the HAR forecast is multiplied by the bucket's factor, the ratio of the
        training rows' mean target to their mean HAR forecast in that bucket, shrunk towards 1
        by :data:`SEASONAL_SHRINKAGE` rows (a bucket seen on few rows keeps a factor near 1).

    Attributes
    ----------
    constant_ : float
        The fitted constant (``mean``, ``prior``), 0 for ``zero``.
    intercept_ : float
        ``a`` of the ``volatility`` strategy.
    coefficients_ : numpy.ndarray
        The ``b_k`` of the ``volatility`` strategy, one per column.
    slope_ : float
        The first of ``coefficients_`` (the only one with a single column).
    seasonal_factors_ : numpy.ndarray or None
        The 168 bucket factors with ``seasonal_feature``, else None.
    residuals_ : numpy.ndarray
        Sorted training residuals ``y - prediction`` (regression), used by
        ``predict_interval``.

    Examples
    --------
    >>> import pandas as pd
    >>> X = pd.DataFrame({"f": [0.0, 1.0, 2.0, 3.0]})
    >>> NaiveModel(strategy="mean").fit(X, pd.Series([1.0, 2.0, 3.0, 6.0])).predict(X)
    array([3., 3., 3., 3.])
    """

    kind = "naive"
    tasks = ("regression", "classification")
    supports_interval = True

    @classmethod
    def search_space(cls) -> SearchSpace:
        """Nothing to search: the tuner scores each baseline strategy as it is."""
        return {}

    def __sklearn_tags__(self) -> Tags:
        """As every model's, with ``poor_score``: a baseline is not meant to fit well."""
        tags = super().__sklearn_tags__()
        for role in (tags.classifier_tags, tags.regressor_tags):
            if role is not None:
                role.poor_score = True
        return tags

    def __init__(
        self,
        task: str = "regression",
        strategy: Strategy = "mean",
        persistence_feature: str | None = None,
        volatility_feature: str | None = None,
        volatility_window: int = 20,
        volatility_features: list[str] | None = None,
        seasonal_feature: str | None = None,
    ) -> None:
        self.task = task
        self.strategy = strategy
        self.persistence_feature = persistence_feature
        self.volatility_feature = volatility_feature
        self.volatility_window = volatility_window
        self.volatility_features = volatility_features
        self.seasonal_feature = seasonal_feature

    # -- helpers ---------------------------------------------------------------------------

    def _volatility_columns(self) -> list[str]:
        if self.volatility_features:
            return list(self.volatility_features)
        if self.volatility_feature is not None:
            return [self.volatility_feature]
        return [f"rv_close_{self.volatility_window}"]

    def _column(self, X: pd.DataFrame, name: str, role: str, hint: str) -> np.ndarray:
        if name not in X.columns:
            raise ConfigError(
                f"naive strategy {self.strategy!r} reads the {role} from feature column "
                f"{name!r}, which X lacks ({hint}); a model sees no prices, so it cannot "
                "compute it itself"
            )
        try:
            return X[name].to_numpy(dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise ConfigError(f"naive: feature column {name!r} is not numeric") from error

    def _persistence_values(self, X: pd.DataFrame) -> np.ndarray:
        if self.persistence_feature is None:
            raise ConfigError(
                "naive strategy 'persistence' needs persistence_feature: the column holding "
                "the past value of the target, e.g. 'log_return_6' for forward_return_6"
            )
        values = self._column(
            X,
            self.persistence_feature,
            "past value of the target",
            "add the matching past-return feature, e.g. {indicator: log_return, params: {n: 6}}",
        )
        # The zero forecast is the neutral stand-in where the past value is not yet defined.
        return np.where(np.isfinite(values), values, 0.0)

    def _volatility_values(self, X: pd.DataFrame) -> np.ndarray:
        """The volatility columns as an (n, k) matrix."""
        columns = self._volatility_columns()
        missing = [name for name in columns if name not in X.columns]
        if missing:
            # The error names the first missing column and how to add it.
            self._column(
                X,
                missing[0],
                "trailing realised volatility",
                "add e.g. {indicator: rv_close, params: {window: "
                f"{self.volatility_window}}} or set volatility_feature(s)",
            )
        try:
            positions = self.__dict__.get("_volatility_positions_")
            if positions is None or len(X.columns) != self.__dict__.get("n_features_in_", -1):
                positions = X.columns.get_indexer(pd.Index(columns))
            # Positions into one numpy block, not a selection by name: a served row would pay
            # pandas' index machinery for every nested predict.
            return X.to_numpy(dtype=np.float64)[:, positions]
        except (TypeError, ValueError) as error:
            raise ConfigError(
                f"naive: feature column(s) {', '.join(columns)} are not all numeric"
            ) from error

    # -- fit / predict ---------------------------------------------------------------------

    def _fit(
        self, X: pd.DataFrame, y: pd.Series, eval_set: tuple[pd.DataFrame, pd.Series] | None
    ) -> None:
        allowed = _STRATEGY_TASKS.get(self.strategy)
        if allowed is None:
            raise ConfigError(
                f"naive: strategy={self.strategy!r} is not one of {', '.join(_STRATEGY_TASKS)}"
            )
        if self.task not in allowed:
            raise ConfigError(
                f"naive: strategy {self.strategy!r} answers task {' or '.join(allowed)}, "
                f"not {self.task!r}"
            )
        if not isinstance(self.volatility_window, int) or self.volatility_window < 2:
            raise ConfigError(
                f"naive: volatility_window must be an integer >= 2, got {self.volatility_window!r}"
            )
        target = y.to_numpy(dtype=np.float64)
        self.constant_ = 0.0
        self.intercept_ = 0.0
        self.slope_ = 0.0
        if self.strategy in ("mean", "prior"):
            self.constant_ = float(target.mean())
        elif self.strategy == "volatility":
            self._fit_volatility(X, target)
        elif self.strategy == "persistence":
            self._persistence_values(X)  # fail at fit time, not at the first predict
        if self.task == "regression":
            residuals = target - self._predict(X)
            self.residuals_ = np.sort(residuals)

    def _fit_volatility(self, X: pd.DataFrame, target: np.ndarray) -> None:
        vol = self._volatility_values(X)
        # predict sees X aligned to the fitted columns: the positions hold from here on.
        self._volatility_positions_ = X.columns.get_indexer(pd.Index(self._volatility_columns()))
        finite = np.isfinite(vol).all(axis=1)
        columns = vol.shape[1]
        if finite.sum() < columns + 1:
            raise ConfigError(
                f"naive: feature column(s) {', '.join(self._volatility_columns())} have fewer "
                f"than {columns + 1} rows with every value finite in the training rows"
            )
        v, t = vol[finite], target[finite]
        self.fill_volatility_ = np.median(v, axis=0)
        centred = v - v.mean(axis=0)
        # More volatility means a wider range, never a narrower one: the coefficients share
        # the sign of the target (positive for max-high, negative for min-low), fitted by
        # non-negative least squares on centred columns (a free intercept). Unconstrained,
        # correlated windows trade large opposite weights that extrapolate badly.
        sign = -1.0 if t.mean() < 0 else 1.0
        spread = centred.std(axis=0) > 0
        coefficients = np.zeros(columns)
        if spread.any():
            solution, _ = nnls(centred[:, spread], sign * (t - t.mean()))
            coefficients[spread] = sign * solution
        self.coefficients_ = coefficients
        self.slope_ = float(coefficients[0])
        self.intercept_ = float(t.mean() - v.mean(axis=0) @ coefficients)
        self.seasonal_factors_ = None
        if self.seasonal_feature is not None:
            buckets = self._buckets(X)[finite]
            linear = self.intercept_ + v @ coefficients
            self.seasonal_factors_ = seasonal_factors(buckets, t, linear)

    def _buckets(self, X: pd.DataFrame) -> np.ndarray:
        """The seasonal bucket of each row as an index 0-167 (-1 where unknown)."""
        assert self.seasonal_feature is not None
        values = self._column(
            X, self.seasonal_feature, "seasonal bucket", "add {indicator: hour_of_week}"
        )
        known = np.isfinite(values) & (values >= 0) & (values < SEASONAL_BUCKETS)
        return np.where(known, values, -1).astype(np.int64)

    def _predict(self, X: pd.DataFrame) -> np.ndarray:
        n = len(X)
        if self.strategy == "persistence":
            return self._persistence_values(X)
        if self.strategy == "volatility":
            vol = self._volatility_values(X)
            vol = np.where(np.isfinite(vol), vol, self.fill_volatility_)
            linear = self.intercept_ + vol @ self.coefficients_
            factors = self.__dict__.get("seasonal_factors_")
            if factors is not None:
                linear = linear * np.append(factors, 1.0)[self._buckets(X)]  # -1: no factor
            return np.asarray(linear, dtype=np.float64)
        return np.full(n, self.constant_, dtype=np.float64)

    def predict_interval(self, X: pd.DataFrame, alpha: float) -> tuple[np.ndarray, np.ndarray]:
        """Point forecast plus the training residuals' ``alpha/2`` and ``1 - alpha/2`` quantiles.

        Parameters
        ----------
        X:
            Features (the columns the model was fitted on).
        alpha:
            Nominal miscoverage, in (0, 1).

        Returns
        -------
        tuple of numpy.ndarray
            Lower and upper bounds.
        """
        self._check_fitted()
        if self.task != "regression":
            raise ConfigError("naive: prediction intervals exist for task 'regression' only")
        _check_alpha(alpha)
        point = self.predict(X)
        low, high = np.quantile(self.residuals_, [alpha / 2, 1 - alpha / 2])
        return point + low, point + high


def _check_alpha(alpha: float) -> None:
    if not 0.0 < float(alpha) < 1.0:
        raise ConfigError(f"alpha must lie strictly between 0 and 1, got {alpha!r}")
