"""Deep sequence models: kinds ``gru``, ``lstm``, ``transformer`` and ``cnn_lstm``.

Each reads windows of the last ``seq_len`` rows (``is_sequence``); the networks are in
:mod:`trademl.models.deep.networks` and the shared training loop (scaling, windows, early
stopping on the tail, schedule, seeds, device) in :mod:`trademl.models.deep.trainer`.
PyTorch is optional: the kinds are always registered, and fitting one without torch installed
raises a :class:`~trademl.errors.ConfigError` saying ``pip install torch==2.13.0``.

Predictions
    ``predict(X)`` cuts its windows from ``X`` itself, so the first ``seq_len - 1`` rows of
    ``X`` have no full window and their prediction is NaN; pass the ``seq_len - 1`` rows
    before the ones you need (they are only read as features) and drop those predictions.
Several targets
    ``fit(X, y)`` with ``y`` a DataFrame of several columns (``max_high_6``, ``min_low_6``,
    ``max_high_72``...) trains one network with one output per column (a multi-output head
    sharing the sequence encoder). ``predict_multi(X)`` returns every column,
    ``predict_target(X, column)`` one of them, and ``predict(X)`` the first.
Intervals (Monte Carlo dropout)
    ``predict_interval(X, alpha)`` runs ``mc_samples`` passes with dropout left on (Gal &
    Ghahramani, 2016) and returns the ``alpha/2`` and ``1 - alpha/2`` quantiles of the passes.
    Such a band reflects the model's (epistemic) uncertainty only, not the noise of the
    target, so it usually covers far less than ``1 - alpha`` of the outcomes; compare it with a
    conformal interval (:mod:`trademl.models.uncertainty`) before trusting it. The passes are
    seeded from ``random_state``: the same model gives the same band. ``dropout=0`` gives a
    band of width 0.
Persistence
    ``save`` writes the network's weights with ``torch.save`` to ``network.pt`` beside the
    pickled model (which then holds no weights) and its metadata; ``load_model`` checks the
    format version as for every kind, then reloads the weights onto CUDA or the CPU.
"""

from __future__ import annotations

import importlib
import threading
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, ClassVar, Self

import numpy as np
import pandas as pd

from trademl.errors import ConfigError
from trademl.models.base import BaseModel, as_frame, check_xy, register_model
from trademl.models.gbm import tail_split
from trademl.models.space import SearchSpace, integer, log_uniform, uniform

if TYPE_CHECKING:
    from torch import nn

    from trademl.models.deep.trainer import Scaler

NETWORK_FILE = "network.pt"
# Bump when the layout of network.pt changes incompatibly.
NETWORK_FORMAT = 1
TORCH_HINT = "pip install torch==2.13.0"

# Set while save() pickles a model, so that the pickle leaves the weights to network.pt.
_saving = threading.local()


def require_torch(kind: str) -> ModuleType:
    """Import torch, or fail with a :class:`ConfigError` saying how to install it.

    Parameters
    ----------
    kind:
        The model kind asking, to word the error.

    Returns
    -------
    module
        The ``torch`` module.
    """
    try:
        return importlib.import_module("torch")
    except ImportError as error:
        raise ConfigError(
            f"model kind {kind!r} needs PyTorch, which is not installed: {TORCH_HINT}"
        ) from error


