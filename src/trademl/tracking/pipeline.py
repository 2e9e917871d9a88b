"""The pipeline model: the feature set, the label spec, the fitted max/min predictor and their
metadata as one object, so that training, serving and backtests compute features the same way.

:class:`PipelineModel` is plain Python (usable without MLflow); :class:`PipelinePyfunc` wraps
it as an MLflow pyfunc model, logged with a signature and an input example by
:func:`log_pipeline`; :func:`load_pipeline` loads a registered version back.

>>> pipeline, info = load_pipeline("BTCUSDT_1h_btc_1h", "champion")  # doctest: +SKIP
>>> pipeline.predict(candles).tail(1)  # doctest: +SKIP
>>> pipeline.predict_last(candles).values  # the same numbers, from warm-up + 1 candles  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import logging
import pickle
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc.model import PythonModel

from trademl import __version__
from trademl.config import Settings, get_settings
from trademl.data.timeframes import Timeframe
from trademl.errors import ConfigError, DataValidationError, TrackingError
from trademl.features import build_features, last_bar_features
from trademl.features.cache import FEATURE_CONTRACT
from trademl.features.engine import plan
from trademl.features.sets import FeatureSet
from trademl.models.maxmin import MaxMinPredictor
from trademl.tracking.client import connect

if TYPE_CHECKING:
    from mlflow.models.model import ModelInfo

    from trademl.tracking.registry import VersionInfo

CANDLE_COLUMNS = ("open", "high", "low", "close", "volume")
PIPELINE_ARTIFACT = "pipeline"
LOGGED_MODEL_NAME = "pipeline"
# What the pyfunc's environment needs, pinned to what trained it (never inferred: the inferred
# list is noisy and drops torch's +cpu local version).
_REQUIREMENTS = (
    "mlflow",
    "numpy",
    "pandas",
    "pyarrow",
    "scikit-learn",
    "scipy",
    "lightgbm",
    "TA-Lib",
    "numba",
    "PyYAML",
    "pydantic",
)


def warmup_bars(feature_set: FeatureSet, timeframe: str) -> int:
    """Leading bars the feature set needs before its first complete row."""
    base = Timeframe.parse(timeframe)
    return max(p.warmup_base_bars(base) for p in plan(feature_set, base))


@dataclass(frozen=True)
class LastBar:
    """The pipeline's prediction for the last candle of a window.

    Attributes
    ----------
    timestamp : pandas.Timestamp
        The (UTC) start of the bar predicted from.
    close : float
        That bar's close.
    values : dict of str to float
        Every output column of :meth:`PipelineModel.predict` for that bar.
    missing_bars : int
        Bars absent from the warm-up window (timestamps that the timeframe says should be there
        and are not): the features were computed over rows with a gap, as training computes
        them over the stored history with the same gap.
    """

    timestamp: pd.Timestamp
    close: float
    values: dict[str, float]
    missing_bars: int

    @property
    def gapped(self) -> bool:
        """Whether bars were missing inside the warm-up window."""
        return self.missing_bars > 0


def missing_bars(index: pd.DatetimeIndex, timeframe: str) -> int:
    """How many ``timeframe`` bars are absent between the first and the last of ``index``.

    >>> index = pd.DatetimeIndex(["2024-01-01 00:00", "2024-01-01 01:00", "2024-01-01 04:00"])
    >>> missing_bars(index, "1h")
    2
    """
    if len(index) < 2:
        return 0
    span = index[-1] - index[0]
    return max(0, int(span // Timeframe.parse(timeframe).delta) - (len(index) - 1))


@dataclass
class PipelineModel:
    """Candles in, per-horizon predictions out: features, label spec and fitted models.

    Attributes
    ----------
    symbol, timeframe : str
        What the models were trained on; ``predict`` checks the candles' bar spacing.
    horizons : dict of str to int
        Horizon name (as in the run config) → bars.
    feature_set : FeatureSet
        The full feature-set definition (not only its name), so a custom set travels along.
    label_spec : dict
        The run config's ``labels`` section and the dead zone, as trained.
    predictor : MaxMinPredictor
        The fitted per-horizon direction, max-high and min-low models.
    feature_columns : list of str
        The columns the models were fitted on, in order.
    warmup_bars : int
        Leading candles the features need: ``predict`` needs at least ``warmup_bars + 1``
        candles and returns one row per candle after the first ``warmup_bars``.
    metadata : dict
        Data hash, train span, run id, library versions.
    symbols : tuple of str
        A panel model's symbols (empty for a single-symbol model): it serves each of them,
        ``symbol`` being the one this object predicts for (see :meth:`for_symbol`).
    """

    symbol: str
    timeframe: str
    horizons: dict[str, int]
    feature_set: FeatureSet
    label_spec: dict[str, Any]
    predictor: MaxMinPredictor
    feature_columns: list[str]
    warmup_bars: int
    metadata: dict[str, Any] = field(default_factory=dict)
    symbols: tuple[str, ...] = ()

    @property
    def served_symbols(self) -> tuple[str, ...]:
        """Every symbol the pipeline predicts: a panel's symbols, or its one symbol."""
        return self.symbols or (self.symbol,)

    def for_symbol(self, symbol: str) -> PipelineModel:
        """This pipeline predicting for ``symbol`` (one of :attr:`served_symbols`); the fitted
        models are shared, not copied.

        Raises
        ------
        ConfigError
            ``symbol`` is not one the pipeline was trained on.
        """
        if symbol == self.symbol:
            return self
        if symbol not in self.served_symbols:
            raise ConfigError(
                f"symbol {symbol!r} is not predicted by this {self.timeframe} model; it serves "
                f"{', '.join(self.served_symbols)}"
            )
        return replace(self, symbol=symbol)

    @property
    def output_columns(self) -> list[str]:
        """The prediction columns, ``{horizon}__{p_up|confidence|high|low|...}``."""
        columns: list[str] = []
        for name, models in self.predictor.horizons.items():
            columns += [f"{name}__{c}" for c in ("p_up", "confidence", "high_log", "low_log")]
            columns += [f"{name}__high", f"{name}__low"]
            for target, model in (("high", models.max_high), ("low", models.min_low)):
                if model.supports_interval:
                    columns += [f"{name}__{target}_lo", f"{name}__{target}_hi"]
        return columns

    def predict(self, candles: pd.DataFrame) -> pd.DataFrame:
        """Per-horizon predictions for every candle after the warm-up.

        Parameters
        ----------
        candles : pandas.DataFrame
            ``open, high, low, close, volume``, indexed by a UTC ``DatetimeIndex`` or with a
            ``timestamp`` column (naive timestamps are read as UTC), oldest first, at the
            model's timeframe; at least ``warmup_bars + 1`` rows.

        Returns
        -------
        pandas.DataFrame
            Indexed by ``timestamp``: ``{horizon}__p_up``, ``__confidence``, ``__high``,
            ``__low`` (prices), ``__high_log``, ``__low_log`` and the interval bounds. Given
            exactly ``warmup_bars + 1`` candles, the one row is :meth:`predict_last`'s.

        Raises
        ------
        DataValidationError
            Missing columns, broken candles, the wrong bar spacing or too few rows.
        """
        frame = self._candles(candles)
        if len(frame) == self.window_bars:
            # The served window (what the pyfunc is sent for one bar): the one last-bar
            # computation, so MLflow serving answers what the server answers.
            return self._predict_last(frame)
        features = build_features(frame, self.feature_set)
        usable = features.iloc[self.warmup_bars :]
        out = self.predictor.predict(
            usable[self.feature_columns], frame["close"].iloc[self.warmup_bars :]
        )
        out.index.name = "timestamp"
        return out

    @property
    def window_bars(self) -> int:
        """Candles a last-bar prediction reads: the warm-up and the bar predicted."""
        return self.warmup_bars + 1

    def predict_last(self, candles: pd.DataFrame) -> LastBar:
        """The prediction for the last candle, from its ``warmup_bars + 1`` last candles only.

        This is the one computation of a served prediction (HTTP, WebSocket, signals): the
        features come from :func:`~trademl.features.last_bar_features`, which past the declared
        warm-up equal those computed over the full history, so the result equals the last row
        of :meth:`predict` over any longer history ending at the same bar.

        Parameters
        ----------
        candles : pandas.DataFrame
            As for :meth:`predict`; only the last ``warmup_bars + 1`` rows are read, so a
            caller may pass exactly those or any longer history.

        Returns
        -------
        LastBar
            The bar's timestamp and close, every output column, and how many bars are missing
            inside the window (a gapped prediction is flagged, not refused).

        Raises
        ------
        DataValidationError
            Missing columns, broken candles, bars not ``timeframe`` apart
            (``rule="timeframe"``), or fewer than ``warmup_bars + 1`` candles
            (``rule="too_few_bars"``, the message says how many are needed).

        Examples
        --------
        >>> last = pipeline.predict_last(candles)  # doctest: +SKIP
        >>> last.values["intraday__p_up"] == pipeline.predict(candles).iloc[-1]["intraday__p_up"]  # doctest: +SKIP
        True
        """
        frame = self._candles(candles.iloc[-self.window_bars :])
        out = self._predict_last(frame)
        values = {str(k): float(v) for k, v in out.iloc[0].items()}
        return LastBar(
            frame.index[-1],
            float(frame["close"].iloc[-1]),
            values,
            missing_bars(pd.DatetimeIndex(frame.index), self.timeframe),
        )

    def _predict_last(self, frame: pd.DataFrame) -> pd.DataFrame:
        features = last_bar_features(frame, self.feature_set)
        out = self.predictor.predict(features[self.feature_columns], frame["close"].iloc[-1:])
        out.index.name = "timestamp"
        return out

    def _candles(self, candles: pd.DataFrame) -> pd.DataFrame:
        frame = candles.copy()
        if "timestamp" in frame.columns:
            frame = frame.set_index("timestamp")
        missing = [c for c in CANDLE_COLUMNS if c not in frame.columns]
        if missing:
            raise DataValidationError(
                f"candles lack column(s) {', '.join(missing)}; expected {', '.join(CANDLE_COLUMNS)}"
                " and a timestamp (index or column)",
                rule="missing_column",
            )
        if not isinstance(frame.index, pd.DatetimeIndex):
            frame.index = pd.DatetimeIndex(pd.to_datetime(frame.index))
        index = frame.index
        index = index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")
        frame.index = index.rename("timestamp")
        frame = frame[list(CANDLE_COLUMNS)].astype(np.float64)
        # The spacing first: candles of another timeframe are wrong however many there are.
        expected = Timeframe.parse(self.timeframe).delta
        spacing = frame.index.to_series().diff().dropna()
        if len(spacing) and (spacing.min() < expected or spacing.median() != expected):
            raise DataValidationError(
                f"candles are {spacing.median()} apart (median, smallest {spacing.min()}); this "
                f"model predicts {self.timeframe} bars",
                rule="timeframe",
            )
        if len(frame) < self.window_bars:
            raise DataValidationError(
                f"model {self.symbol} {self.timeframe} needs at least {self.window_bars} candles "
                f"({self.warmup_bars} of warm-up for the {self.feature_set.name} features + the "
                f"bar predicted), got {len(frame)}",
                rule="too_few_bars",
            )
        frame.attrs.update(symbol=self.symbol, timeframe=self.timeframe)
        return frame


