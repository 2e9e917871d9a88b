"""The Model protocol (a scikit-learn estimator) and the table of model kinds.

A model's constructor stores its hyperparameters as given, nothing more. ``fit(X, y)``
validates, learns (learned state ends in ``_``) and returns ``self``. Every model is a
scikit-learn estimator (``get_params``/``set_params``, ``clone``, ``feature_names_in_``,
``n_features_in_``) whose role follows its ``task`` hyperparameter: a classifier for
``"classification"`` (``predict`` gives class labels, ``predict_proba`` the ``(n, 2)``
probabilities, ``classes_`` the labels), a regressor otherwise (``predict`` gives the value,
or the quantile). :func:`predicted_value` is the number the engine works with: the value, or
P(class 1). ``X`` is a DataFrame (columns picked by name) or a 2-D array (columns named
``x0, x1...``).

Capabilities are declared on the class, not probed, and the engine acts on them:
``supports_interval`` (``predict_interval``), ``is_sequence`` (needs ordered windows of
rows), ``supports_quantile`` (the quantile task at any level: conformalised quantile
regression), ``onnx_export`` (how :mod:`trademl.models.onnx_export` writes its graph) and
:meth:`BaseModel.search_space` (what :mod:`trademl.tuning` searches). Kinds are registered by
name so that a YAML config or an API call can name them, and a typo fails before any data
loads.
"""

from __future__ import annotations

import inspect
import json
import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.utils import ClassifierTags, RegressorTags, Tags
from sklearn.utils.metaestimators import available_if

from trademl import __version__
from trademl.atomic import atomic_path
from trademl.errors import ConfigError, ModelNotFoundError, TradeMLError
from trademl.models.space import SearchSpace
from trademl.plugins import GROUPS, PluginTable

if TYPE_CHECKING:
    # scikit-learn ships no type hints: these typed stand-ins keep mypy checking the models'
    # own attributes (a base class of type Any would let any attribute through).

    class _Estimator:
        def get_params(self, deep: bool = True) -> dict[str, Any]: ...
        def set_params(self, **params: Any) -> Self: ...
        def __sklearn_tags__(self) -> Tags: ...
        def __setstate__(self, state: dict[str, Any]) -> None: ...

    class _SklearnNotFittedError(ValueError, AttributeError): ...

else:
    from sklearn.base import BaseEstimator as _Estimator
    from sklearn.exceptions import NotFittedError as _SklearnNotFittedError

Task = Literal["regression", "classification", "quantile"]
TASKS: tuple[str, ...] = ("regression", "classification", "quantile")
OnnxGraph = Literal["tree", "network", "inner", "residual"]
MODEL_FILE = "model.pkl"
META_FILE = "model.json"
# Bump when the pickled layout of models changes incompatibly.
FORMAT_VERSION = 1


class NotFittedError(TradeMLError, _SklearnNotFittedError):
    """A model was used before ``fit`` (also scikit-learn's ``NotFittedError``)."""


class ModelInputError(ConfigError, ValueError):
    """``X`` or ``y`` cannot be fitted or predicted on (a ``ValueError``, as scikit-learn expects)."""


def _is_classifier(model: BaseModel) -> bool:
    return model.task == "classification"


