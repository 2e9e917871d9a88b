"""Named label horizons: how many bars ahead ``scalping``, ``intraday``, ``swing`` and
``position`` look on each timeframe.

A horizon is always a whole number of bars ``h >= 1``; a label at bar ``t`` looks at bars
``t+1 … t+h``. The names are shorthands for typical holding periods:

============  =====================  ======  ======  =======  ======  ======  ======
name          holding period         1m      5m      15m      1h      4h      1d
============  =====================  ======  ======  =======  ======  ======  ======
scalping      minutes to an hour     15      6       4        1       1       1
intraday      hours, within a day    240     72      24       6       2       1
swing         days                   4320    864     288      72      18      5
position      weeks                  28800   5760    1920     480     120     20
============  =====================  ======  ======  =======  ======  ======  ======

That is: scalping 15 min on 1m, 30 min on 5m, one hour on 15m and one bar above; intraday
4 h on 1m, 6 h on 5m/15m/1h, 8 h on 4h and the next bar on 1d; swing three days (a trading
week of five bars on 1d); position twenty days (four trading weeks on 1d).

Any other timeframe derives its horizons from a duration per name (:data:`HORIZON_DURATIONS`:
scalping 30 min, intraday 6 h, swing 3 d, position 20 d) as
``bars = max(1, round(duration / timeframe))``, halves rounded up.

Bars are rows: a gap in the data is not stretched over, so on a series with gaps a horizon of
``h`` bars can span more wall-clock time than ``h`` times the timeframe.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import pandas as pd

from trademl.data.timeframes import Timeframe
from trademl.errors import ConfigError

HORIZON_NAMES: tuple[str, ...] = ("scalping", "intraday", "swing", "position")
"""The named horizons, shortest first."""

HORIZON_DURATIONS: dict[str, pd.Timedelta] = {
    "scalping": pd.Timedelta(minutes=30),
    "intraday": pd.Timedelta(hours=6),
    "swing": pd.Timedelta(days=3),
    "position": pd.Timedelta(days=20),
}
"""Holding period per name, used for timeframes that :data:`DEFAULT_HORIZONS` lacks."""

DEFAULT_HORIZONS: dict[str, dict[str, int]] = {
    "1m": {"scalping": 15, "intraday": 240, "swing": 4320, "position": 28_800},
    "5m": {"scalping": 6, "intraday": 72, "swing": 864, "position": 5760},
    "15m": {"scalping": 4, "intraday": 24, "swing": 288, "position": 1920},
    "1h": {"scalping": 1, "intraday": 6, "swing": 72, "position": 480},
    "4h": {"scalping": 1, "intraday": 2, "swing": 18, "position": 120},
    "1d": {"scalping": 1, "intraday": 1, "swing": 5, "position": 20},
}
"""Bars per named horizon, keyed by canonical timeframe name (see the module docstring)."""


def _names() -> str:
    return ", ".join(HORIZON_NAMES)


def _bars(value: object, where: str) -> int:
    """A bar count from an int (or an all-digit string); ConfigError below 1 or otherwise."""
    if isinstance(value, bool):
        raise ConfigError(f"{where}: expected a number of bars >= 1 or one of {_names()}")
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, int):
        if value < 1:
            raise ConfigError(f"{where}: a horizon must be at least 1 bar, got {value}")
        return value
    raise ConfigError(
        f"{where}: expected a number of bars >= 1 or one of {_names()}, got {value!r}"
    )


def check_horizon(horizon: str | int) -> str | int:
    """Normalise a horizon without a timeframe: a known name (lower case) or a bar count >= 1.

    Raises
    ------
    ConfigError
        For an unknown name (listing the valid ones), a count below 1 or another type.

    Examples
    --------
    >>> check_horizon(" Swing "), check_horizon("24"), check_horizon(3)
    ('swing', 24, 3)
    """
    if isinstance(horizon, str) and not horizon.strip().isdigit():
        name = horizon.strip().lower()
        if name not in HORIZON_NAMES:
            raise ConfigError(
                f"unknown horizon {horizon!r}; expected a number of bars >= 1 or one of {_names()}"
            )
        return name
    return _bars(horizon, "horizon")


def horizon_table(
    timeframe: str | Timeframe,
    overrides: Mapping[str, Mapping[str, int]] | None = None,
) -> dict[str, int]:
    """Bars per named horizon on ``timeframe``: the defaults, then ``overrides`` on top.

    Parameters
    ----------
    timeframe:
        The bar length (``"1h"``, ``"60m"``, a :class:`Timeframe`...).
    overrides:
        ``{timeframe: {name: bars}}``, e.g. ``{"1h": {"intraday": 12}}``; timeframe keys are
        parsed, so ``"60m"`` overrides ``"1h"``.

    Examples
    --------
    >>> horizon_table("1h")
    {'scalping': 1, 'intraday': 6, 'swing': 72, 'position': 480}
    >>> horizon_table("30m")  # not in the table: derived from the durations
    {'scalping': 1, 'intraday': 12, 'swing': 144, 'position': 960}
    >>> horizon_table("1h", {"1h": {"intraday": 12}})["intraday"]
    12
    """
    tf = Timeframe.parse(timeframe)
    table = DEFAULT_HORIZONS.get(tf.name)
    if table is not None:
        bars = dict(table)
    else:
        bars = {
            name: max(1, math.floor(duration.total_seconds() / tf.seconds + 0.5))
            for name, duration in HORIZON_DURATIONS.items()
        }
    for key, values in (overrides or {}).items():
        if Timeframe.parse(key).name != tf.name:
            continue
        if not isinstance(values, Mapping):
            raise ConfigError(
                f"horizon overrides for {key!r} must map names to bars, e.g. {{'intraday': 12}}"
            )
        for name, count in values.items():
            if name not in HORIZON_NAMES:
                raise ConfigError(
                    f"horizon override {key}.{name}: unknown horizon; expected one of {_names()}"
                )
            bars[name] = _bars(count, f"horizon override {key}.{name}")
    return bars


def resolve_horizon(
    horizon: str | int,
    timeframe: str | Timeframe | None,
    overrides: Mapping[str, Mapping[str, int]] | None = None,
) -> int:
    """The number of bars of ``horizon`` on ``timeframe``.

    Parameters
    ----------
    horizon:
        A bar count ``>= 1`` (passed through; all-digit strings count) or a name of
        :data:`HORIZON_NAMES`.
    timeframe:
        The bar length; needed only for a named horizon.
    overrides:
        ``{timeframe: {name: bars}}`` replacing defaults (see :func:`horizon_table`).

    Raises
    ------
    ConfigError
        For an unknown name (the message lists the valid ones), a count below 1, or a named
        horizon without a (valid) timeframe.

    Examples
    --------
    >>> resolve_horizon("intraday", "15m")
    24
    >>> resolve_horizon(10, None)
    10
    >>> resolve_horizon("swing", "2h")
    36
    """
    checked = check_horizon(horizon)
    if isinstance(checked, int):
        return checked
    if timeframe is None:
        raise ConfigError(
            f"horizon {checked!r} is named, so the candles' timeframe is needed to turn it "
            "into bars, but it is unknown; give a number of bars or set attrs['timeframe']"
        )
    return horizon_table(timeframe, overrides)[checked]