class DeepSequenceModel(BaseModel):
    """A network over windows of rows, trained by the shared loop.

    Parameters
    ----------
    task:
        ``"regression"``, ``"classification"`` (``predict_proba`` gives P(y = 1)) or
        ``"quantile"``.
    alpha:
        Quantile level of task ``quantile`` (ignored otherwise).
    seq_len:
        Rows per window (the row predicted and the ``seq_len - 1`` before it).
    hidden:
        Width of the network (hidden state, channels or model width).
    layers:
        Stacked recurrent or encoder layers.
    dropout:
        Dropout rate, in [0, 1); also drives the Monte Carlo intervals.
    epochs:
        Most passes over the training windows.
    batch_size:
        Windows per optimisation step.
    lr:
        AdamW learning rate (halved on plateaus).
    weight_decay:
        AdamW decoupled weight decay.
    patience:
        Epochs without a lower validation loss before stopping; None trains every epoch on
        every row (no validation tail).
    validation_fraction:
        Share of the last rows used as the early-stopping tail.
    validation_gap:
        Rows dropped between the head and the tail (set to the label horizon).
    random_state:
        Seed of initialisation, dropout, shuffling and the Monte Carlo passes.
    mc_samples:
        Stochastic passes of ``predict_interval``.
    n_threads:
        CPU threads; None means ``min(4, cores)``.

    Attributes
    ----------
    network_ : torch.nn.Module
        The trained network (weights of the best epoch).
    target_names_ : list of str
        The target columns, one network output each.
    best_epoch_ : int
        The epoch whose weights were kept (from 1).
    history_ : list of dict
        Per epoch, the training and validation losses (scaled units).
    """

    architecture: ClassVar[str] = ""
    supports_interval = True
    is_sequence = True
    # The quantile task works, but conformalised quantile regression (two networks per fit)
    # is not offered: ``intervals: cqr`` gives deep kinds split-conformal intervals.
    supports_quantile = False
    onnx_export = "network"

    @classmethod
    def search_space(cls) -> SearchSpace:
        """Window, width, depth, dropout, learning rate and epochs."""
        return {
            "seq_len": integer(16, 96, log=True),
            "hidden": integer(16, 128, log=True),
            "layers": integer(1, 3),
            "dropout": uniform(0.0, 0.5),
            "lr": log_uniform(1e-4, 1e-2),
            "epochs": integer(3, 15),
        }

    def __init__(
        self,
        task: str = "regression",
        alpha: float = 0.9,
        seq_len: int = 32,
        hidden: int = 32,
        layers: int = 1,
        dropout: float = 0.1,
        epochs: int = 20,
        batch_size: int = 256,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        patience: int | None = 3,
        validation_fraction: float = 0.15,
        validation_gap: int = 0,
        random_state: int = 0,
        mc_samples: int = 30,
        n_threads: int | None = None,
    ) -> None:
        self.task = task
        self.alpha = alpha
        self.seq_len = seq_len
        self.hidden = hidden
        self.layers = layers
        self.dropout = dropout
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.validation_gap = validation_gap
        self.random_state = random_state
        self.mc_samples = mc_samples
        self.n_threads = n_threads

    # -- checks ----------------------------------------------------------------------------

    def _check_params(self) -> None:
        owner = self.kind
        for name in ("seq_len", "hidden", "layers", "epochs", "batch_size", "mc_samples"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{owner}: {name} must be an integer >= 1, got {value!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"{owner}: dropout must lie in [0, 1), got {self.dropout!r}")
        if not self.lr > 0:
            raise ConfigError(f"{owner}: lr must be > 0, got {self.lr!r}")
        if not self.weight_decay >= 0:
            raise ConfigError(f"{owner}: weight_decay must be >= 0, got {self.weight_decay!r}")
        if self.patience is not None and (not isinstance(self.patience, int) or self.patience < 1):
            raise ConfigError(f"{owner}: patience must be None or an integer >= 1")
        if self.n_threads is not None and (
            not isinstance(self.n_threads, int) or self.n_threads < 1
        ):
            raise ConfigError(f"{owner}: n_threads must be None or an integer >= 1")
        if self.task == "quantile" and not 0.0 < self.alpha < 1.0:
            raise ConfigError(f"{owner}: alpha must lie in (0, 1) for task quantile")

    def _targets(self, X: pd.DataFrame, y: pd.Series | pd.DataFrame | np.ndarray) -> pd.DataFrame:
        """``y`` as a checked DataFrame of one or more target columns."""
        if isinstance(y, pd.DataFrame):
            if y.shape[1] == 0:
                raise ConfigError(f"{self.kind}: y is a DataFrame without columns")
            for column in y.columns:
                check_xy(X, y[column], self.kind)
            frame = y
        else:
            series = check_xy(X, y, self.kind)[1]
            frame = series.to_frame(name=series.name if series.name is not None else "y")
        if self.task == "classification":
            for column in frame.columns:
                classes = np.unique(frame[column].to_numpy())
                if not set(classes.tolist()) <= {0, 1} or len(classes) < 2:
                    raise ConfigError(
                        f"{self.kind}: classification needs both classes 0 and 1 in "
                        f"y[{column!r}], got {classes.tolist()}"
                    )
        return frame

    # -- fit / predict ---------------------------------------------------------------------

    def fit(
        self,
        X: pd.DataFrame | np.ndarray,
        y: pd.Series | pd.DataFrame | np.ndarray,
        *,
        eval_set: tuple[pd.DataFrame, pd.Series | pd.DataFrame] | None = None,
    ) -> Self:
        """Validate, train the network on windows of ``X`` and return ``self``.

        Parameters
        ----------
        X:
            Features, one row per bar, oldest first; NaN allowed (0 after scaling).
        y:
            The target (Series), or several targets (DataFrame, one output each).
        eval_set:
            Optional ``(X_valid, y_valid)`` to stop on instead of the tail of ``X``; it must
            hold no test rows. Ignored when ``patience`` is None.

        Returns
        -------
        Self
            The fitted model.
        """
        if self.task not in self.tasks:
            raise ConfigError(
                f"{self.kind}: task={self.task!r} is not one of {', '.join(self.tasks)}"
            )
        X = as_frame(X, self.kind)
        frame = self._targets(X, y)
        self._check_params()
        require_torch(self.kind)
        from trademl.models.deep import trainer

        features = _matrix(X, self.kind)
        targets = frame.to_numpy(dtype=np.float64)
        head_stop, tail_start = len(features), None
        valid: tuple[np.ndarray, np.ndarray] | None = None
        if self.patience is not None:
            if eval_set is not None:
                X_valid = eval_set[0]
                if not isinstance(X_valid, pd.DataFrame):
                    raise ConfigError(f"{self.kind}: eval_set X must be a pandas DataFrame")
                y_valid = self._targets(X_valid, eval_set[1])
                X_valid = self._align_to(X_valid, list(X.columns))
                valid = (_matrix(X_valid, self.kind), y_valid.to_numpy(np.float64))
            else:
                head_stop, tail_start = tail_split(
                    len(features),
                    self.validation_fraction,
                    self.validation_gap,
                    owner=self.kind,
                    role="early-stopping validation",
                )
        if self.task == "classification":
            for column, values in zip(frame.columns, targets[:head_stop].T, strict=True):
                if len(np.unique(values)) < 2:
                    raise ConfigError(
                        f"{self.kind}: the rows the network learns from (before the validation "
                        f"tail) hold one class only in {column!r}; give more rows or set "
                        "patience=None"
                    )
        settings = trainer.TrainSettings(
            owner=self.kind,
            task=self.task,
            alpha=self.alpha,
            seq_len=self.seq_len,
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            weight_decay=self.weight_decay,
            patience=self.patience,
            validation_fraction=self.validation_fraction,
            validation_gap=self.validation_gap,
            random_state=self.random_state,
            n_threads=self.n_threads,
        )
        result = trainer.train_network(
            self._build,
            features,
            targets,
            settings,
            head_stop=head_stop,
            tail_start=tail_start,
            eval_set=valid,
        )
        self._remember_features(X)
        if self.task == "classification":
            self.classes_ = np.array([0.0, 1.0])
        else:
            self.__dict__.pop("classes_", None)
        self.target_names_ = [str(c) for c in frame.columns]
        self.network_ = result.network
        self.x_scaler_: Scaler = result.x_scaler
        self.y_scaler_: Scaler = result.y_scaler
        self.best_epoch_ = result.best_epoch
        self.history_ = result.history
        return self

    def _build(self, n_features: int, n_outputs: int) -> nn.Module:
        from trademl.models.deep.networks import build_network

        return build_network(
            self.architecture, n_features, n_outputs, self.hidden, self.layers, self.dropout
        )

    def _align_to(self, X: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
        missing = [c for c in columns if c not in X.columns]
        if missing:
            raise ConfigError(
                f"{self.kind}: X lacks {len(missing)} feature(s) the model was fitted on, "
                f"e.g. {missing[:3]}"
            )
        return X.loc[:, columns]

    def _outputs(self, X: pd.DataFrame, samples: int = 0) -> np.ndarray:
        """Predictions in target units, NaN for rows without a full window.

        ``(n_rows, n_targets)``, or ``(samples, n_rows, n_targets)`` for Monte Carlo passes.
        """
        require_torch(self.kind)
        from trademl.models.deep.trainer import forward_windows

        raw = forward_windows(
            self.network_,
            _matrix(X, self.kind),
            self.x_scaler_,
            self.seq_len,
            self.batch_size,
            samples=samples,
            seed=self.random_state + 1,
            n_threads=self.n_threads,
        )
        if self.task == "classification":
            values = 1.0 / (1.0 + np.exp(-raw))
        else:
            values = self.y_scaler_.inverse(raw)
        missing = min(self.seq_len - 1, len(X))
        pad_shape = (*values.shape[:-2], missing, values.shape[-1])
        return np.concatenate([np.full(pad_shape, np.nan), values], axis=-2)

    def _predict(self, X: pd.DataFrame) -> np.ndarray:
        return self._outputs(X)[:, 0]

    def predict_multi(self, X: pd.DataFrame) -> pd.DataFrame:
        """Predictions of every target column, indexed like ``X``.

        Parameters
        ----------
        X:
            Features; the first ``seq_len - 1`` rows get NaN.

        Returns
        -------
        pandas.DataFrame
            One column per name of ``target_names_``.
        """
        self._check_fitted()
        values = self._outputs(self._align(X))
        return pd.DataFrame(values, index=X.index, columns=self.target_names_)

    def predict_target(self, X: pd.DataFrame, column: str) -> np.ndarray:
        """Predictions of the target column ``column`` (one the network was trained for).

        Parameters
        ----------
        X:
            Features; the first ``seq_len - 1`` rows get NaN.
        column:
            A name of ``target_names_``.

        Returns
        -------
        numpy.ndarray
            1-D float array, one value per row of ``X``.
        """
        self._check_fitted()
        if column not in self.target_names_:
            raise ConfigError(
                f"{self.kind}: the network was not trained for target {column!r}; its output "
                f"heads are {', '.join(self.target_names_)}"
            )
        position = self.target_names_.index(column)
        return np.asarray(self._outputs(self._align(X))[:, position], dtype=np.float64)

    def predict_interval(self, X: pd.DataFrame, alpha: float) -> tuple[np.ndarray, np.ndarray]:
        """Monte Carlo dropout band of nominal coverage ``1 - alpha`` for the first target.

        Parameters
        ----------
        X:
            Features; the first ``seq_len - 1`` rows get NaN bounds.
        alpha:
            Nominal miscoverage, in (0, 1).

        Returns
        -------
        tuple of numpy.ndarray
            The ``alpha/2`` and ``1 - alpha/2`` quantiles of ``mc_samples`` passes with dropout
            on. They reflect model uncertainty only and typically under-cover (see the module
            docstring).
        """
        self._check_fitted()
        if self.task == "classification":
            raise ConfigError(
                f"{self.kind}: predict_interval answers regression and quantile tasks, "
                "not classification"
            )
        if not 0.0 < alpha < 1.0:
            raise ConfigError(f"{self.kind}: alpha must lie in (0, 1), got {alpha!r}")
        passes = self._outputs(self._align(X), samples=self.mc_samples)[:, :, 0]
        lower = np.quantile(passes, alpha / 2, axis=0)
        upper = np.quantile(passes, 1 - alpha / 2, axis=0)
        return np.asarray(lower, dtype=np.float64), np.asarray(upper, dtype=np.float64)

    # -- persistence -----------------------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        network = state.pop("network_", None)
        if network is not None and not getattr(_saving, "active", False):
            # numpy arrays, not tensors: a pickled tensor names its storage by memory address,
            # so the same weights would pickle to different bytes on every run.
            state["_network_state"] = {
                k: v.detach().cpu().numpy() for k, v in network.state_dict().items()
            }
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        weights = state.pop("_network_state", None)
        super().__setstate__(state)
        if weights is not None:
            self._restore_network(weights)

    def _restore_network(self, weights: dict[str, Any]) -> None:
        require_torch(self.kind)
        import torch

        from trademl.models.deep.trainer import pick_device

        network = self._build(self.n_features_in_, len(self.target_names_))
        # Pickles hold numpy arrays (older ones tensors); network.pt holds tensors.
        network.load_state_dict({k: torch.as_tensor(v) for k, v in weights.items()})
        self.network_ = network.to(pick_device()).eval()

    def save(self, directory: str | Path) -> Path:
        """Write the weights to ``network.pt`` (``torch.save``), then the model and metadata.

        Parameters
        ----------
        directory:
            Folder to write to (created).

        Returns
        -------
        pathlib.Path
            The folder.
        """
        self._check_fitted()
        torch = require_torch(self.kind)
        from trademl.atomic import atomic_path

        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        payload = {
            "format": NETWORK_FORMAT,
            "architecture": self.architecture,
            "state_dict": {k: v.cpu() for k, v in self.network_.state_dict().items()},
        }
        with atomic_path(folder / NETWORK_FILE) as temp:
            torch.save(payload, temp)
        _saving.active = True
        try:
            return super().save(folder)
        finally:
            _saving.active = False

    def _after_load(self, folder: Path) -> None:
        """Reload the weights written by :meth:`save` (called by ``load_model``)."""
        if hasattr(self, "network_"):
            return
        torch = require_torch(self.kind)
        path = folder / NETWORK_FILE
        if not path.exists():
            raise ConfigError(f"{folder}: {NETWORK_FILE} with the network's weights is missing")
        payload = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(payload, dict) or payload.get("format") != NETWORK_FORMAT:
            found = payload.get("format") if isinstance(payload, dict) else None
            raise ConfigError(
                f"{path}: network weights in format {found}; this trademl reads format "
                f"{NETWORK_FORMAT}"
            )
        if payload.get("architecture") != self.architecture:
            raise ConfigError(
                f"{path}: weights of a {payload.get('architecture')!r} network, "
                f"not {self.architecture!r}"
            )
        self._restore_network(payload["state_dict"])


def _matrix(X: pd.DataFrame, owner: str) -> np.ndarray:
    """Features as a float64 array (NaN kept; scaling turns it into 0)."""
    try:
        return X.to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{owner}: every feature column must be numeric ({error})") from error


@register_model
class GRUModel(DeepSequenceModel):
    """Kind ``gru``: a GRU over the window (parameters: :class:`DeepSequenceModel`)."""

    kind = "gru"
    architecture = "gru"


@register_model
class LSTMModel(DeepSequenceModel):
    """Kind ``lstm``: an LSTM over the window (parameters: :class:`DeepSequenceModel`)."""

    kind = "lstm"
    architecture = "lstm"


@register_model
class TransformerModel(DeepSequenceModel):
    """Kind ``transformer``: a Transformer encoder (parameters: :class:`DeepSequenceModel`)."""

    kind = "transformer"
    architecture = "transformer"


@register_model
class CNNLSTMModel(DeepSequenceModel):
    """Kind ``cnn_lstm``: a 1-D convolution then an LSTM (parameters: :class:`DeepSequenceModel`)."""

    kind = "cnn_lstm"
    architecture = "cnn_lstm"


__all__ = [
    "CNNLSTMModel",
    "DeepSequenceModel",
    "GRUModel",
    "LSTMModel",
    "TransformerModel",
    "require_torch",
]
