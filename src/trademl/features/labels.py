"""Labels (prediction targets) from candles, each looking forward ``h`` bars.

A label at bar ``t`` uses the bars ``t+1 … t+h`` only, plus ``close_t`` (and, for the triple
barrier, the volatility ``sigma_t`` known at ``t``). With ``c`` the close, ``H`` the high and
``L`` the low:

``forward_return``
    ``log(c[t+h] / c[t])``.
``max_high``
    ``log(max(H[t+1..t+h]) / c[t])``: the best exit a long could have had.
``min_low``
    ``log(min(L[t+1..t+h]) / c[t])``: the worst drawdown a long could have suffered.
``direction``
    ``+1`` if ``forward_return > dead_zone``, ``-1`` if ``< -dead_zone``, else ``0``. The dead
    zone is compared with the log return (for small moves the same as the fractional one).
``triple_barrier``
    Barriers at ``c[t] * exp(±k * sigma_t * sqrt(h))`` with ``k = profit_take`` above and
    ``k = stop_loss`` below, where ``sigma_t`` is the sample standard deviation (``ddof=1``) of
    the one-bar log returns of the ``vol_window`` bars ending at ``t`` (causal). ``+1`` if a
    bar's high reaches the upper barrier (``H >= upper``) before any bar's low reaches the
    lower one (``L <= lower``), ``-1`` if the lower is reached first, ``0`` if neither is within
    ``h`` bars (the time barrier). When one bar reaches both, the label is ``-1``: inside a bar
    the order is unknown, so we assume the stop was hit first (the conservative choice).

The last ``h`` rows cannot see a full window: their labels are NaN and the boolean column
``complete_{h}`` is False there; nothing is filled. The triple barrier is also NaN for the first
``vol_window`` rows, where ``sigma_t`` is undefined. Horizons count rows, so gaps in the data
are not stretched over; labels never look beyond the last row given (pass the data up to a
split point to keep training labels from peeking into the test period).

Specs are declared as data, e.g. in YAML:

.. code-block:: yaml

    labels:
      - {kind: direction, horizon: intraday, dead_zone: 0.001}
      - {kind: triple_barrier, horizon: 24, profit_take: 2, stop_loss: 1}
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from trademl.data.candles import validate_candles
from trademl.errors import ConfigError, DataValidationError
from trademl.features.horizons import check_horizon, resolve_horizon

LabelKind = Literal["direction", "max_high", "min_low", "forward_return", "triple_barrier"]

# Budget (in float64 elements) of the working arrays of one chunk of the windowed computations.
_CHUNK_ELEMENTS = 4_000_000


class LabelSpec(BaseModel):
    """One label: its kind, its horizon and the parameters its kind uses.

    Parameters irrelevant to the kind (``dead_zone`` for ``max_high``...) are ignored.

    Examples
    --------
    >>> LabelSpec(kind="direction", horizon="intraday", dead_zone=0.001).horizon
    'intraday'
    >>> LabelSpec(kind="triple_barrier", horizon="24").horizon
    24
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: LabelKind
    horizon: str | int
    dead_zone: float = Field(default=0.0, ge=0.0, allow_inf_nan=False)
    profit_take: float = Field(default=2.0, gt=0.0, allow_inf_nan=False)
    stop_loss: float = Field(default=2.0, gt=0.0, allow_inf_nan=False)
    vol_window: int = Field(default=20, ge=2)

    @field_validator("horizon", mode="before")
    @classmethod
    def _horizon(cls, value: object) -> str | int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, str | int):
            raise ValueError(f"expected a number of bars or a horizon name, got {value!r}")
        try:
            return check_horizon(value)
        except ConfigError as error:
            raise ValueError(str(error)) from None

    def _key(self, bars: int) -> tuple[object, ...]:
        """What makes two specs produce the same column: the kind, bars and used parameters."""
        if self.kind == "direction":
            return (self.kind, bars, self.dead_zone)
        if self.kind == "triple_barrier":
            return (self.kind, bars, self.profit_take, self.stop_loss, self.vol_window)
        return (self.kind, bars)


def _problems(error: ValidationError, where: str) -> str:
    parts = []
    for item in error.errors():
        loc = ".".join(str(p) for p in item["loc"])
        message = str(item["msg"]).removeprefix("Value error, ")
        parts.append(f"{where}.{loc}: {message}" if loc else f"{where}: {message}")
    return "; ".join(parts)


