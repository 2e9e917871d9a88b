"""The Model protocol (scikit-learn spirit) and the table of model kinds.

A model's constructor stores its hyperparameters as given, nothing more. ``fit(X, y)``
validates, learns (learned state ends in ``_``) and returns ``self``; ``predict(X)`` returns
a 1-D array: the value for regression, the probability of class 1 for classification.
Capabilities are declared, not probed: ``supports_interval`` (``predict_interval``),
``is_sequence`` (needs ordered windows of rows). Kinds are registered by name so that a YAML
config or an API call can name them, and a typo fails before any data loads.
"""

from __future__ import annotations

import inspect
import json
import pickle
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

import numpy as np
import pandas as pd

from trademl import __version__
from trademl.atomic import atomic_path
from trademl.errors import ConfigError, ModelNotFoundError, TradeMLError
from trademl.plugins import GROUPS, PluginTable

Task = Literal["regression", "classification", "quantile"]
TASKS: tuple[str, ...] = ("regression", "classification", "quantile")
MODEL_FILE = "model.pkl"
META_FILE = "model.json"
# Bump when the pickled layout of models changes incompatibly.
FORMAT_VERSION = 1


class NotFittedError(TradeMLError):
    """A model was used before ``fit``."""


class BaseModel:
    """Shared behaviour of every model kind: params, checks, persistence.

    Subclasses set ``kind`` and implement ``_fit`` and ``_predict``; their ``__init__`` takes
    keyword hyperparameters (the first one is ``task``) and only stores them.
    """

    kind: ClassVar[str] = ""
    tasks: ClassVar[tuple[str, ...]] = TASKS
    supports_interval: ClassVar[bool] = False
    is_sequence: ClassVar[bool] = False

    task: str

    # -- parameters ------------------------------------------------------------------------

    @classmethod
    def param_names(cls) -> list[str]:
        """Hyperparameter names, from the constructor's signature."""
        signature = inspect.signature(cls.__init__)
        return [name for name in signature.parameters if name != "self"]

    def get_params(self) -> dict[str, Any]:
        """The hyperparameters as given to the constructor."""
        return {name: getattr(self, name) for name in self.param_names()}

    def clone(self) -> Self:
        """A new, unfitted model with the same hyperparameters."""
        return type(self)(**self.get_params())

    # -- fit / predict ---------------------------------------------------------------------

    def fit(
        self,
        X: pd.DataFrame,
        y: pd.Series,
        *,
        eval_set: tuple[pd.DataFrame, pd.Series] | None = None,
    ) -> Self:
        """Validate inputs and hyperparameters, learn, and return ``self``."""
        if self.task not in self.tasks:
            raise ConfigError(
                f"{self.kind}: task={self.task!r} is not one of {', '.join(self.tasks)}"
            )
        X, y = check_xy(X, y, self.kind)
        if self.task == "classification":
            classes = np.unique(y.to_numpy())
            if not set(classes.tolist()) <= {0, 1} or len(classes) < 2:
                raise ConfigError(
                    f"{self.kind}: classification needs both classes 0 and 1 in y, got {classes.tolist()}"
                )
        self.feature_names_ = list(X.columns)
        self._fit(X, y, eval_set)
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Predictions for ``X`` (regression value, or probability of class 1)."""
        self._check_fitted()
        return np.asarray(self._predict(self._align(X)), dtype=np.float64)

    def predict_interval(self, X: pd.DataFrame, alpha: float) -> tuple[np.ndarray, np.ndarray]:
        """A (lower, upper) prediction interval of nominal coverage ``1 - alpha``."""
        raise ConfigError(
            f"model kind {self.kind!r} does not produce intervals (supports_interval is False)"
        )

    def _fit(
        self, X: pd.DataFrame, y: pd.Series, eval_set: tuple[pd.DataFrame, pd.Series] | None
    ) -> None:
        raise NotImplementedError

    def _predict(self, X: pd.DataFrame) -> np.ndarray:
        raise NotImplementedError

    def _check_fitted(self) -> None:
        if not hasattr(self, "feature_names_"):
            raise NotFittedError(f"this {self.kind} model is not fitted yet; call fit(X, y) first")

    def _align(self, X: pd.DataFrame) -> pd.DataFrame:
        # Already in fitted order (the usual case, and the one serving hits per request):
        # skip the column selection, which costs more than a one-row prediction.
        fitted = self.__dict__.get("_fitted_columns")
        if fitted is None or len(fitted) != len(self.feature_names_):
            fitted = self.__dict__["_fitted_columns"] = pd.Index(self.feature_names_)
        if X.columns.equals(fitted):
            return X
        missing = [c for c in self.feature_names_ if c not in X.columns]
        if missing:
            raise ConfigError(
                f"{self.kind}: X lacks {len(missing)} feature(s) the model was fitted on, e.g. {missing[:3]}"
            )
        return X.loc[:, self.feature_names_]

    # -- persistence -----------------------------------------------------------------------

    def save(self, directory: str | Path) -> Path:
        """Write the model to ``directory`` (created), atomically per file."""
        self._check_fitted()
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(folder / MODEL_FILE) as temp, open(temp, "wb") as handle:
            pickle.dump(self, handle, protocol=pickle.HIGHEST_PROTOCOL)
        meta = {
            "kind": self.kind,
            "params": _jsonable(self.get_params()),
            "features": self.feature_names_,
            "trademl_version": __version__,
            "format_version": FORMAT_VERSION,
        }
        with atomic_path(folder / META_FILE) as temp:
            Path(temp).write_text(json.dumps(meta, indent=2))
        return folder

    def _after_load(self, folder: Path) -> None:
        """Hook for kinds that store more than the pickle (e.g. network weights); no-op here."""


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


def check_xy(X: pd.DataFrame, y: pd.Series, kind: str) -> tuple[pd.DataFrame, pd.Series]:
    """Refuse mismatched, empty or non-finite targets (features may hold NaN)."""
    if not isinstance(X, pd.DataFrame):
        raise ConfigError(f"{kind}: X must be a pandas DataFrame, got {type(X).__name__}")
    y = pd.Series(y) if not isinstance(y, pd.Series) else y
    if len(X) != len(y):
        raise ConfigError(f"{kind}: X has {len(X)} rows but y has {len(y)}")
    if len(X) == 0:
        raise ConfigError(f"{kind}: no rows to fit on")
    if not np.isfinite(y.to_numpy(dtype=np.float64)).all():
        raise ConfigError(
            f"{kind}: y holds NaN or infinite values; drop incomplete label rows first"
        )
    return X, y


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
