"""Gradient-boosted trees: kinds ``lgbm`` (LightGBM) and ``xgb`` (XGBoost).

Both answer the three tasks: ``classification`` (binary; ``predict_proba`` gives P(y = 1),
``predict`` the label), ``regression`` (squared error) and ``quantile`` (pinball loss at level
``alpha``, so they serve conformalised quantile regression: ``supports_quantile``). Both export
to ONNX (``onnx_export = "tree"``) and declare their Optuna search space (``search_space``).

Early stopping, and why it never sees the future
    With ``early_stopping_rounds`` set (the default) and no explicit ``eval_set``, the rows given
    to ``fit`` are split in time order: the trees are grown on the *head* and the number of
    trees is chosen on the *tail*, the last ``validation_fraction`` of the rows.
    ``validation_gap`` rows between the two are dropped, so that a head label looking ``h``
    bars forward does not overlap the tail (set it to the label horizon). The model kept is
    the one grown on the head, cut at the best round; it is not refitted on all rows, so the
    number of trees stays the one that was validated. Only the rows passed to ``fit`` are
    used: rows after the training fold cannot reach the model. An explicit
    ``eval_set=(X_valid, y_valid)`` replaces the tail (the trees then grow on every row given);
    the caller must then make sure it holds no test rows. ``early_stopping_rounds=None`` grows
    all ``n_estimators`` trees on every row (an ``eval_set`` is then ignored).

Determinism
    The same data and hyperparameters give the same model: seeds come from ``random_state``,
    LightGBM runs with ``deterministic`` and ``force_col_wise``, XGBoost with the ``hist``
    method. Changing ``n_jobs`` gave identical models in our checks, but only a fixed
    ``n_jobs`` is promised to reproduce a model bit for bit.

Learned attributes: ``booster_`` (the library's booster), ``best_iteration_`` (the number of
trees used by ``predict``, counted from 1) and ``feature_importances_`` (total split gain per
feature, in the order of ``feature_names_in_``, normalised to sum to 1).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pandas as pd

from trademl.budget import check_budget, lightgbm_callback, time_left
from trademl.errors import ConfigError
from trademl.models.base import BaseModel, ModelInputError, as_frame, check_xy, register_model
from trademl.models.space import SearchSpace, integer, log_uniform, uniform


def tail_split(n_rows: int, fraction: float, gap: int, *, owner: str, role: str) -> tuple[int, int]:
    """Positions splitting ``n_rows`` time-ordered rows into a head and a tail.

    Parameters
    ----------
    n_rows:
        Number of rows, oldest first.
    fraction:
        Share of the rows in the tail, in (0, 1).
    gap:
        Rows dropped between head and tail (purging of overlapping forward labels).
    owner, role:
        Who asks and what the tail is for, to word the errors.

    Returns
    -------
    tuple of int
        ``(head_stop, tail_start)``: the head is ``[0, head_stop)``, the tail
        ``[tail_start, n_rows)``.

    Examples
    --------
    >>> tail_split(100, 0.2, 5, owner="demo", role="validation")
    (75, 80)
    """
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"{owner}: the {role} fraction must lie in (0, 1), got {fraction!r}")
    if not isinstance(gap, int) or gap < 0:
        raise ConfigError(f"{owner}: the {role} gap must be an integer >= 0, got {gap!r}")
    n_tail = round(n_rows * fraction)
    head_stop = n_rows - n_tail - gap
    if n_tail < 1 or head_stop < 2:
        raise ConfigError(
            f"{owner}: {n_rows} rows are too few for a {role} tail of {fraction:g} "
            f"and a gap of {gap} rows (the head needs >= 2 rows, the tail >= 1)"
        )
    return head_stop, n_rows - n_tail


#: Predictions on at most this many rows run on one thread.
SMALL_BATCH_ROWS = 64


def _matrix(X: pd.DataFrame, owner: str) -> np.ndarray:
    """Features as a float64 array; NaN is kept (both libraries route missing values)."""
    try:
        return X.to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{owner}: every feature column must be numeric ({error})") from error


def _threads(n_jobs: int) -> int:
    if n_jobs == -1:
        try:
            return len(os.sched_getaffinity(0))
        except AttributeError:  # not on Linux
            return os.cpu_count() or 1
    if not isinstance(n_jobs, int) or n_jobs < 1:
        raise ConfigError(f"n_jobs must be -1 (all cores) or a positive integer, got {n_jobs!r}")
    return n_jobs


class _BoostedModel(BaseModel):
    """Shared hyperparameter checks and the head/tail split of the boosted kinds."""

    supports_interval = False
    supports_quantile = True
    onnx_export = "tree"

    alpha: float
    n_estimators: int
    learning_rate: float
    subsample: float
    colsample_bytree: float
    reg_lambda: float
    early_stopping_rounds: int | None
    validation_fraction: float
    validation_gap: int
    random_state: int
    n_jobs: int

    def _check_params(self) -> None:
        owner = self.kind
        if not isinstance(self.n_estimators, int) or self.n_estimators < 1:
            raise ConfigError(f"{owner}: n_estimators must be an integer >= 1")
        if not self.learning_rate > 0:
            raise ConfigError(f"{owner}: learning_rate must be > 0, got {self.learning_rate!r}")
        for name in ("subsample", "colsample_bytree"):
            value = getattr(self, name)
            if not 0.0 < value <= 1.0:
                raise ConfigError(f"{owner}: {name} must lie in (0, 1], got {value!r}")
        if self.task == "quantile" and not 0.0 < self.alpha < 1.0:
            raise ConfigError(f"{owner}: alpha must lie in (0, 1) for task quantile")
        rounds = self.early_stopping_rounds
        if rounds is not None and (not isinstance(rounds, int) or rounds < 1):
            raise ConfigError(f"{owner}: early_stopping_rounds must be None or an integer >= 1")

    def _fit(
        self, X: pd.DataFrame, y: pd.Series, eval_set: tuple[pd.DataFrame, pd.Series] | None
    ) -> None:
        self._check_params()
        if len(X) < 2:
            raise ModelInputError(f"{self.kind}: n_samples={len(X)}; trees need at least 2 rows")
        features = _matrix(X, self.kind)
        target = y.to_numpy(dtype=np.float64)
        valid: tuple[np.ndarray, np.ndarray] | None = None
        if self.early_stopping_rounds is not None:
            if eval_set is not None:
                X_valid, y_valid = check_xy(
                    as_frame(eval_set[0], self.kind), eval_set[1], self.kind
                )
                valid = (_matrix(self._align(X_valid), self.kind), y_valid.to_numpy(np.float64))
            else:
                head_stop, tail_start = tail_split(
                    len(target),
                    self.validation_fraction,
                    self.validation_gap,
                    owner=self.kind,
                    role="early-stopping validation",
                )
                valid = (features[tail_start:], target[tail_start:])
                features, target = features[:head_stop], target[:head_stop]
        if self.task == "classification" and len(np.unique(target)) < 2:
            raise ConfigError(
                f"{self.kind}: the rows the trees grow on (before the validation tail) hold "
                "one class only; give more rows or set early_stopping_rounds=None"
            )
        self._train(features, target, valid)

    def _train(
        self, X: np.ndarray, y: np.ndarray, valid: tuple[np.ndarray, np.ndarray] | None
    ) -> None:
        raise NotImplementedError


@register_model
class LGBMModel(_BoostedModel):
    """LightGBM trees, trained with the native ``lightgbm.train``.

    Parameters
    ----------
    task:
        ``"regression"``, ``"classification"`` or ``"quantile"``.
    alpha:
        Quantile level of task ``quantile`` (ignored otherwise).
    n_estimators:
        Maximum number of boosting rounds.
    learning_rate:
        Shrinkage per round.
    num_leaves:
        Maximum leaves per tree.
    max_depth:
        Maximum tree depth, -1 for no limit.
    min_child_samples:
        Minimum rows per leaf; large values suit noisy targets.
    subsample:
        Share of rows drawn (without replacement) for each tree.
    subsample_freq:
        Draw rows every this many rounds (0 disables row subsampling).
    colsample_bytree:
        Share of features drawn for each tree.
    reg_lambda:
        L2 penalty on leaf values.
    early_stopping_rounds:
        Stop when the validation loss has not improved for this many rounds; None disables.
    validation_fraction:
        Share of the last rows used as the early-stopping tail.
    validation_gap:
        Rows dropped between the head and the tail (set to the label horizon).
    random_state:
        Seed of every random draw.
    n_jobs:
        Threads; -1 uses every core available to the process.
    """

    kind = "lgbm"

    @classmethod
    def search_space(cls) -> SearchSpace:
        """Rate, leaves, leaf size, subsampling, L2 and the number of trees."""
        return {
            "learning_rate": log_uniform(0.01, 0.3),
            "num_leaves": integer(7, 127, log=True),
            "min_child_samples": integer(10, 300, log=True),
            "subsample": uniform(0.5, 1.0),
            "colsample_bytree": uniform(0.4, 1.0),
            "reg_lambda": log_uniform(1e-3, 10.0),
            "n_estimators": integer(100, 1000, log=True),
        }

    def __init__(
        self,
        task: str = "regression",
        alpha: float = 0.9,
        n_estimators: int = 500,
        learning_rate: float = 0.05,
        num_leaves: int = 15,
        max_depth: int = -1,
        min_child_samples: int = 50,
        subsample: float = 0.8,
        subsample_freq: int = 1,
        colsample_bytree: float = 0.8,
        reg_lambda: float = 1.0,
        early_stopping_rounds: int | None = 50,
        validation_fraction: float = 0.15,
        validation_gap: int = 0,
        random_state: int = 0,
        n_jobs: int = -1,
    ) -> None:
        self.task = task
        self.alpha = alpha
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.max_depth = max_depth
        self.min_child_samples = min_child_samples
        self.subsample = subsample
        self.subsample_freq = subsample_freq
        self.colsample_bytree = colsample_bytree
        self.reg_lambda = reg_lambda
        self.early_stopping_rounds = early_stopping_rounds
        self.validation_fraction = validation_fraction
        self.validation_gap = validation_gap
        self.random_state = random_state
        self.n_jobs = n_jobs

    def _library_params(self) -> dict[str, Any]:
        objective, metric = {
            "regression": ("regression", "l2"),
            "classification": ("binary", "binary_logloss"),
            "quantile": ("quantile", "quantile"),
        }[self.task]
        params: dict[str, Any] = {
            "objective": objective,
            "metric": metric,
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "max_depth": self.max_depth,
            "min_data_in_leaf": self.min_child_samples,
            "bagging_fraction": self.subsample,
            "bagging_freq": self.subsample_freq if self.subsample < 1.0 else 0,
            "feature_fraction": self.colsample_bytree,
            "lambda_l2": self.reg_lambda,
            "seed": self.random_state,
            "num_threads": _threads(self.n_jobs),
            "deterministic": True,
            "force_col_wise": True,
            "verbosity": -1,
        }
        if self.task == "quantile":
            params["alpha"] = self.alpha
        return params

    def _train(
        self, X: np.ndarray, y: np.ndarray, valid: tuple[np.ndarray, np.ndarray] | None
    ) -> None:
        import lightgbm as lgb

        params = self._library_params()
        train_set = lgb.Dataset(X, label=y, params={"verbosity": -1})
        valid_sets: list[Any] = []
        callbacks: list[Any] = []
        rounds = self.early_stopping_rounds
        if valid is not None and rounds is not None:
            valid_sets.append(lgb.Dataset(valid[0], label=valid[1], reference=train_set))
            callbacks.append(lgb.early_stopping(rounds, first_metric_only=True, verbose=False))
        if time_left() < float("inf"):  # inside a search's time budget: stop at it
            callbacks.append(lightgbm_callback())
        booster = lgb.train(
            params,
            train_set,
            num_boost_round=self.n_estimators,
            valid_sets=valid_sets,
            callbacks=callbacks,
        )
        self.booster_ = booster
        # best_iteration is 0 when no validation set was watched: every round is kept.
        self.best_iteration_ = int(booster.best_iteration or booster.current_iteration())
        gain = np.asarray(
            booster.feature_importance(importance_type="gain", iteration=self.best_iteration_),
            dtype=np.float64,
        )
        self.feature_importances_ = gain / gain.sum() if gain.sum() > 0 else gain

    def _predict(self, X: pd.DataFrame) -> np.ndarray:
        # A few rows (serving) on one thread: waking and spinning an OpenMP pool costs ~1 ms per
        # call, far more than the trees themselves.
        matrix = _matrix(X, self.kind)
        if len(X) <= SMALL_BATCH_ROWS:
            values = self.booster_.predict(
                matrix, num_iteration=self.best_iteration_, num_threads=1
            )
        else:
            values = self.booster_.predict(matrix, num_iteration=self.best_iteration_)
        return np.asarray(values, dtype=np.float64)


@register_model
class XGBModel(_BoostedModel):
    """XGBoost trees (``hist`` method), trained with the native ``xgboost.train``.

    Parameters
    ----------
    task:
        ``"regression"``, ``"classification"`` or ``"quantile"``.
    alpha:
        Quantile level of task ``quantile`` (ignored otherwise).
    n_estimators:
        Maximum number of boosting rounds.
    learning_rate:
        Shrinkage per round.
    max_depth:
        Maximum tree depth.
    min_child_weight:
        Minimum hessian sum per leaf (about the row count for regression).
    subsample:
        Share of rows drawn for each tree.
    colsample_bytree:
        Share of features drawn for each tree.
    reg_lambda:
        L2 penalty on leaf values.
    early_stopping_rounds:
        Stop when the validation loss has not improved for this many rounds; None disables.
    validation_fraction:
        Share of the last rows used as the early-stopping tail.
    validation_gap:
        Rows dropped between the head and the tail (set to the label horizon).
    random_state:
        Seed of every random draw.
    n_jobs:
        Threads; -1 uses every core available to the process.
    """

    kind = "xgb"

    @classmethod
    def search_space(cls) -> SearchSpace:
        """Rate, depth, leaf weight, subsampling, L2 and the number of trees."""
        return {
            "learning_rate": log_uniform(0.01, 0.3),
            "max_depth": integer(2, 8),
            "min_child_weight": log_uniform(1.0, 100.0),
            "subsample": uniform(0.5, 1.0),
            "colsample_bytree": uniform(0.4, 1.0),
            "reg_lambda": log_uniform(1e-3, 10.0),
            "n_estimators": integer(100, 1000, log=True),
        }

    def __init__(
        self,
        task: str = "regression",
        alpha: float = 0.9,
        n_estimators: int = 500,
        learning_rate: float = 0.05,
        max_depth: int = 4,
        min_child_weight: float = 10.0,
        subsample: float = 0.8,
        colsample_bytree: float = 0.8,
        reg_lambda: float = 1.0,
        early_stopping_rounds: int | None = 50,
        validation_fraction: float = 0.15,
        validation_gap: int = 0,
        random_state: int = 0,
        n_jobs: int = -1,
    ) -> None:
        self.task = task
        self.alpha = alpha
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.max_depth = max_depth
        self.min_child_weight = min_child_weight
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.reg_lambda = reg_lambda
        self.early_stopping_rounds = early_stopping_rounds
        self.validation_fraction = validation_fraction
        self.validation_gap = validation_gap
        self.random_state = random_state
        self.n_jobs = n_jobs

    def _library_params(self) -> dict[str, Any]:
        objective, metric = {
            "regression": ("reg:squarederror", "rmse"),
            "classification": ("binary:logistic", "logloss"),
            "quantile": ("reg:quantileerror", "quantile"),
        }[self.task]
        params: dict[str, Any] = {
            "objective": objective,
            "eval_metric": metric,
            "eta": self.learning_rate,
            "max_depth": self.max_depth,
            "min_child_weight": self.min_child_weight,
            "subsample": self.subsample,
            "colsample_bytree": self.colsample_bytree,
            "lambda": self.reg_lambda,
            "tree_method": "hist",
            "seed": self.random_state,
            "nthread": _threads(self.n_jobs),
            "verbosity": 0,
        }
        if self.task == "quantile":
            params["quantile_alpha"] = self.alpha
        return params

    def _train(
        self, X: np.ndarray, y: np.ndarray, valid: tuple[np.ndarray, np.ndarray] | None
    ) -> None:
        import xgboost as xgb

        params = self._library_params()
        threads = params["nthread"]
        train_set = xgb.DMatrix(X, label=y, nthread=threads)
        evals: list[Any] = []
        if valid is not None:
            evals.append((xgb.DMatrix(valid[0], label=valid[1], nthread=threads), "valid"))
        booster = xgb.train(
            params,
            train_set,
            num_boost_round=self.n_estimators,
            evals=evals,
            early_stopping_rounds=self.early_stopping_rounds if evals else None,
            verbose_eval=False,
            callbacks=[_xgb_budget_callback()] if time_left() < float("inf") else None,
        )
        # XGBoost counts the best round from 0; keep the trees up to it and drop the rest,
        # so that predict, importances and the saved file all use the validated model.
        kept = booster.best_iteration + 1 if evals else booster.num_boosted_rounds()
        self.booster_ = booster[:kept] if kept < booster.num_boosted_rounds() else booster
        self.best_iteration_ = int(kept)
        # Without explicit names XGBoost calls the features f0, f1... in column order.
        scores = self.booster_.get_score(importance_type="total_gain")
        gain = np.array([scores.get(f"f{i}", 0.0) for i in range(X.shape[1])], dtype=np.float64)
        self.feature_importances_ = gain / gain.sum() if gain.sum() > 0 else gain

    def _predict(self, X: pd.DataFrame) -> np.ndarray:
        import xgboost as xgb

        matrix = xgb.DMatrix(_matrix(X, self.kind), nthread=_threads(self.n_jobs))
        return np.asarray(self.booster_.predict(matrix), dtype=np.float64)


def _xgb_budget_callback() -> Any:
    """An XGBoost callback that stops training (by raising) once the time budget passed."""
    import xgboost as xgb

    class Budget(xgb.callback.TrainingCallback):
        def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
            check_budget("XGBoost training")
            return False

    return Budget()


__all__ = ["LGBMModel", "XGBModel", "tail_split"]
