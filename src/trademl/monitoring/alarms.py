"""Performance alarms with a controlled false-alarm rate.

A served model is watched through the per-prediction loss differential
``d_t`` comparing the model's loss with its baseline's on the same bars (positive: the model
did worse; :func:`trademl.monitoring.profile.differentials` uses the scale-free
``(L_m - L_b) / (L_m + L_b)``). :class:`Cusum` is a one-sided CUSUM on the standardised differential: it
accumulates ``z_t - k`` (``z_t = (d_t - mean) / scale``), floors the sum at zero, and alarms when
the sum exceeds ``h``. The same detector watches a signal's R multiples once negated (a falling
R is a rising loss).

The threshold comes from :func:`calibrate_threshold`: the model's own validated out-of-sample
differentials are autocorrelated (labels ``h`` bars ahead overlap), so a threshold from the
i.i.d. normal tables would fire far too often. Stationary paths are simulated by circular block
bootstrap of that reference, the CUSUM is run over them, and ``h`` is bisected until the
average run length without change (ARL0) is the configured number of bars.

Each simulated path is capped at ``4 * arl0`` bars. A path that reaches the cap without an
alarm is censored: its run length is only known to be at least the cap. ARL0 is estimated as
the censored exponential maximum likelihood ``sum(min(T_i, cap)) / alarms``: the run length of
a CUSUM with a threshold well above its drift is close to geometric, for which this estimate is
exact; with a cap of four ARLs about 2 % of paths are censored, so the assumption matters little.
The cap is at most 20,000 bars, which bounds memory and time for very large ARL0s (there the
estimate leans more on the exponential assumption).

:class:`CoverageMonitor` watches prediction intervals: over the last ``window`` mature labels,
it alarms when the number of misses is improbably high for the nominal miscoverage (a one-sided
binomial test at a per-check ``level``).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import special

from trademl.errors import ConfigError
from trademl.validation.bootstrap import block_length

FloatArray = npt.NDArray[np.float64]

# Fewest reference differentials a calibration accepts, and fewest blocks: below these the
# bootstrap paths repeat a handful of values and the threshold says little.
MIN_REFERENCE = 200
MIN_BLOCKS = 10
# Simulated path length in units of ARL0 (see the module docstring on censoring).
PATH_LENGTH_ARLS = 4
MAX_PATH_LENGTH = 20_000
# Paths simulated at once: bounds the bootstrap's intermediate arrays to some 30 MB.
_PATH_CHUNK = 25
# Bisection steps on h: the interval shrinks 2**-60, below any float spacing that matters.
_BISECTION_STEPS = 60


def _finite(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(float(value)):
        raise ConfigError(f"{name} must be finite, got {value!r}")
    return float(value)


def cusum_path(z: npt.ArrayLike, k: float, start: float = 0.0) -> FloatArray:
    """The one-sided CUSUM statistic ``S_t = max(0, S_{t-1} + z_t - k)`` along the last axis.

    Vectorised by the Lindley identity: with ``C_t`` the cumulative sum of ``z - k``,
    ``S_t = C_t - min(-start, C_1, ..., C_t)``.

    Parameters
    ----------
    z : array_like
        Standardised observations; a 2-D array holds one stream per row.
    k : float
        Drift allowance subtracted from every observation.
    start : float
        The statistic before the first observation (``S_0``), at least 0.

    Returns
    -------
    numpy.ndarray
        ``S_1 ... S_n``, the shape of ``z``.

    Examples
    --------
    >>> cusum_path([1.0, 1.0, -3.0, 2.0], k=0.5).tolist()
    [0.5, 1.0, 0.0, 1.5]
    """
    values = np.asarray(z, dtype=np.float64)
    cumulative = np.cumsum(values - k, axis=-1)
    floor = np.minimum(np.minimum.accumulate(cumulative, axis=-1), -start)
    return np.asarray(cumulative - floor, dtype=np.float64)


class Cusum:
    """One-sided CUSUM on standardised loss differentials: alarms when losses drift up.

    Parameters
    ----------
    k : float
        Drift allowance in reference standard deviations (0.5 targets a shift of about one
        standard deviation).
    h : float
        Alarm threshold on the statistic (from :func:`calibrate_threshold`).
    mean : float
        Reference mean of the differential (the in-control level).
    scale : float
        Reference standard deviation of the differential, > 0.

    Attributes
    ----------
    statistic : float
        The current CUSUM statistic; stays above ``h`` after an alarm until :meth:`reset`.
    n_seen : int
        Observations fed so far.

    Examples
    --------
    >>> detector = Cusum(k=0.5, h=2.0, mean=0.0, scale=1.0)
    >>> [detector.update(x) for x in (0.0, 1.5, 2.0, 1.5)]
    [False, False, True, True]
    >>> Cusum(k=0.5, h=2.0).run([0.0, 1.5, 2.0, 1.5])
    2
    """

    def __init__(self, k: float = 0.5, h: float = 5.0, mean: float = 0.0, scale: float = 1.0):
        self.k = _finite("k", k)
        self.h = _finite("h", h)
        self.mean = _finite("mean", mean)
        self.scale = _finite("scale", scale)
        if self.k < 0:
            raise ConfigError(f"k must be >= 0 (reference standard deviations), got {k!r}")
        if self.h <= 0:
            raise ConfigError(f"h must be > 0, got {h!r}")
        if self.scale <= 0:
            raise ConfigError(f"scale must be > 0, got {scale!r}")
        self.statistic = 0.0
        self.n_seen = 0

    def __repr__(self) -> str:
        return f"Cusum(k={self.k!r}, h={self.h!r}, mean={self.mean!r}, scale={self.scale!r})"

    def _standardise(self, values: FloatArray) -> FloatArray:
        if not np.all(np.isfinite(values)):
            bad = int(np.flatnonzero(~np.isfinite(values))[0])
            raise ConfigError(
                f"loss differentials must be finite, got {float(values[bad])!r} at {bad}"
            )
        return (values - self.mean) / self.scale

    def update(self, x: float) -> bool:
        """Feed one differential; ``True`` while the statistic is above ``h``.

        Parameters
        ----------
        x : float
            ``loss_model - loss_baseline`` of one mature prediction.

        Returns
        -------
        bool
            Whether the detector is in alarm after this observation.
        """
        z = float(self._standardise(np.array([x], dtype=np.float64))[0])
        self.statistic = max(0.0, self.statistic + z - self.k)
        self.n_seen += 1
        return self.statistic > self.h

    def path(self, xs: npt.ArrayLike) -> FloatArray:
        """The statistic after each of ``xs``, from the current state (which is left as is).

        Parameters
        ----------
        xs : array_like
            Loss differentials in time order.

        Returns
        -------
        numpy.ndarray
            The CUSUM statistic after each observation, for plotting against ``h``.
        """
        values = np.asarray(xs, dtype=np.float64).ravel()
        return cusum_path(self._standardise(values), self.k, self.statistic)

    def run(self, xs: npt.ArrayLike) -> int | None:
        """Feed ``xs`` at once, as :meth:`update` would one by one.

        Parameters
        ----------
        xs : array_like
            Loss differentials in time order.

        Returns
        -------
        int or None
            The index in ``xs`` of the first observation after which the detector is in alarm,
            or ``None``.
        """
        statistic = self.path(xs)
        if statistic.size:
            self.statistic = float(statistic[-1])
            self.n_seen += int(statistic.size)
        above = np.flatnonzero(statistic > self.h)
        return int(above[0]) if above.size else None

    def reset(self) -> None:
        """Restart from a zero statistic (after an alarm was acted upon)."""
        self.statistic = 0.0


@dataclass(frozen=True)
class Calibration:
    """A CUSUM threshold calibrated to an in-control average run length.

    Attributes
    ----------
    h : float
        The threshold.
    k : float
        The drift allowance it was calibrated for.
    mean, scale : float
        Reference mean and standard deviation that standardise the differentials.
    arl0 : float
        The requested average run length without change, in bars.
    arl0_estimate : float
        The censored estimate of ARL0 at ``h`` over the simulated paths.
    block : int
        Block length of the circular block bootstrap.
    n_paths, path_length : int
        Simulated paths and their length (the censoring cap).
    censored : float
        Share of simulated paths that reached the cap without an alarm.
    n_reference : int
        Reference differentials the paths were drawn from.
    """

    h: float
    k: float
    mean: float
    scale: float
    arl0: float
    arl0_estimate: float
    block: int
    n_paths: int
    path_length: int
    censored: float
    n_reference: int

    def detector(self) -> Cusum:
        """A fresh :class:`Cusum` with this threshold and standardisation."""
        return Cusum(k=self.k, h=self.h, mean=self.mean, scale=self.scale)


def censored_arl(run_lengths: npt.ArrayLike, cap: int) -> float:
    """Average run length from run lengths censored at ``cap`` (exponential MLE).

    Parameters
    ----------
    run_lengths : array_like
        Bars until the first alarm, more than ``cap`` where no alarm came within ``cap`` (censored).
    cap : int
        The censoring length.

    Returns
    -------
    float
        ``sum(min(T, cap)) / #(T <= cap)``; ``inf`` when no run alarmed.

    Examples
    --------
    >>> censored_arl([10, 30, 101], cap=100)
    70.0
    """
    lengths = np.minimum(np.asarray(run_lengths, dtype=np.float64), cap)
    alarms = int(np.count_nonzero(np.asarray(run_lengths) <= cap))
    return float(lengths.sum() / alarms) if alarms else math.inf


def _bootstrap_paths(
    z: FloatArray, n_paths: int, length: int, block: int, rng: np.random.Generator
) -> FloatArray:
    n_blocks = -(-length // block)
    starts = rng.integers(0, z.size, size=(n_paths, n_blocks))
    index = (starts[:, :, None] + np.arange(block)) % z.size
    return np.asarray(z[index.reshape(n_paths, -1)[:, :length]], dtype=np.float64)


def calibrate_threshold(
    reference: npt.ArrayLike,
    *,
    arl0: float = 2000,
    k: float = 0.5,
    block: int | None = None,
    horizon: int = 1,
    n_paths: int = 200,
    seed: int = 0,
) -> Calibration:
    """The CUSUM threshold whose in-control average run length is about ``arl0`` bars.

    Parameters
    ----------
    reference : array_like
        The model's validated out-of-sample loss differentials, in time order (no change
        inside: this is the in-control behaviour).
    arl0 : float
        Wanted bars between false alarms, > 1 (2000: one false alarm per 2,000 bars).
    k : float
        Drift allowance in reference standard deviations.
    block : int, optional
        Bootstrap block length; default :func:`trademl.validation.bootstrap.block_length`
        (``max(3 * horizon, n ** (1/3))``).
    horizon : int
        Label horizon in bars, which sets the default block length.
    n_paths : int
        Simulated in-control paths, each ``4 * arl0`` bars long (at most 20,000).
    seed : int
        Seed of the bootstrap.

    Returns
    -------
    Calibration
        The threshold, the standardisation and the simulation's figures.

    Raises
    ------
    ConfigError
        ``arl0 <= 1``, an empty, non-finite, constant or too short reference, or a bad
        ``k``, ``block`` or ``n_paths``.

    Notes
    -----
    The ARL0 reached on fresh in-control data varies with the reference: its mean, scale and
    upper tail are estimates, and blocks replay only the excursions the reference holds. On
    synthetic losses calibrated to 500 bars, five references of 5,000 bars gave 0.84 to 1.36
    times that on fresh i.i.d. streams and 0.61 to 1.21 times on AR(1) streams
    (``phi = 0.6``); references of 20,000 bars, 0.74 to 1.23 times. Give a reference ten or
    more times ``arl0`` long where possible.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> calibration = calibrate_threshold(rng.normal(size=2000), arl0=200, n_paths=100)
    >>> 2.0 < calibration.h < 6.0, calibration.block
    (True, 13)
    """
    arl0 = _finite("arl0", arl0)
    if arl0 <= 1:
        raise ConfigError(f"arl0 must be > 1 (bars between false alarms), got {arl0!r}")
    k = _finite("k", k)
    if k < 0:
        raise ConfigError(f"k must be >= 0 (reference standard deviations), got {k!r}")
    if isinstance(n_paths, bool) or not isinstance(n_paths, int) or n_paths < 10:
        raise ConfigError(f"n_paths must be an integer >= 10, got {n_paths!r}")
    values = np.asarray(reference, dtype=np.float64).ravel()
    if values.size == 0:
        raise ConfigError("reference is empty: calibration needs the model's out-of-sample losses")
    if not np.all(np.isfinite(values)):
        bad = int(np.count_nonzero(~np.isfinite(values)))
        raise ConfigError(f"reference holds {bad} non-finite values (NaN or inf) of {values.size}")
    n = int(values.size)
    if block is None:
        block = block_length(n, horizon)
    if isinstance(block, bool) or not isinstance(block, int) or block < 1:
        raise ConfigError(f"block must be an integer >= 1 (bars), got {block!r}")
    needed = max(MIN_REFERENCE, MIN_BLOCKS * block)
    if n < needed:
        raise ConfigError(
            f"reference has {n} differentials; calibration needs at least {needed} "
            f"({MIN_REFERENCE} or {MIN_BLOCKS} blocks of {block} bars)"
        )
    scale = float(values.std(ddof=1))
    if not scale > 0:
        raise ConfigError("reference is constant: its differentials have no spread to scale by")
    mean = float(values.mean())

    length = min(math.ceil(PATH_LENGTH_ARLS * arl0), MAX_PATH_LENGTH)
    rng = np.random.default_rng(seed)
    z = (values - mean) / scale
    # The running maximum of each path's statistic: the run length at threshold h is the first
    # bar where it exceeds h, monotone in h, so one simulation serves every bisection step.
    peaks = np.concatenate(
        [
            np.maximum.accumulate(
                cusum_path(
                    _bootstrap_paths(z, min(_PATH_CHUNK, n_paths - i), length, block, rng), k
                ),
                axis=1,
            )
            for i in range(0, n_paths, _PATH_CHUNK)
        ]
    )

    def run_lengths(h: float) -> npt.NDArray[np.int64]:
        above = peaks > h
        first = np.argmax(above, axis=1) + 1
        return np.where(above[:, -1], first, length + 1).astype(np.int64)

    def arl(h: float) -> float:
        return censored_arl(run_lengths(h), length)

    low, high = 0.0, float(peaks[:, -1].max())
    if arl(low) >= arl0:
        high = low
    for _ in range(_BISECTION_STEPS):
        if high - low <= 1e-9 * max(1.0, high):
            break
        middle = 0.5 * (low + high)
        if arl(middle) >= arl0:
            high = middle
        else:
            low = middle
    lengths = run_lengths(high)
    return Calibration(
        h=max(high, 1e-9),
        k=k,
        mean=mean,
        scale=scale,
        arl0=arl0,
        arl0_estimate=censored_arl(lengths, length),
        block=block,
        n_paths=n_paths,
        path_length=length,
        censored=float(np.mean(lengths > length)),
        n_reference=n,
    )


class CoverageMonitor:
    """Rolling interval miscoverage with a one-sided binomial alarm.

    Over the last ``window`` mature labels, the number of misses is tested against
    ``Binomial(window, alpha_nominal)``: the monitor alarms when ``P(X >= misses) <= level``.
    ``level`` is the false-alarm probability of one check with a full window at nominal
    coverage; consecutive checks share all but one label, so alarms come in runs and the share
    of alarmed checks is about ``level`` while separate alarm episodes are rarer.

    Parameters
    ----------
    alpha_nominal : float
        Nominal miscoverage of the intervals (0.1 for 90 % intervals), in (0, 1).
    window : int
        Labels in the rolling window, >= 10.
    level : float
        Per-check significance level, in (0, 1).
    overlap : int
        Bars each label spans (its horizon). Labels ``h`` bars ahead overlap, so misses come
        in runs about ``h`` long; the test counts the window as ``window / overlap``
        independent labels holding ``misses / overlap`` misses (the binomial tail continued to
        fractional counts by the regularised incomplete beta function). Without it a
        72-bar-horizon interval alarms on every run of bad bars.

    Attributes
    ----------
    critical : int
        Fewest misses in a full window that alarm.

    Examples
    --------
    >>> monitor = CoverageMonitor(alpha_nominal=0.1, window=20, level=0.01)
    >>> monitor.critical
    7
    >>> alarms = [monitor.update(i % 2 == 0) for i in range(20)]
    >>> alarms[-1], monitor.miscoverage
    (True, 0.5)
    """

    def __init__(
        self, alpha_nominal: float = 0.1, window: int = 250, level: float = 0.001, overlap: int = 1
    ):
        self.alpha_nominal = _finite("alpha_nominal", alpha_nominal)
        self.level = _finite("level", level)
        if not 0 < self.alpha_nominal < 1:
            raise ConfigError(f"alpha_nominal must be in (0, 1), got {alpha_nominal!r}")
        if not 0 < self.level < 1:
            raise ConfigError(f"level must be in (0, 1), got {level!r}")
        if isinstance(window, bool) or not isinstance(window, int) or window < 10:
            raise ConfigError(f"window must be an integer >= 10 (labels), got {window!r}")
        if isinstance(overlap, bool) or not isinstance(overlap, int) or overlap < 1:
            raise ConfigError(f"overlap must be an integer >= 1 (bars), got {overlap!r}")
        self.window = window
        self.overlap = overlap
        # Smallest c with P(X >= c) <= level, X ~ Binomial(n, p) on n = window / overlap
        # labels: P(X >= c) = I_p(c, n - c + 1), which continues to fractional c and n.
        counts = np.arange(1, window + 1, dtype=np.float64)
        tail = special.betainc(
            counts / overlap, (window - counts) / overlap + 1.0, self.alpha_nominal
        )
        passing = np.flatnonzero(tail <= self.level)
        self.critical = int(counts[passing[0]]) if passing.size else window + 1
        self._recent: deque[bool] = deque(maxlen=window)
        self._misses = 0

    def __repr__(self) -> str:
        return (
            f"CoverageMonitor(alpha_nominal={self.alpha_nominal!r}, window={self.window!r}, "
            f"level={self.level!r}, overlap={self.overlap!r})"
        )

    @property
    def miscoverage(self) -> float:
        """Share of misses in the current window (``nan`` before any label)."""
        return self._misses / len(self._recent) if self._recent else math.nan

    def p_value(self) -> float:
        """One-sided binomial p-value of the current window's misses (``nan`` until full)."""
        if len(self._recent) < self.window:
            return math.nan
        if self._misses == 0:
            return 1.0
        o = self.overlap
        a, b = self._misses / o, (self.window - self._misses) / o + 1.0
        return float(special.betainc(a, b, self.alpha_nominal))

    def update(self, covered: bool) -> bool:
        """Feed one mature label; ``True`` when the full window has too many misses.

        Parameters
        ----------
        covered : bool
            Whether the realised value fell inside the predicted interval.

        Returns
        -------
        bool
            Whether the monitor is in alarm after this label.
        """
        if len(self._recent) == self.window:
            self._misses -= not self._recent[0]
        self._recent.append(bool(covered))
        self._misses += not covered
        return len(self._recent) == self.window and self._misses >= self.critical