def parse_label_specs(data: Any) -> list[LabelSpec]:
    """Label specs from data: a spec, a mapping, a list of them, or ``{"labels": [...]}``.

    Raises
    ------
    ConfigError
        Naming the entry and field at fault (``labels[1].horizon: ...``): an unknown kind or
        horizon name, a horizon below one bar, an unknown key, a bad parameter value.

    Examples
    --------
    >>> specs = parse_label_specs({"labels": [{"kind": "max_high", "horizon": 24},
    ...                                       {"kind": "direction", "horizon": "swing"}]})
    >>> [(s.kind, s.horizon) for s in specs]
    [('max_high', 24), ('direction', 'swing')]
    """
    if isinstance(data, LabelSpec):
        return [data]
    if isinstance(data, Mapping):
        if "labels" in data and "kind" not in data:
            if len(data) > 1:
                extra = ", ".join(sorted(str(k) for k in data if k != "labels"))
                raise ConfigError(f"label specs: unknown key(s) {extra} beside 'labels'")
            return parse_label_specs(data["labels"])
        data = [data]
    if isinstance(data, str | bytes) or not isinstance(data, Sequence):
        raise ConfigError(
            "label specs must be a mapping such as {kind: direction, horizon: 24}, a list of "
            f"them, or {{labels: [...]}}; got {type(data).__name__}"
        )
    if not data:
        raise ConfigError("label specs: the list is empty; give at least one label")
    specs = []
    for position, entry in enumerate(data):
        where = f"labels[{position}]"
        if isinstance(entry, LabelSpec):
            specs.append(entry)
            continue
        if not isinstance(entry, Mapping):
            raise ConfigError(
                f"{where}: expected a mapping with kind and horizon, got {type(entry).__name__}"
            )
        try:
            specs.append(LabelSpec.model_validate(dict(entry)))
        except ValidationError as error:
            raise ConfigError(_problems(error, where)) from None
    return specs


def _forward_extreme(values: np.ndarray, h: int, *, highest: bool) -> np.ndarray:
    """``max`` (or ``min``) of ``values[t+1..t+h]`` for ``t`` in ``0 .. n-h-1``."""
    rolling = pd.Series(values).rolling(h)
    extreme = rolling.max() if highest else rolling.min()
    return np.asarray(extreme.to_numpy()[h:], dtype=np.float64)


