"""The pipeline model: the feature set, the label spec, the fitted max/min predictor and their
metadata as one object, so that training, serving and backtests compute features the same way.

A training run (:func:`trademl.workflow.run`) builds it and saves it in its output folder as
``pipeline.pkl``, its SHA-256 recorded in ``run.json``; :func:`load_run_pipeline` loads it back
without MLflow. The tracking layer logs the same object as an MLflow model.

>>> pipeline = load_run_pipeline("runs/btc_1h")  # doctest: +SKIP
>>> pipeline.predict(candles).tail(1)  # doctest: +SKIP
>>> pipeline.predict_last(candles).values  # the same numbers, from warm-up + 1 candles  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import pickle
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from trademl.atomic import atomic_path
from trademl.data.candles import as_candles
from trademl.data.timeframes import Timeframe
from trademl.errors import ConfigError, DataValidationError, ModelFormatError, ModelNotFoundError
from trademl.features import build_features, last_bar_features
from trademl.features.cache import FEATURE_CONTRACT
from trademl.features.engine import plan
from trademl.features.sets import FeatureSet
from trademl.models.maxmin import MaxMinPredictor

if TYPE_CHECKING:
    from trademl.monitoring.profile import MonitoringProfile

PIPELINE_FILE = "pipeline.pkl"
RUN_FILE = "run.json"


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
    monitoring : MonitoringProfile or None
        What the served model is watched against (baselines, calibrated alarm thresholds,
        reference sketches); None for panels and runs with ``monitoring.enabled`` false.
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
    monitoring: MonitoringProfile | None = None

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

    def features(self, candles: pd.DataFrame) -> pd.DataFrame:
        """The model's input features for every candle after the warm-up (what :meth:`predict`
        feeds the models), for monitoring and baselines.

        Parameters
        ----------
        candles : pandas.DataFrame
            As for :meth:`predict`.

        Returns
        -------
        pandas.DataFrame
            One row per candle after the first ``warmup_bars``, the ``feature_columns``.
        """
        frame = self._candles(candles)
        return build_features(frame, self.feature_set).iloc[self.warmup_bars :][
            self.feature_columns
        ]

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
        frame = as_candles(
            candles, self.timeframe, what=f"candles for this {self.timeframe} model", check=False
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


def _intern_names(root: object) -> None:
    """Make every attribute name and string dict key in ``root``'s graph the interned string.

    Pickle writes a string object once and refers back to it; two equal strings that are
    different objects are written twice. Whether a fitted estimator's attribute names share
    one object depends on what ran before in the process, so without this two identical runs
    in one process could write different bytes for the same model.
    """
    seen: set[int] = set()
    stack = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, str | bytes | int | float | type | None):
            continue
        seen.add(id(obj))
        if isinstance(obj, dict):
            if any(isinstance(k, str) for k in obj):
                items = [(sys.intern(k) if isinstance(k, str) else k, v) for k, v in obj.items()]
                obj.clear()
                obj.update(items)
            stack.extend(obj.values())
        elif isinstance(obj, list | tuple | set | frozenset):
            stack.extend(obj)
        elif type(obj).__module__.startswith(("numpy", "pandas")):
            continue  # arrays and frames pickle their data, not attribute dicts
        else:
            attributes = getattr(obj, "__dict__", None)
            if isinstance(attributes, dict):
                stack.append(attributes)


def save_pipeline(pipeline: PipelineModel, folder: Path) -> str:
    """Write ``pipeline`` to ``folder/pipeline.pkl`` atomically; returns its SHA-256."""
    _intern_names(pipeline)
    payload = pickle.dumps(pipeline, protocol=pickle.HIGHEST_PROTOCOL)
    with atomic_path(folder / PIPELINE_FILE) as temp:
        Path(temp).write_bytes(payload)
    return hashlib.sha256(payload).hexdigest()


def load_run_pipeline(folder: str | Path) -> PipelineModel:
    """The pipeline model a training run saved in ``folder``, without MLflow.

    The file's SHA-256 is checked against the one the run recorded in ``run.json`` before it
    is unpickled (unpickling runs code: only load folders you trust).

    Raises
    ------
    ModelNotFoundError
        ``folder`` holds no saved pipeline (not a run folder, or a run of an older trademl).
    ModelFormatError
        The file does not match its recorded digest, is not a pipeline, or was trained under
        another feature contract.
    """
    root = Path(folder)
    path, record = root / PIPELINE_FILE, root / RUN_FILE
    if not path.is_file() or not record.is_file():
        raise ModelNotFoundError(
            f"{root} holds no trained pipeline (expected {PIPELINE_FILE} and {RUN_FILE} of a "
            "`trademl train` output folder)"
        )
    expected = json.loads(record.read_text()).get("pipeline_sha256")
    payload = path.read_bytes()
    if expected != hashlib.sha256(payload).hexdigest():
        raise ModelFormatError(
            f"{path} does not match the digest its run recorded in {RUN_FILE}; refusing to load it"
        )
    pipeline = pickle.loads(payload)
    if not isinstance(pipeline, PipelineModel):
        raise ModelFormatError(f"{path} does not hold a trademl pipeline")
    check_feature_contract(pipeline, str(root))
    return pipeline


def check_feature_contract(pipeline: PipelineModel, label: str) -> None:
    """Refuse a pipeline whose features were computed under another feature contract.

    Indicator values change between contracts (warm-ups, scale-free columns), so serving such
    a pipeline would feed its models inputs they were never validated on.

    Raises
    ------
    ModelFormatError
        Naming the pipeline's contract, this trademl's, and what to do.
    """
    trained = str(pipeline.metadata.get("feature_contract", "1"))
    if trained != FEATURE_CONTRACT:
        raise ModelFormatError(
            f"{label} was trained under feature contract {trained}; this trademl computes "
            f"features under contract {FEATURE_CONTRACT}, so its served inputs would differ from "
            "the validated ones: retrain it (trademl train) and register the new version"
        )