class PipelinePyfunc(PythonModel):
    """The MLflow pyfunc face of a :class:`PipelineModel`.

    Its input is the candles with a (naive, UTC) ``timestamp`` column, as MLflow signatures
    hold no time zone; its output is :meth:`PipelineModel.predict` with the index as a
    ``timestamp`` column, so it survives JSON serving.
    """

    def load_context(self, context: Any) -> None:
        """Unpickle the pipeline from the model's artifacts."""
        with open(context.artifacts[PIPELINE_ARTIFACT], "rb") as handle:
            self.pipeline: PipelineModel = pickle.load(handle)
        check_feature_contract(self.pipeline, "this pyfunc model")

    # A DataFrame hint: MLflow validates nothing from it (the signature rules) and stays quiet.
    def predict(
        self, context: object, model_input: pd.DataFrame, params: dict[str, object] | None = None
    ) -> pd.DataFrame:
        """Per-horizon predictions of the candles in ``model_input``."""
        out = self.pipeline.predict(pd.DataFrame(model_input))
        out.index = pd.DatetimeIndex(out.index).tz_convert("UTC").tz_localize(None)
        return out.reset_index()


def to_model_input(candles: pd.DataFrame) -> pd.DataFrame:
    """Candles as the pyfunc takes them: a naive UTC ``timestamp`` column and float64 OHLCV."""
    frame = candles[list(CANDLE_COLUMNS)].astype(np.float64)
    index = pd.DatetimeIndex(frame.index)
    frame.index = (index.tz_convert("UTC") if index.tz else index).tz_localize(None)
    frame.index.name = "timestamp"
    return frame.reset_index()


