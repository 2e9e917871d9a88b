"""``build_features``: a feature set computed on candles, causally, with higher timeframes
aligned on closed bars only, and a cache keyed by the data and the set.

Warm-up policy: the set's warm-up is the number of leading base bars some feature needs before
its first valid value (for a higher-timeframe feature, enough base bars for its own warm-up in
higher-timeframe bars plus one closed higher-timeframe bar). With ``warmup="keep"`` (default)
those rows stay, NaN, on the candles' index; with ``warmup="drop"`` they are removed. Either way
``frame.attrs["warmup_bars"]`` says how many there are, and they are logged. Nothing is ever
forward-filled.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from loguru import logger

from trademl.data.candles import candle_index, validate_candles
from trademl.data.resample import resample_candles
from trademl.data.timeframes import Timeframe
from trademl.errors import ConfigError, DataValidationError
from trademl.features.cache import FeatureCache, data_hash
from trademl.features.indicators import Bars, Indicator
from trademl.features.sets import FeatureSet, load_feature_set

WarmupPolicy = Literal["keep", "drop"]


@dataclass(frozen=True)
class PlannedFeature:
    """One feature of a set, resolved against a base timeframe."""

    indicator: Indicator
    params: dict[str, Any]
    timeframe: Timeframe | None  # None: the base timeframe
    relative: str | None = None  # "log_close", "close" or None (see FeatureSpec.relative)

    def run(self, bars: Bars) -> list[np.ndarray]:
        """The feature's output columns on ``bars``, made relative to their close if asked."""
        outputs = list(self.indicator.run(bars, self.params).values())
        if self.relative is None:
            return outputs
        with np.errstate(divide="ignore", invalid="ignore"):
            if self.relative == "log_close":
                scaled = [np.log(values / bars.close) for values in outputs]
            else:
                scaled = [values / bars.close for values in outputs]
        for values in scaled:
            values[np.isinf(values)] = np.nan
        return scaled

    def warmup_base_bars(self, base: Timeframe) -> int:
        """Leading base bars before this feature's first valid value (an upper bound)."""
        own = self.indicator.warmup(self.params)
        if self.timeframe is None:
            return own
        ratio = self.timeframe.seconds // base.seconds
        # `own` higher bars of warm-up, one more to close, and up to a period of misalignment.
        return (own + 2) * ratio - 1


def plan(feature_set: FeatureSet, base: Timeframe) -> list[PlannedFeature]:
    """Resolve every feature of ``feature_set`` for ``base``."""
    planned = []
    for spec in feature_set.features:
        indicator, params = spec.resolved()
        planned.append(
            PlannedFeature(
                indicator, params, feature_set.higher_timeframe(spec, base), spec.relative
            )
        )
    return planned


def warmup_bars(feature_set: FeatureSet | str, timeframe: str | Timeframe) -> int:
    """How many leading base bars the set needs before every feature is defined."""
    base = Timeframe.parse(timeframe)
    return max(p.warmup_base_bars(base) for p in plan(load_feature_set(feature_set), base))


