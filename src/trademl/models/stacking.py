"""Stacking: kind ``stacking``, a meta-model trained on out-of-fold predictions of base models.

How it is fitted
    The training rows (oldest first) are cut by an inner purged, expanding walk-forward into a
    first training block and ``n_splits`` test blocks of equal size that end on the last row.
    For each test block, every base model is fitted on the rows before it (less the
    ``horizon_bars`` rows whose labels reach into the block) and predicts the block: these are
    the *out-of-fold* (OOF) predictions. The meta-model is fitted on the OOF predictions of the
    rows of the test blocks only; the rows of the first training block have no OOF prediction
    and never reach it. Finally every base model is refitted on all the training rows, and
    ``predict`` feeds their predictions to the meta-model.

Why out-of-fold only
    A base model predicts its own training rows far better than new rows: boosted trees in
    particular fit part of the noise. A meta-model fitted on such in-sample predictions learns
    how good the base models look on data they have already seen, so it trusts most the model
    that overfits most, and that trust does not hold on new data. OOF predictions are made on
    rows the base model did not train on, exactly as in ``predict``, so the meta-model learns
    how much each base model is worth out of sample. Purging the ``horizon_bars`` rows before
    each inner test block keeps forward-looking labels from leaking the block into training.

Meta-models
    ``{"kind": "ridge", "params": {"l2": ...}}`` (regression, the default) and
    ``{"kind": "logistic", "params": {"l2": ...}}`` (classification, the default) are linear
    fits on the meta features standardised on the meta rows, with an unpenalised intercept and
    the penalty ``l2 / 2 · ||w||²`` added to the mean loss (half squared error, or log loss),
    solved by scikit-learn's ``Ridge`` and ``LogisticRegression``.
    For classification the meta features are the logits of the base probabilities. Any other
    registered model kind may be named instead (e.g. ``lgbm``); it receives the meta features
    as a DataFrame with columns ``base{i}_{kind}``. With ``passthrough`` the original features
    are appended to the meta features (the linear meta-models fill their missing values with
    the meta rows' column means).

Parameters forwarded to the base models (and to a registered meta-model) unless set there:
``task`` (a different one is refused), ``random_state`` and, for kinds with early stopping,
``validation_gap = horizon_bars``. An ``eval_set`` given to ``fit`` reaches only the final
refit of the base models; the inner fits stop early on their own tails.

A base entry may add ``on_baseline: [columns]`` (regression): that base model learns what the
HAR volatility baseline on those columns leaves (:class:`~trademl.models.residual.ResidualRegressor`),
and a ``{"kind": "naive", "params": {"strategy": "volatility", ...}}`` entry puts the baseline
itself among the meta-model's inputs.

Cost: ``(n_splits + 1) × len(base_models)`` base fits per ``fit``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from trademl.errors import ConfigError
from trademl.models.base import (
    MODELS,
    BaseModel,
    load_all_models,
    make_model,
    predicted_value,
    register_model,
)
from trademl.models.residual import ResidualRegressor
from trademl.validation.splitters import WalkForward

FloatArray = npt.NDArray[np.float64]

# Probabilities are clipped this far from 0 and 1 before taking their logit.
_PROBABILITY_CLIP = 1e-6
_DEFAULT_L2 = 1e-2
_BASE_KEYS = frozenset({"kind", "params", "on_baseline"})
# The built-in linear meta-models and the task each answers.
_LINEAR_META: dict[str, str] = {"ridge": "regression", "logistic": "classification"}
_DEFAULT_BASE_MODELS: tuple[dict[str, Any], ...] = (
    {"kind": "lgbm", "params": {"n_estimators": 200, "learning_rate": 0.05, "num_leaves": 15}},
    {"kind": "xgb", "params": {"n_estimators": 200, "learning_rate": 0.05, "max_depth": 3}},
)


@dataclass(frozen=True)
class LinearMeta:
    """A fitted linear meta-model: ``intercept + X @ coef`` (through a sigmoid for logistic).

    Parameters
    ----------
    kind:
        ``"ridge"`` or ``"logistic"``.
    intercept:
        Intercept, in the units of the raw meta features.
    coef:
        One weight per meta feature, in the units of the raw meta features.
    fill:
        Value replacing a missing meta feature (the meta rows' column mean).
    """

    kind: str
    intercept: float
    coef: FloatArray
    fill: FloatArray

    def predict(self, features: FloatArray) -> FloatArray:
        """The meta prediction for raw meta ``features`` (rows × meta features).

        Parameters
        ----------
        features:
            Meta features, NaN allowed.

        Returns
        -------
        numpy.ndarray
            The regression value, or the probability of class 1.
        """
        filled = np.where(np.isnan(features), self.fill, features)
        score = self.intercept + filled @ self.coef
        if self.kind == "logistic":
            return _sigmoid(score)
        return np.asarray(score, dtype=np.float64)


@register_model
class StackingModel(BaseModel):
    """A meta-model fitted on out-of-fold predictions of base models (see the module docstring).

    Parameters
    ----------
    task:
        ``"regression"`` or ``"classification"``; every base model gets the same task.
    base_models:
        The base models, each ``{"kind": ..., "params": {...}}``; None uses an ``lgbm`` and an
        ``xgb`` model of 200 trees at most (both stop early).
    meta_model:
        ``{"kind": ..., "params": {...}}``: ``ridge`` (regression) or ``logistic``
        (classification) with parameter ``l2`` (default 0.01), or any registered kind. None
        chooses ``ridge`` or ``logistic`` from the task.
    n_splits:
        Inner walk-forward test blocks that produce the out-of-fold predictions.
    horizon_bars:
        Label horizon: rows purged before each inner test block and the ``validation_gap`` of
        base models that stop early.
    random_state:
        Seed forwarded to the base models (and a registered meta-model) that take one.
    passthrough:
        Append the original features to the meta features.

    Attributes
    ----------
    base_models_ : list of BaseModel
        The base models refitted on all the training rows.
    meta_model_ : LinearMeta or BaseModel
        The fitted meta-model.
    meta_feature_names_ : list of str
        Columns the meta-model reads: ``base{i}_{kind}``, then the features with passthrough.
    meta_rows_ : numpy.ndarray
        Positions, among the training rows, of the rows the meta-model was fitted on: the rows
        of the inner test blocks.
    inner_folds_ : list of dict
        The inner walk-forward folds, as :meth:`WalkForward.describe` reports them.
    meta_weights_ : dict of str to float or None
        Weight of each meta feature, in raw units, for the linear meta-models (None otherwise).
    meta_intercept_ : float or None
        Intercept of the linear meta-models (None otherwise).

    Examples
    --------
    >>> model = StackingModel(
    ...     base_models=[
    ...         {"kind": "lgbm", "params": {"n_estimators": 50}},
    ...         {"kind": "naive", "params": {"strategy": "mean"}},
    ...     ],
    ...     horizon_bars=6,
    ... )
    >>> [type(base).__name__ for base in model.make_base_models()]
    ['LGBMModel', 'NaiveModel']
    """

    kind = "stacking"
    tasks = ("regression", "classification")
    supports_interval = False

    def __init__(
        self,
        task: str = "regression",
        base_models: list[dict[str, Any]] | None = None,
        meta_model: dict[str, Any] | None = None,
        n_splits: int = 4,
        horizon_bars: int = 1,
        random_state: int = 0,
        passthrough: bool = False,
    ) -> None:
        self.task = task
        self.base_models = base_models
        self.meta_model = meta_model
        self.n_splits = n_splits
        self.horizon_bars = horizon_bars
        self.random_state = random_state
        self.passthrough = passthrough

    # -- configuration ---------------------------------------------------------------------

    def make_base_models(self) -> list[BaseModel]:
        """Check ``base_models`` and build them, unfitted, with the forwarded parameters.

        Call it to fail on a bad configuration before any data loads; ``fit`` calls it too.

        Returns
        -------
        list of BaseModel
            One unfitted model per entry of ``base_models``.

        Raises
        ------
        ConfigError
            An entry is malformed, names an unknown kind or parameter, or a kind that does not
            answer the task; the message names the entry (``stacking.base_models[1]``).
        """
        entries = _DEFAULT_BASE_MODELS if self.base_models is None else self.base_models
        if isinstance(entries, str | bytes | dict) or not isinstance(entries, Sequence):
            raise ConfigError(
                "stacking.base_models must be a list of {kind: ..., params: {...}} entries, "
                f"got {type(entries).__name__}"
            )
        if not entries:
            raise ConfigError("stacking.base_models is empty; give at least one base model")
        return [
            self._build(entry, f"stacking.base_models[{number}]")
            for number, entry in enumerate(entries)
        ]

    def _meta_spec(self) -> tuple[str, dict[str, Any]]:
        """The meta-model's kind and params, checked (params of a registered kind not yet)."""
        if self.meta_model is None:
            kind = "ridge" if self.task == "regression" else "logistic"
            return kind, {"l2": _DEFAULT_L2}
        kind, params = _entry(self.meta_model, "stacking.meta_model")
        answers = _LINEAR_META.get(kind)
        if answers is None:
            return kind, params
        if answers != self.task:
            raise ConfigError(
                f"stacking.meta_model: {kind!r} answers task {answers!r}, not {self.task!r}"
            )
        unknown = sorted(set(params) - {"l2"})
        if unknown:
            raise ConfigError(
                f"stacking.meta_model: unknown parameter(s) {', '.join(unknown)} "
                f"of {kind!r}; valid: l2"
            )
        l2 = params.get("l2", _DEFAULT_L2)
        if isinstance(l2, bool) or not isinstance(l2, int | float) or not l2 >= 0:
            raise ConfigError(f"stacking.meta_model: l2 must be a number >= 0, got {l2!r}")
        return kind, {"l2": float(l2)}

    def _build(self, entry: object, where: str) -> BaseModel:
        """An unfitted model from a ``{kind, params}`` entry, with the forwarded parameters."""
        kind, params = _entry(entry, where, _BASE_KEYS)
        on_baseline = _on_baseline(entry, where)
        load_all_models()
        try:
            cls = MODELS.get(kind)
        except ConfigError as error:
            raise ConfigError(f"{where}: {error}") from error
        if self.task not in cls.tasks:
            raise ConfigError(
                f"{where}: model kind {kind!r} answers task {', '.join(cls.tasks)}, "
                f"not {self.task!r}"
            )
        if params.get("task", self.task) != self.task:
            raise ConfigError(
                f"{where}: task {params['task']!r} differs from the stacking task {self.task!r}"
            )
        accepted = cls.param_names()
        forwarded: dict[str, Any] = {
            "task": self.task,
            "random_state": self.random_state,
            "validation_gap": self.horizon_bars,
        }
        for name, value in forwarded.items():
            if name in accepted:
                params.setdefault(name, value)
        try:
            model = make_model(kind, params)
        except ConfigError as error:
            raise ConfigError(f"{where}: {error}") from error
        if on_baseline is None:
            return model
        if self.task != "regression":
            raise ConfigError(f"{where}: on_baseline applies to regression stacks only")
        return ResidualRegressor(model, on_baseline)

    def _check_params(self) -> None:
        for name, minimum in (("n_splits", 1), ("horizon_bars", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ConfigError(
                    f"stacking: {name} must be an integer >= {minimum}, got {value!r}"
                )
        if not isinstance(self.passthrough, bool):
            raise ConfigError(
                f"stacking: passthrough must be true or false, got {self.passthrough!r}"
            )

    def _inner_splitter(self, n_rows: int) -> WalkForward:
        """Expanding walk-forward whose ``n_splits`` equal test blocks end on the last row."""
        test_size = n_rows // (self.n_splits + 1)
        first_test_start = n_rows - self.n_splits * test_size
        min_train = first_test_start - self.horizon_bars
        if test_size < 1 or min_train < 2:
            raise ConfigError(
                f"stacking: {n_rows} training rows are too few for {self.n_splits} inner "
                f"test blocks and a purge of {self.horizon_bars} rows (the first inner training "
                "block needs >= 2 rows)"
            )
        return WalkForward(
            test_size=test_size,
            horizon_bars=self.horizon_bars,
            n_splits=self.n_splits,
            min_train_size=min_train,
        )

    # -- fit / predict ---------------------------------------------------------------------

    def _fit(
        self, X: pd.DataFrame, y: pd.Series, eval_set: tuple[pd.DataFrame, pd.Series] | None
    ) -> None:
        self._check_params()
        bases = self.make_base_models()
        meta_kind, meta_params = self._meta_spec()
        meta_template = None
        if meta_kind not in _LINEAR_META:
            meta_template = self._build(self.meta_model, "stacking.meta_model")

        splitter = self._inner_splitter(len(X))
        oof = np.full((len(X), len(bases)), np.nan)
        for train, test in splitter.split(X, y):
            for number, base in enumerate(bases):
                fitted = _fit_base(base, X.iloc[train], y.iloc[train], None, number)
                oof[test, number] = predicted_value(fitted, X.iloc[test])
        meta_rows = np.flatnonzero(np.isfinite(oof).all(axis=1)).astype(np.int64)

        self.meta_feature_names_ = [f"base{i}_{base.kind}" for i, base in enumerate(bases)]
        if self.passthrough:
            clash = sorted(set(self.meta_feature_names_) & set(X.columns))
            if clash:
                raise ConfigError(
                    f"stacking: with passthrough, feature column(s) {clash} clash with the "
                    "names of the base predictions; rename them"
                )
            self.meta_feature_names_ += list(X.columns)
        meta_X = self._meta_frame(oof[meta_rows], X.iloc[meta_rows])
        meta_y = y.iloc[meta_rows]
        if self.task == "classification" and meta_y.nunique() < 2:
            raise ConfigError(
                "stacking: the inner test blocks hold one class only; "
                "give more rows or fewer n_splits"
            )
        self.meta_weights_: dict[str, float] | None = None
        self.meta_intercept_: float | None = None
        if meta_template is None:
            linear = _fit_linear(
                meta_kind,
                _numeric(meta_X),
                meta_y.to_numpy(dtype=np.float64),
                meta_params["l2"],
            )
            self.meta_model_: LinearMeta | BaseModel = linear
            self.meta_weights_ = dict(
                zip(self.meta_feature_names_, linear.coef.tolist(), strict=True)
            )
            self.meta_intercept_ = linear.intercept
        else:
            try:
                self.meta_model_ = meta_template.fit(meta_X, meta_y)
            except ConfigError as error:
                raise ConfigError(f"stacking.meta_model: {error}") from error

        self.base_models_ = [
            _fit_base(base, X, y, eval_set, number) for number, base in enumerate(bases)
        ]
        self.meta_rows_ = meta_rows
        self.inner_folds_ = splitter.describe(X)

    def _meta_frame(self, predictions: FloatArray, X: pd.DataFrame) -> pd.DataFrame:
        """Meta features of ``X`` given the base ``predictions`` (rows × base models)."""
        values = _logit(predictions) if self.task == "classification" else predictions
        n_bases = predictions.shape[1]
        frame = pd.DataFrame(values, index=X.index, columns=self.meta_feature_names_[:n_bases])
        if self.passthrough:
            frame = pd.concat([frame, X], axis=1)
        return frame

    def _predict(self, X: pd.DataFrame) -> FloatArray:
        predictions = np.column_stack([predicted_value(base, X) for base in self.base_models_])
        meta_X = self._meta_frame(predictions, X)
        if isinstance(self.meta_model_, LinearMeta):
            return self.meta_model_.predict(_numeric(meta_X))
        return predicted_value(self.meta_model_, meta_X)


# -- helpers -------------------------------------------------------------------------------


def _entry(
    entry: object, where: str, keys: frozenset[str] = frozenset({"kind", "params"})
) -> tuple[str, dict[str, Any]]:
    """``(kind, params)`` of a ``{"kind": ..., "params": {...}}`` entry; params copied."""
    if not isinstance(entry, dict):
        raise ConfigError(
            f"{where} must be a mapping {{kind: ..., params: {{...}}}}, got {type(entry).__name__}"
        )
    extra = sorted(set(entry) - keys)
    if extra:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(map(str, extra))}; valid: {', '.join(sorted(keys))}"
        )
    kind = entry.get("kind")
    if not isinstance(kind, str) or not kind:
        raise ConfigError(f"{where}: 'kind' must be a model kind name, got {kind!r}")
    params = entry.get("params") or {}
    if not isinstance(params, dict):
        raise ConfigError(f"{where}: 'params' must be a mapping, got {type(params).__name__}")
    return kind, dict(params)


def on_baseline(base_models: Sequence[Any] | None, columns: list[str]) -> list[Any]:
    """``base_models`` (the defaults when None) learning residuals of the HAR baseline on
    ``columns``, with the baseline itself added as one more input of the meta-model.

    Entries that already say ``on_baseline`` (or are naive models) are kept as they are.

    Parameters
    ----------
    base_models : sequence of dict or None
        The stacking model's base entries.
    columns : list of str
        The HAR baseline's feature columns.

    Returns
    -------
    list
        The new base entries.
    """
    entries = list(_DEFAULT_BASE_MODELS if base_models is None else base_models)
    result: list[Any] = []
    for entry in entries:
        if isinstance(entry, dict) and "on_baseline" not in entry and entry.get("kind") != "naive":
            entry = {**entry, "on_baseline": list(columns)}
        result.append(entry)
    if not any(isinstance(e, dict) and e.get("kind") == "naive" for e in entries):
        baseline = {"strategy": "volatility", "volatility_features": list(columns)}
        result.append({"kind": "naive", "params": baseline})
    return result


def _on_baseline(entry: object, where: str) -> list[str] | None:
    """The HAR columns a base model's residual learning starts from, if the entry names them."""
    columns = entry.get("on_baseline") if isinstance(entry, dict) else None
    if columns is None:
        return None
    if (
        isinstance(columns, str | bytes)
        or not isinstance(columns, Sequence)
        or not columns
        or not all(isinstance(c, str) and c for c in columns)
    ):
        raise ConfigError(
            f"{where}: on_baseline must be a non-empty list of feature column names, "
            f"got {columns!r}"
        )
    return list(columns)


def _fit_base(
    model: BaseModel,
    X: pd.DataFrame,
    y: pd.Series,
    eval_set: tuple[pd.DataFrame, pd.Series] | None,
    number: int,
) -> BaseModel:
    """A fitted clone of base model ``number``; its errors name the entry."""
    try:
        return model.clone().fit(X, y, eval_set=eval_set)
    except ConfigError as error:
        raise ConfigError(f"stacking.base_models[{number}] ({model.kind}): {error}") from error


def _numeric(frame: pd.DataFrame) -> FloatArray:
    try:
        return frame.to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ConfigError(
            f"stacking: every meta feature must be numeric for a linear meta-model ({error})"
        ) from error


def _logit(p: FloatArray) -> FloatArray:
    clipped = np.clip(p, _PROBABILITY_CLIP, 1.0 - _PROBABILITY_CLIP)
    return np.asarray(np.log(clipped) - np.log1p(-clipped), dtype=np.float64)


def _sigmoid(z: FloatArray) -> FloatArray:
    return np.asarray(0.5 * (1.0 + np.tanh(0.5 * z)), dtype=np.float64)


def _fit_linear(kind: str, features: FloatArray, target: FloatArray, l2: float) -> LinearMeta:
    """Ridge or L2 logistic regression on standardised columns, returned in raw units.

    Both minimise the mean loss (half squared error, or log loss) plus ``l2 / 2 · ||w||²``
    with a free intercept, solved by scikit-learn: ``Ridge(alpha=n · l2)`` and
    ``LogisticRegression(C=1 / (n · l2))`` give exactly that objective (their losses are sums,
    not means). Missing values are filled with the column mean; constant (or empty) columns
    get weight 0.
    """
    n_columns = features.shape[1]
    finite = np.isfinite(features)
    counts = finite.sum(axis=0)
    sums = np.where(finite, features, 0.0).sum(axis=0)
    fill = np.divide(sums, counts, out=np.zeros(n_columns), where=counts > 0)
    filled = np.where(finite, features, fill)
    scale = filled.std(axis=0)
    varying = scale > 0
    standard = (filled[:, varying] - fill[varying]) / scale[varying]
    intercept, weights = _solve(kind, standard, target, l2)
    coef = np.zeros(n_columns)
    coef[varying] = weights / scale[varying]
    return LinearMeta(
        kind=kind,
        intercept=float(intercept - coef @ fill),
        coef=coef,
        fill=fill,
    )


def _solve(
    kind: str, standard: FloatArray, target: FloatArray, l2: float
) -> tuple[float, FloatArray]:
    """Intercept and weights of the penalised fit on centred, scaled columns."""
    n_rows, n_columns = standard.shape
    if n_columns == 0:  # nothing varies: the intercept alone
        share = float(target.mean())
        if kind == "ridge":
            return share, np.zeros(0)
        share = float(np.clip(share, _PROBABILITY_CLIP, 1.0 - _PROBABILITY_CLIP))
        return float(np.log(share / (1.0 - share))), np.zeros(0)
    if kind == "ridge":
        from sklearn.linear_model import Ridge

        ridge = Ridge(alpha=n_rows * l2).fit(standard, target)
        return float(ridge.intercept_), np.asarray(ridge.coef_, dtype=np.float64)
    from sklearn.linear_model import LogisticRegression

    # Newton steps on the exact Hessian: the same optimum as a plain Newton solver, to 1e-10.
    logistic = LogisticRegression(
        C=1.0 / (n_rows * l2) if l2 > 0 else np.inf,
        solver="newton-cholesky",
        tol=1e-10,
        max_iter=100,
    ).fit(standard, target.astype(np.int64))
    return float(logistic.intercept_[0]), np.asarray(logistic.coef_[0], dtype=np.float64)


__all__ = ["LinearMeta", "StackingModel"]