def requirements(kinds: list[str]) -> list[str]:
    """Pinned pip requirements of the pyfunc for the given model kinds."""
    names = list(_REQUIREMENTS)
    if "xgb" in kinds:
        names.append("xgboost-cpu")
    if set(kinds) & {"gru", "lstm", "transformer", "cnn_lstm"}:
        names.append("torch")
    pinned = [f"trademl=={__version__}"]
    for name in names:
        try:
            pinned.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return pinned


def log_pipeline(pipeline: PipelineModel, candles: pd.DataFrame, kinds: list[str]) -> ModelInfo:
    """Log ``pipeline`` as a pyfunc model of the active MLflow run.

    The input example is the last ``warmup_bars + 3`` of ``candles`` (MLflow runs the model on
    it when logging, so it must be long enough to predict); the signature is inferred from it
    and from the model's output on it.
    """
    from mlflow.models import infer_signature

    example = to_model_input(candles.iloc[-(pipeline.warmup_bars + 3) :])
    wrapper = PipelinePyfunc()
    wrapper.pipeline = pipeline
    signature = infer_signature(example, wrapper.predict(None, example))
    with tempfile.TemporaryDirectory() as folder, _quiet("mlflow.pyfunc"):
        path = Path(folder) / "pipeline.pkl"
        path.write_bytes(pickle.dumps(pipeline, protocol=pickle.HIGHEST_PROTOCOL))
        info: ModelInfo = mlflow.pyfunc.log_model(
            name=LOGGED_MODEL_NAME,
            python_model=PipelinePyfunc(),
            artifacts={PIPELINE_ARTIFACT: str(path)},
            signature=signature,
            input_example=example,
            pip_requirements=requirements(kinds),
            metadata={
                "symbol": pipeline.symbol,
                "symbols": list(pipeline.served_symbols),
                "timeframe": pipeline.timeframe,
                "horizons": pipeline.horizons,
                "feature_set": pipeline.feature_set.name,
                "feature_set_version": pipeline.feature_set.version,
                "warmup_bars": pipeline.warmup_bars,
            },
        )
    return info