def infer_timeframe(candles: pd.DataFrame) -> Timeframe:
    """The candles' timeframe: ``attrs["timeframe"]``, else the most common bar spacing."""
    declared = candles.attrs.get("timeframe")
    if declared:
        return Timeframe.parse(declared)
    steps = np.diff(candle_index(candles).as_unit("ns").asi8)
    if len(steps) == 0:
        raise ConfigError("cannot tell the timeframe of one bar; set candles.attrs['timeframe']")
    values, counts = np.unique(steps, return_counts=True)
    seconds = int(values[np.argmax(counts)] // 10**9)
    return Timeframe(seconds)


def build_features(
    candles: pd.DataFrame,
    feature_set: FeatureSet | str = "standard",
    *,
    warmup: WarmupPolicy = "keep",
    cache: FeatureCache | None = None,
) -> pd.DataFrame:
    """Compute ``feature_set`` on ``candles``.

    Parameters
    ----------
    candles:
        A Candles frame; ``attrs["timeframe"]`` names its timeframe (else it is inferred).
    feature_set:
        A preset name (``"minimal"``, ``"standard"``, ``"alpha158"``), a YAML path, or a
        :class:`FeatureSet`.
    warmup:
        ``"keep"``: the warm-up rows stay, NaN, on the same index; ``"drop"``: they are removed.
    cache:
        Reuse features computed before for the same data and the same set.

    Returns
    -------
    pandas.DataFrame
        float64 columns named after indicator and parameters (``rsi_14``, ``tf1d_atr_14``).

    Raises
    ------
    DataValidationError
        If the candles break the contract or are fewer than the warm-up needs.

    Examples
    --------
    >>> from trademl.data.sources.files import read_candle_file
    >>> candles = read_candle_file("../shared/data/crypto/BTCUSDT_1h.csv")  # doctest: +SKIP
    >>> build_features(candles, "minimal").columns[:3].tolist()  # doctest: +SKIP
    ['sma_20_vs_close', 'sma_50_vs_close', 'rsi_14']
    """
    if warmup not in ("keep", "drop"):
        raise ConfigError(f"warmup={warmup!r}: expected 'keep' or 'drop'")
    fs = load_feature_set(feature_set)
    validate_candles(candles)
    base = infer_timeframe(candles)
    planned = plan(fs, base)
    needed = max(p.warmup_base_bars(base) for p in planned)
    if len(candles) <= needed:
        raise DataValidationError(
            f"feature set {fs.name!r} on {base.name} needs at least {needed + 1} bars "
            f"({needed} of warm-up), got {len(candles)}",
            source=str(candles.attrs.get("symbol") or "candles"),
            rule="too_few_bars",
        )
    key = None
    if cache is not None:
        key = cache.key(data_hash(candles, base), fs)
        hit = cache.get(key)
        if hit is not None:
            logger.debug("features {} v{}: cache hit {}", fs.name, fs.version, key)
            return _apply_policy(hit, needed, warmup, fs)
    started = time.perf_counter()
    frame = _compute(candles, base, planned, fs.columns(base))
    logger.info(
        "features {} v{}: {} columns × {:,} bars in {:.2f}s ({} warm-up bars)",
        fs.name,
        fs.version,
        frame.shape[1],
        len(frame),
        time.perf_counter() - started,
        needed,
    )
    if cache is not None and key is not None:
        cache.put(key, frame)
    return _apply_policy(frame, needed, warmup, fs)


def _apply_policy(
    frame: pd.DataFrame, needed: int, warmup: WarmupPolicy, fs: FeatureSet
) -> pd.DataFrame:
    result = frame.iloc[needed:] if warmup == "drop" else frame
    result.attrs.update(
        {"feature_set": fs.name, "feature_set_version": fs.version, "warmup_bars": needed}
    )
    return result


def _compute(
    candles: pd.DataFrame, base: Timeframe, planned: list[PlannedFeature], names: list[str]
) -> pd.DataFrame:
    index = candle_index(candles)
    # One preallocated column-major block: every feature writes straight into its columns and
    # the frame wraps the block without another copy.
    block = np.empty((len(index), len(names)), order="F")
    offsets = np.cumsum([0, *(len(f.indicator.outputs) for f in planned)])
    bars = Bars.from_candles(candles)
    higher: dict[Timeframe, tuple[Bars, np.ndarray]] = {}
    for feature, start in zip(planned, offsets[:-1], strict=True):
        width = len(feature.indicator.outputs)
        target = block[:, start : start + width]
        if feature.timeframe is None:
            if feature.relative is None:
                feature.indicator.run_into(bars, feature.params, target)
            else:
                for column, values in enumerate(feature.run(bars)):
                    target[:, column] = values
            continue
        if feature.timeframe not in higher:
            resampled = resample_candles(candles, base, feature.timeframe).candles
            positions = closed_bar_positions(
                index, base, candle_index(resampled), feature.timeframe
            )
            higher[feature.timeframe] = (Bars.from_candles(resampled), positions)
        higher_bars, positions = higher[feature.timeframe]
        for column, values in enumerate(feature.run(higher_bars)):
            target[:, column] = take_or_nan(values, positions)
    return pd.DataFrame(block, index=index, columns=names, copy=False)


def closed_bar_positions(
    base_index: pd.DatetimeIndex, base: Timeframe, higher_index: pd.DatetimeIndex, higher: Timeframe
) -> np.ndarray:
    """For each base bar, the position of the last higher bar CLOSED by the base bar's close.

    A higher bar starting at T closes at T + its length; a base bar starting at t closes at
    t + its length. -1 where no higher bar has closed yet.
    """
    base_close = base_index.as_unit("ns").asi8 + base.nanoseconds
    higher_close = higher_index.as_unit("ns").asi8 + higher.nanoseconds
    return np.searchsorted(higher_close, base_close, side="right") - 1


def take_or_nan(values: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """``values[positions]`` with NaN where the position is -1."""
    out: np.ndarray = values[np.maximum(positions, 0)]
    out[positions < 0] = np.nan
    return out


def last_bar_features(
    candles: pd.DataFrame, feature_set: FeatureSet | str, *, validated: bool = False
) -> pd.DataFrame:
    """The features of the last candle, computed from at most the set's warm-up + 1 candles.

    This is the one function the server, the WebSocket stream, signals and the pipeline's
    pyfunc use for "the features of the last bar". Past its declared warm-up every feature is
    start-invariant, so these values equal those computed over the full history (within the
    declared tolerance): what the model was validated on. Each feature reads only the tail it
    needs (its own warm-up + 1 bars; a higher-timeframe feature the base bars of its own
    warm-up in higher bars), numpy end to end.

    Parameters
    ----------
    candles : pandas.DataFrame
        A Candles frame, oldest first; only its last ``warmup + 1`` rows are read.
    feature_set : FeatureSet or str
        The set (or preset name) to compute.
    validated : bool
        The caller has already checked the candles against the Candles contract (a store
        validates on write, the API on parsing): skip the check here.

    Returns
    -------
    pandas.DataFrame
        One row, indexed by the last candle's timestamp, with the set's columns in order.

    Raises
    ------
    DataValidationError
        Fewer candles than ``warmup + 1`` (``rule="too_few_bars"``, the message says how many
        are needed), or candles that break the contract.

    Examples
    --------
    >>> from trademl.data.sources.files import read_candle_file
    >>> candles = read_candle_file("../shared/data/crypto/BTCUSDT_1h.csv")  # doctest: +SKIP
    >>> last_bar_features(candles, "minimal").index[0] == candles.index[-1]  # doctest: +SKIP
    True
    """
    fs = load_feature_set(feature_set)
    base = infer_timeframe(candles)
    planned, tails, names = _last_bar_plan(fs, base)
    needed = max(tails)
    if len(candles) < needed:
        raise DataValidationError(
            f"feature set {fs.name!r} on {base.name} needs at least {needed} candles "
            f"({needed - 1} of warm-up + the bar predicted), got {len(candles)}",
            source=str(candles.attrs.get("symbol") or "candles"),
            rule="too_few_bars",
        )
    window = candles.iloc[-needed:]
    if not validated:
        validate_candles(window)
    bars = Bars.from_candles(window)
    row = np.empty(len(names))
    offsets = np.cumsum([0, *(len(f.indicator.outputs) for f in planned)])
    higher: dict[Timeframe, Bars] = {}
    for feature, tail, start in zip(planned, tails, offsets[:-1], strict=True):
        if feature.timeframe is None:
            outputs = feature.run(bars.tail(tail))
        else:
            if feature.timeframe not in higher:
                higher[feature.timeframe] = _closed_higher_bars(bars, base, feature.timeframe)
            closed = higher[feature.timeframe]
            width = len(feature.indicator.outputs)
            outputs = feature.run(closed) if len(closed) else [np.array([np.nan])] * width
        row[start : start + len(outputs)] = [values[-1] for values in outputs]
    row[np.isinf(row)] = np.nan
    return pd.DataFrame(row[None, :], index=window.index[-1:], columns=names, copy=False)


_PLANS: dict[tuple[str, int, str, str], tuple[list[PlannedFeature], list[int], list[str]]] = {}


def _last_bar_plan(
    fs: FeatureSet, base: Timeframe
) -> tuple[list[PlannedFeature], list[int], list[str]]:
    """The resolved plan, each feature's tail length and the columns, memoised per set."""
    key = (fs.name, fs.version, fs.fingerprint(), base.name)
    found = _PLANS.get(key)
    if found is None:
        planned = plan(fs, base)
        found = (planned, [p.warmup_base_bars(base) + 1 for p in planned], fs.columns(base))
        _PLANS[key] = found
    return found


def _closed_higher_bars(bars: Bars, base: Timeframe, higher: Timeframe) -> Bars:
    """The higher-timeframe bars of ``bars`` that had closed by the last base bar's close.

    The same aggregation as :func:`~trademl.data.resample.resample_candles` (first open, max
    high, min low, last close, summed volume, on UTC boundaries), in numpy on the tail alone.
    """
    ns = bars.index.as_unit("ns").asi8
    bins = higher.floor_ns(ns)
    starts = np.flatnonzero(np.r_[True, bins[1:] != bins[:-1]])
    ends = np.r_[starts[1:], len(bins)] - 1
    closed = bins[starts] + higher.nanoseconds <= ns[-1] + base.nanoseconds
    starts, ends = starts[closed], ends[closed]
    if not len(starts):
        empty = np.empty(0)
        return Bars(empty, empty, empty, empty, empty, pd.DatetimeIndex([], tz="UTC"))
    # The unfinished last period (if any) is cut off before reducing: reduceat's last segment
    # runs to the end of the array.
    stop = int(ends[-1]) + 1
    return Bars(
        open=bars.open[starts],
        high=np.maximum.reduceat(bars.high[:stop], starts),
        low=np.minimum.reduceat(bars.low[:stop], starts),
        close=bars.close[ends],
        volume=np.add.reduceat(bars.volume[:stop], starts),
        index=pd.DatetimeIndex(bins[starts].astype("datetime64[ns]")).tz_localize("UTC"),
    )