def _first_at_or_above(values: np.ndarray, thresholds: np.ndarray, h: int) -> np.ndarray:
    """For each ``t < len(thresholds)``, the smallest ``d`` in ``1..h`` with
    ``values[t+d] >= thresholds[t]``, or ``h + 1`` when there is none (or the threshold is NaN).

    ``values`` must hold at least ``len(thresholds) + h`` entries. Each chunk of ``t`` builds a
    sparse table of window maxima over powers of two, then walks it from the largest power
    down, skipping blocks that stay below the threshold: O(n log h) time, bounded memory.
    """
    count = len(thresholds)
    found = np.full(count, h + 1, dtype=np.int64)
    if count == 0:
        return found
    top = h.bit_length() - 1  # largest k with 2**k <= h
    chunk = max(_CHUNK_ELEMENTS // (top + 1) - h, 1024)
    for first in range(0, count, chunk):
        last = min(first + chunk, count)
        segment = values[first + 1 : last + h]  # values[t+1 .. t+h] for every t in the chunk
        levels = [segment]
        for k in range(1, top + 1):
            below, half = levels[-1], 1 << (k - 1)
            levels.append(np.maximum(below[:-half], below[half:]))
        starts = np.arange(last - first)  # where t's window starts in `segment`
        limit = thresholds[first:last]
        skipped = np.zeros(last - first, dtype=np.int64)
        for k in range(top, -1, -1):
            step, table = 1 << k, levels[k]
            fits = skipped + step <= h
            at = np.minimum(starts + skipped, len(table) - 1)
            skipped = np.where(fits & (table[at] < limit), skipped + step, skipped)
        hit = (skipped < h) & ~np.isnan(limit)
        found[first:last] = np.where(hit, skipped + 1, h + 1)
    return found


def _rolling_std(returns: np.ndarray, window: int) -> np.ndarray:
    """Sample std (ddof=1) of each run of ``window`` consecutive ``returns``, computed window
    by window (no running sums, so a value depends on its own window only)."""
    windows = np.lib.stride_tricks.sliding_window_view(returns, window)
    out = np.empty(len(windows), dtype=np.float64)
    chunk = max(_CHUNK_ELEMENTS // window, 1)
    for first in range(0, len(windows), chunk):
        out[first : first + chunk] = np.std(windows[first : first + chunk], axis=1, ddof=1)
    return out


def _label(
    spec: LabelSpec, h: int, high: np.ndarray, low: np.ndarray, close: np.ndarray
) -> np.ndarray:
    """One label column (NaN where the window passes the end)."""
    n = len(close)
    out = np.full(n, np.nan)
    valid = n - h  # rows 0 .. valid-1 have a complete window
    if valid <= 0:
        return out
    base = close[:valid]
    if spec.kind in ("forward_return", "direction"):
        ret = np.log(close[h:] / base)
        if spec.kind == "forward_return":
            out[:valid] = ret
        else:
            out[:valid] = np.where(
                ret > spec.dead_zone, 1.0, np.where(ret < -spec.dead_zone, -1.0, 0.0)
            )
    elif spec.kind == "max_high":
        out[:valid] = np.log(_forward_extreme(high, h, highest=True) / base)
    elif spec.kind == "min_low":
        out[:valid] = np.log(_forward_extreme(low, h, highest=False) / base)
    else:
        sigma = np.full(n, np.nan)
        if n > spec.vol_window:
            sigma[spec.vol_window :] = _rolling_std(np.diff(np.log(close)), spec.vol_window)
        width = sigma[:valid] * math.sqrt(h)
        upper = base * np.exp(spec.profit_take * width)
        lower = base * np.exp(-spec.stop_loss * width)
        up = _first_at_or_above(high, upper, h)
        down = _first_at_or_above(-low, -lower, h)
        label = np.where(up < down, 1.0, np.where(down <= h, -1.0, 0.0))
        out[:valid] = np.where(np.isnan(sigma[:valid]), np.nan, label)
    return out


def build_labels(
    candles: pd.DataFrame,
    spec: LabelSpec | Sequence[LabelSpec | Mapping[str, Any]] | Mapping[str, Any],
    *,
    overrides: Mapping[str, Mapping[str, int]] | None = None,
) -> pd.DataFrame:
    """Compute labels on the candles' index.

    Parameters
    ----------
    candles:
        Candles (validated here); ``attrs["timeframe"]`` resolves named horizons.
    spec:
        One :class:`LabelSpec`, a list of them, or data accepted by :func:`parse_label_specs`.
    overrides:
        Bars per named horizon per timeframe, ``{"1h": {"intraday": 12}}``.

    Returns
    -------
    pandas.DataFrame
        One float64 column per spec, named ``{kind}_{bars}`` (``direction_4``,
        ``triple_barrier_24``...), then one boolean ``complete_{bars}`` per horizon, False
        on the last ``bars`` rows, whose labels are NaN. Repeated identical specs give one
        column.

    Raises
    ------
    ConfigError
        For bad specs, a named horizon on candles without a known timeframe, or two specs
        that would write different labels to one column name.
    DataValidationError
        For candles that break the contract or hold prices that are not positive.

    Examples
    --------
    >>> import numpy as np
    >>> from trademl.data.candles import make_candles
    >>> close = np.array([100.0, 101.0, 99.0, 102.0])
    >>> idx = pd.date_range("2024-01-01", periods=4, freq="1h")
    >>> candles = make_candles(idx, close, close + 1, close - 1, close, np.ones(4), timeframe="1h")
    >>> labels = build_labels(candles, [{"kind": "direction", "horizon": 2},
    ...                                 {"kind": "max_high", "horizon": "scalping"}])
    >>> labels.columns.tolist()
    ['direction_2', 'max_high_1', 'complete_2', 'complete_1']
    >>> labels["direction_2"].tolist()
    [-1.0, 1.0, nan, nan]
    """
    validate_candles(candles)
    specs = parse_label_specs(spec)
    high, low, close = (candles[c].to_numpy(dtype=np.float64) for c in ("high", "low", "close"))
    for name, values in (("high", high), ("low", low), ("close", close)):
        bad = values <= 0
        if bad.any():
            position = int(np.flatnonzero(bad)[0])
            raise DataValidationError(
                f"{name} {values[position]} at {candles.index[position]} is not positive; "
                "labels are log returns and need positive prices",
                row=position + 1,
                rule="non_positive_price",
            )
    timeframe = candles.attrs.get("timeframe")
    columns: dict[str, np.ndarray] = {}
    keys: dict[str, tuple[object, ...]] = {}
    horizons: list[int] = []
    for item in specs:
        bars = resolve_horizon(item.horizon, timeframe, overrides)
        name, key = f"{item.kind}_{bars}", item._key(bars)
        if name in keys:
            if keys[name] != key:
                raise ConfigError(
                    f"two {item.kind} labels with horizon {bars} bars but different parameters "
                    f"would both be named {name!r}; keep one"
                )
            continue
        keys[name] = key
        columns[name] = _label(item, bars, high, low, close)
        if bars not in horizons:
            horizons.append(bars)
    n = len(close)
    frame = pd.DataFrame(columns, index=candles.index)
    for bars in horizons:
        frame[f"complete_{bars}"] = np.arange(n) < n - bars
    frame.attrs.update({k: v for k, v in candles.attrs.items() if k in ("symbol", "timeframe")})
    return frame