@contextlib.contextmanager
def _quiet(name: str) -> Iterator[None]:
    # MLflow warns about cloudpickle for any Python-object model; ours is a class of trademl.
    log = logging.getLogger(name)
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def load_pipeline(
    name: str, alias_or_version: str | int = "champion", settings: Settings | None = None
) -> tuple[PipelineModel, VersionInfo]:
    """Load a registered pipeline model without MLflow's pyfunc machinery.

    Parameters
    ----------
    name : str
        The registered model name.
    alias_or_version : str or int
        ``"champion"``, ``"challenger"`` or a version number.
    settings : Settings or None
        The tracking backend; the process settings by default.

    Returns
    -------
    tuple of (PipelineModel, VersionInfo)
        The pipeline and the registry's record of the version (name, version, aliases, run
        id, tags).

    Raises
    ------
    ModelNotFoundError
        No such model, version or alias.
    TrackingError
        The backend is unreachable or the version holds no pipeline.
    """
    from trademl.tracking.registry import (
        pipeline_file,
        resolve_version,
        verify_pipeline_artifact,
    )

    info = resolve_version(name, alias_or_version, settings)
    with tempfile.TemporaryDirectory() as folder:
        local = Path(
            mlflow.artifacts.download_artifacts(
                # The version's own storage location: no registry lookup through MLflow's
                # process-wide URI, which another thread may point elsewhere.
                artifact_uri=connect(settings).get_model_version_download_uri(
                    name, str(info.version)
                ),
                dst_path=folder,
                tracking_uri=(settings or get_settings()).mlflow_uri,
            )
        )
        path = pipeline_file(local, f"model {name} version {info.version}")
        verify_pipeline_artifact(info, path)  # before unpickling: loading runs its code
        with open(path, "rb") as handle:
            pipeline = pickle.load(handle)
    if not isinstance(pipeline, PipelineModel):
        raise TrackingError(f"model {name} version {info.version} is not a trademl pipeline")
    check_feature_contract(pipeline, f"model {name} version {info.version}")
    return pipeline, info


def check_feature_contract(pipeline: PipelineModel, label: str) -> None:
    """Refuse a pipeline whose features were computed under another feature contract.

    Indicator values change between contracts (warm-ups, scale-free columns), so serving such
    a pipeline would feed its models inputs they were never validated on.

    Raises
    ------
    TrackingError
        Naming the pipeline's contract, this trademl's, and what to do.
    """
    trained = str(pipeline.metadata.get("feature_contract", "1"))
    if trained != FEATURE_CONTRACT:
        raise TrackingError(
            f"{label} was trained under feature contract {trained}; this trademl computes "
            f"features under contract {FEATURE_CONTRACT}, so its served inputs would differ from "
            "the validated ones: retrain it (trademl train) and register the new version"
        )