class BaseModel(_Estimator):
    """Shared behaviour of every model kind: params, checks, persistence, scikit-learn's API.

    Subclasses set ``kind`` and implement ``_fit`` and ``_predict`` (the value, or P(class 1)
    for classification); their ``__init__`` takes keyword hyperparameters (the first one is
    ``task``) and only stores them. Capabilities are class attributes with safe defaults:

    ``tasks``
        The tasks the kind answers.
    ``supports_interval``
        ``predict_interval`` gives intervals.
    ``is_sequence``
        The kind reads ordered windows of rows (the first rows of ``X`` get NaN).
    ``supports_quantile``
        ``task="quantile"`` at any level, given as the ``alpha`` hyperparameter: runs with
        ``intervals: cqr`` fit a lower and an upper quantile model (conformalised quantile
        regression); other kinds get split-conformal intervals there.
    ``onnx_export``
        How :func:`trademl.models.onnx_export.export_onnx` writes the kind: ``"tree"``
        (LightGBM/XGBoost converters), ``"network"`` (a torch network over windows),
        ``"inner"`` (a wrapper whose prediction is its inner ``model_``'s), ``"residual"``
        (trees plus the HAR baseline's linear map); None when it cannot be exported.
    :meth:`search_space`
        The hyperparameters :func:`trademl.tuning.tune` searches; None when not tunable.

    Attributes
    ----------
    feature_names_in_ : numpy.ndarray
        The fitted columns, in order (``x0, x1...`` when fitted on an array).
    n_features_in_ : int
        Their number.
    classes_ : numpy.ndarray
        Classification only: the two labels, sorted; P(class 1) is the probability of
        ``classes_[1]``.
    """

    kind: ClassVar[str] = ""
    tasks: ClassVar[tuple[str, ...]] = TASKS
    supports_interval: ClassVar[bool] = False
    is_sequence: ClassVar[bool] = False
    supports_quantile: ClassVar[bool] = False
    onnx_export: ClassVar[OnnxGraph | None] = None

    task: str

    # -- parameters and capabilities -------------------------------------------------------

    @classmethod
    def param_names(cls) -> list[str]:
        """Hyperparameter names, from the constructor's signature."""
        signature = inspect.signature(cls.__init__)
        return [name for name in signature.parameters if name != "self"]

    @classmethod
    def search_space(cls) -> SearchSpace | None:
        """The hyperparameters to search, or None when the kind is not tuned.

        Returns
        -------
        mapping of str to Dimension or None
            Constructor parameter names (or the generic names of
            :data:`trademl.tuning.PARAM_ALIASES`) to their ranges; an empty mapping means
            "tunable, with nothing to search" (the naive baselines).
        """
        return None

    def clone(self) -> Self:
        """A new, unfitted model with the same hyperparameters (``sklearn.base.clone``)."""
        twin: Self = clone(self)
        return twin

    def __sklearn_tags__(self) -> Tags:
        """A classifier for ``task="classification"``, a regressor otherwise; NaN allowed."""
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.target_tags.required = True
        if self.task == "classification":
            tags.estimator_type = "classifier"
            tags.classifier_tags = ClassifierTags(multi_class=False)
            tags.regressor_tags = None
        else:
            tags.estimator_type = "regressor"
            # A quantile is not the conditional mean: R² does not measure how good it is.
            tags.regressor_tags = RegressorTags(poor_score=self.task == "quantile")
            tags.classifier_tags = None
        return tags

    # -- fit / predict ---------------------------------------------------------------------

    def fit(
        self,
        X: pd.DataFrame | np.ndarray,
        y: pd.Series | np.ndarray,
        *,
        eval_set: tuple[pd.DataFrame, pd.Series] | None = None,
    ) -> Self:
        """Validate inputs and hyperparameters, learn, and return ``self``.

        Parameters
        ----------
        X : pandas.DataFrame or numpy.ndarray
            Features, one row per sample (NaN allowed).
        y : pandas.Series or numpy.ndarray
            Targets: two labels for classification (the larger one is class 1).
        eval_set : tuple or None
            ``(X_valid, y_valid)`` for kinds that stop early.

        Returns
        -------
        Self
            The fitted model.
        """
        if self.task not in self.tasks:
            raise ConfigError(
                f"{self.kind}: task={self.task!r} is not one of {', '.join(self.tasks)}"
            )
        X, y = check_xy(as_frame(X, self.kind), y, self.kind)
        if self.task == "classification":
            y = self._learn_classes(y)
            if eval_set is not None:
                eval_set = (eval_set[0], self._encode_classes(eval_set[1]))
        else:
            self.__dict__.pop("classes_", None)
        self._remember_features(X)
        self._fit(X, y, eval_set)
        return self

    def predict(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Predictions for ``X``: the value (regression, quantile) or the class label.

        Parameters
        ----------
        X : pandas.DataFrame or numpy.ndarray
            Features (a DataFrame's fitted columns are picked by name).

        Returns
        -------
        numpy.ndarray
            One value per row; for classification the label of ``classes_`` whose
            probability exceeds 1/2 (NaN where a sequence kind has no window yet).
        """
        value = self._value(X)
        if self.task != "classification":
            return value
        picked = self.classes_[(value > 0.5).astype(np.intp)]
        undefined = np.isnan(value)
        if undefined.any():
            return np.where(undefined, np.nan, picked.astype(np.float64))
        return np.asarray(picked)

    @available_if(_is_classifier)  # type: ignore[untyped-decorator]
    def predict_proba(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Class probabilities (classification only).

        Parameters
        ----------
        X : pandas.DataFrame or numpy.ndarray
            Features.

        Returns
        -------
        numpy.ndarray
            ``(n, 2)``: the probabilities of ``classes_[0]`` and ``classes_[1]``.
        """
        value = self._value(X)
        return np.column_stack([1.0 - value, value])

    def score(
        self,
        X: pd.DataFrame | np.ndarray,
        y: pd.Series | np.ndarray,
        sample_weight: np.ndarray | None = None,
    ) -> float:
        """Accuracy (classification) or R² (regression, quantile) on ``(X, y)``.

        Parameters
        ----------
        X : pandas.DataFrame or numpy.ndarray
            Features.
        y : pandas.Series or numpy.ndarray
            True targets.
        sample_weight : numpy.ndarray or None
            Row weights.

        Returns
        -------
        float
            The score, higher is better.
        """
        from sklearn.metrics import accuracy_score, r2_score

        metric = accuracy_score if self.task == "classification" else r2_score
        return float(metric(y, self.predict(X), sample_weight=sample_weight))

    def predict_interval(self, X: pd.DataFrame, alpha: float) -> tuple[np.ndarray, np.ndarray]:
        """A (lower, upper) prediction interval of nominal coverage ``1 - alpha``."""
        raise ConfigError(
            f"model kind {self.kind!r} does not produce intervals (supports_interval is False)"
        )

    def _value(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """The regression value, or P(class 1), as float64."""
        self._check_fitted()
        return np.asarray(self._predict(self._align(X)), dtype=np.float64)

    def _fit(
        self, X: pd.DataFrame, y: pd.Series, eval_set: tuple[pd.DataFrame, pd.Series] | None
    ) -> None:
        raise NotImplementedError

    def _predict(self, X: pd.DataFrame) -> np.ndarray:
        raise NotImplementedError

    def _learn_classes(self, y: pd.Series) -> pd.Series:
        """Keep the two labels of ``y`` as ``classes_``; return ``y`` as 0.0 / 1.0."""
        from sklearn.utils.multiclass import type_of_target

        try:
            target_type = type_of_target(y.to_numpy(), input_name="y", raise_unknown=True)
        except ValueError as error:
            raise ModelInputError(f"{self.kind}: {error}") from error
        classes = np.unique(y.to_numpy())
        if target_type != "binary" or len(classes) != 2:
            raise ModelInputError(
                f"{self.kind}: Only binary classification is supported; y must hold two class "
                f"labels (e.g. 0 and 1), got a {target_type} target with {len(classes)} "
                f"class(es): {classes.tolist()[:5]}"
            )
        self.classes_ = classes
        return self._encode_classes(y)

    def _encode_classes(self, y: pd.Series | np.ndarray) -> pd.Series:
        """``y`` as 1.0 where it is ``classes_[1]`` and 0.0 where it is ``classes_[0]``."""
        series = y if isinstance(y, pd.Series) else pd.Series(np.asarray(y))
        values = series.to_numpy()
        unknown = ~np.isin(values, self.classes_)
        if unknown.any():
            raise ModelInputError(
                f"{self.kind}: y holds label(s) {np.unique(values[unknown]).tolist()[:5]} "
                f"outside the classes {self.classes_.tolist()}"
            )
        return pd.Series(
            (values == self.classes_[1]).astype(np.float64), index=series.index, name=series.name
        )

    def _remember_features(self, X: pd.DataFrame) -> None:
        self.feature_names_in_ = np.asarray(list(X.columns), dtype=object)
        self.n_features_in_ = len(self.feature_names_in_)
        self.__dict__.pop("_fitted_columns", None)

    @property
    def feature_names_(self) -> list[str]:
        """The fitted columns as a list (an alias of ``feature_names_in_``)."""
        return list(self.feature_names_in_)

    def __sklearn_is_fitted__(self) -> bool:
        """Whether ``fit`` ran (scikit-learn's ``check_is_fitted`` asks this)."""
        return "n_features_in_" in self.__dict__

    def _check_fitted(self) -> None:
        if "n_features_in_" not in self.__dict__:
            raise NotFittedError(f"this {self.kind} model is not fitted yet; call fit(X, y) first")

    def _align(self, X: pd.DataFrame | np.ndarray) -> pd.DataFrame:
        if not isinstance(X, pd.DataFrame):
            array = _feature_array(X, self.kind)
            if array.shape[1] != self.n_features_in_:
                raise ModelInputError(
                    f"X has {array.shape[1]} features, but {type(self).__name__} is expecting "
                    f"{self.n_features_in_} features as input"
                )
            return pd.DataFrame(array, columns=self.feature_names_in_)
        # Already in fitted order (the usual case, and the one serving hits per request):
        # skip the column selection, which costs more than a one-row prediction.
        fitted: pd.Index | None = self.__dict__.get("_fitted_columns")
        if fitted is None:
            fitted = self.__dict__["_fitted_columns"] = pd.Index(self.feature_names_in_)
        if X.columns.equals(fitted):
            return X
        missing = [c for c in fitted if c not in X.columns]
        if missing:
            raise ModelInputError(
                f"{self.kind}: X lacks {len(missing)} feature(s) the model was fitted on, e.g. {missing[:3]}"
            )
        selected: pd.DataFrame = X.loc[:, fitted]
        return selected

    # -- persistence -----------------------------------------------------------------------

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(_upgraded_state(state))
        if (
            "n_features_in_" in self.__dict__
            and "classes_" not in self.__dict__
            and self.task == "classification"
        ):
            self.classes_ = np.array([0.0, 1.0])  # pickled before classes_: targets were 0/1

    def save(self, directory: str | Path) -> Path:
        """Write the model to ``directory`` (created), atomically per file."""
        self._check_fitted()
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(folder / MODEL_FILE) as temp, open(temp, "wb") as handle:
            pickle.dump(self, handle, protocol=pickle.HIGHEST_PROTOCOL)
        meta = {
            "kind": self.kind,
            "params": _jsonable(self.get_params(deep=False)),
            "features": self.feature_names_,
            "trademl_version": __version__,
            "format_version": FORMAT_VERSION,
        }
        with atomic_path(folder / META_FILE) as temp:
            Path(temp).write_text(json.dumps(meta, indent=2))
        return folder

    def _after_load(self, folder: Path) -> None:
        """Hook for kinds that store more than the pickle (e.g. network weights); no-op here."""


def _upgraded_state(state: dict[str, Any]) -> dict[str, Any]:
    """A pickled model's state in today's layout.

    Models pickled before they were scikit-learn estimators hold ``feature_names_`` (a list)
    and, as classifiers, no ``classes_`` (their targets were 0 and 1).
    """
    names = state.pop("feature_names_", None)
    if names is not None and "feature_names_in_" not in state:
        state["feature_names_in_"] = np.asarray(names, dtype=object)
        state["n_features_in_"] = len(names)
        state.pop("_fitted_columns", None)
    return state


def predicted_value(model: BaseModel, X: pd.DataFrame | np.ndarray) -> np.ndarray:
    """The number the engine works with: the value for regression, P(class 1) for classification.

    Parameters
    ----------
    model : BaseModel
        A fitted model.
    X : pandas.DataFrame or numpy.ndarray
        Features.

    Returns
    -------
    numpy.ndarray
        ``model.predict(X)``, or ``model.predict_proba(X)[:, 1]`` for a classifier.

    Examples
    --------
    >>> from trademl.models.naive import NaiveModel
    >>> X, y = pd.DataFrame({"f": [0.0, 1.0, 2.0, 3.0]}), pd.Series([0, 1, 1, 1])
    >>> model = NaiveModel(task="classification", strategy="prior").fit(X, y)
    >>> predicted_value(model, X[:1]), model.predict(X[:1])
    (array([0.75]), array([1]))
    """
    if model.task != "classification":
        return np.asarray(model.predict(X), dtype=np.float64)
    if _plain_proba(type(model)):
        # predict_proba's second column is _value: skip building the (n, 2) array, which costs
        # a third of a served request's model time on a calibrated classifier.
        return model._value(X)
    return np.asarray(model.predict_proba(X)[:, 1], dtype=np.float64)


# Model class -> whether it keeps BaseModel's predict_proba (then P(class 1) is _value).
_PLAIN_PROBA: dict[type, bool] = {}


def _plain_proba(cls: type) -> bool:
    plain = _PLAIN_PROBA.get(cls)
    if plain is None:
        own = inspect.getattr_static(cls, "predict_proba", None)
        plain = _PLAIN_PROBA[cls] = own is inspect.getattr_static(BaseModel, "predict_proba")
    return plain


def load_model(directory: str | Path) -> BaseModel:
    """Load a model saved by :meth:`BaseModel.save`, refusing incompatible files clearly."""
    folder = Path(directory)
    meta_path = folder / META_FILE
    if not meta_path.exists():
        raise ModelNotFoundError(
            f"no saved model in {folder} (expected {META_FILE} and {MODEL_FILE})"
        )
    meta = json.loads(meta_path.read_text())
    if meta.get("format_version") != FORMAT_VERSION:
        raise ConfigError(
            f"{folder}: model saved in format {meta.get('format_version')} by trademl "
            f"{meta.get('trademl_version')}; this trademl {__version__} reads format {FORMAT_VERSION}"
        )
    with open(folder / MODEL_FILE, "rb") as handle:
        model = pickle.load(handle)
    if not isinstance(model, BaseModel):
        raise ConfigError(f"{folder}: {MODEL_FILE} does not hold a trademl model")
    model._after_load(folder)
    return model


def check_xy(
    X: pd.DataFrame, y: pd.Series | np.ndarray, kind: str
) -> tuple[pd.DataFrame, pd.Series]:
    """Refuse mismatched, empty or non-finite targets (features may hold NaN).

    Parameters
    ----------
    X : pandas.DataFrame
        Features.
    y : pandas.Series or array-like
        Targets; an array becomes a Series on ``X``'s index (a column vector is flattened,
        with scikit-learn's ``DataConversionWarning``).
    kind : str
        The model kind asking, to word the errors.

    Returns
    -------
    tuple
        ``X`` and ``y`` as a Series.
    """
    if not isinstance(X, pd.DataFrame):
        raise ModelInputError(f"{kind}: X must be a pandas DataFrame, got {type(X).__name__}")
    if not isinstance(y, pd.Series):
        from sklearn.utils.validation import column_or_1d

        try:
            values = column_or_1d(y, warn=True)
        except ValueError as error:
            raise ModelInputError(f"{kind}: {error}") from error
        if len(values) != len(X):
            raise ModelInputError(f"{kind}: X has {len(X)} rows but y has {len(values)}")
        y = pd.Series(values, index=X.index)
    if len(X) != len(y):
        raise ModelInputError(f"{kind}: X has {len(X)} rows but y has {len(y)}")
    if len(X) == 0:
        raise ModelInputError(f"{kind}: no rows to fit on")
    numeric = pd.api.types.is_numeric_dtype(y.dtype) and not pd.api.types.is_bool_dtype(y.dtype)
    if (numeric and not np.isfinite(y.to_numpy(dtype=np.float64)).all()) or (
        not numeric and y.isna().any()
    ):
        raise ModelInputError(
            f"{kind}: y holds NaN or infinite values; drop incomplete label rows first"
        )
    return X, y


def as_frame(X: pd.DataFrame | np.ndarray, kind: str) -> pd.DataFrame:
    """``X`` as a DataFrame: itself, or a 2-D array with columns ``x0, x1...``.

    Parameters
    ----------
    X : pandas.DataFrame or array-like
        Features.
    kind : str
        The model kind asking, to word the errors.

    Returns
    -------
    pandas.DataFrame
        The features.

    Examples
    --------
    >>> as_frame(np.zeros((2, 3)), "demo").columns.tolist()
    ['x0', 'x1', 'x2']
    """
    if isinstance(X, pd.DataFrame):
        return X
    array = _feature_array(X, kind)
    return pd.DataFrame(array, columns=[f"x{i}" for i in range(array.shape[1])])


def _feature_array(X: Any, kind: str) -> np.ndarray:
    """A 2-D float array of features (NaN allowed), refused with scikit-learn's wording."""
    from sklearn.utils.validation import check_array

    try:
        array: np.ndarray = check_array(X, dtype=np.float64, ensure_all_finite="allow-nan")
    except ValueError as error:
        raise ModelInputError(f"{kind}: {error}") from error
    return array


def _jsonable(params: dict[str, Any]) -> dict[str, Any]:
    return {
        k: (v if isinstance(v, str | int | float | bool | type(None) | list | dict) else repr(v))
        for k, v in params.items()
    }


def _check_model_class(name: str, cls: type[BaseModel]) -> None:
    if not (isinstance(cls, type) and issubclass(cls, BaseModel)):
        raise TypeError(f"model kind {name!r} must be a BaseModel subclass, got {cls!r}")
    if cls.kind != name:
        raise ValueError(f"model kind {name!r} is a class whose kind is {cls.kind!r}")


MODELS: PluginTable[type[BaseModel]] = PluginTable(
    "model kind",
    group=GROUPS["models"],
    builtins={
        "naive": "trademl.models.naive",
        "lgbm": "trademl.models.gbm",
        "xgb": "trademl.models.gbm",
        "stacking": "trademl.models.stacking",
        # Importing the deep kinds does not import torch; fitting one does.
        "gru": "trademl.models.deep",
        "lstm": "trademl.models.deep",
        "transformer": "trademl.models.deep",
        "cnn_lstm": "trademl.models.deep",
    },
    check=_check_model_class,
)
"""Model kinds by name: the built-ins and the ``trademl.models`` entry points."""


def register_model(cls: type[BaseModel]) -> type[BaseModel]:
    """Class decorator adding a model kind to the table under ``cls.kind``."""
    return MODELS.register(cls.kind)(cls)


def make_model(kind: str, params: dict[str, Any] | None = None) -> BaseModel:
    """Build a model of ``kind`` from ``params``; unknown kinds or params list the valid ones."""
    cls = MODELS.get(kind)
    params = dict(params or {})
    unknown = sorted(set(params) - set(cls.param_names()))
    if unknown:
        raise ConfigError(
            f"model {kind!r}: unknown parameter(s) {', '.join(unknown)}; valid: {', '.join(cls.param_names())}"
        )
    return cls(**params)


def load_all_models() -> dict[str, type[BaseModel]]:
    """Import every model kind, built-in and third-party; return the classes by kind."""
    return MODELS.load_all()


def registered_kinds() -> list[str]:
    """Every known model kind, sorted, without importing any (see :class:`PluginTable`)."""
    return MODELS.names()
