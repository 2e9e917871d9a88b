"""Alarms on synthetic controls: the CUSUM's false-alarm rate stays at its calibrated ARL0 on
autocorrelated in-control streams, a one-standard-deviation shift fires within a bounded delay,
the coverage monitor separates nominal from degraded intervals, and bad input is named."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal, stats

from trademl.errors import ConfigError
from trademl.monitoring.alarms import (
    Calibration,
    CoverageMonitor,
    Cusum,
    calibrate_threshold,
    censored_arl,
    cusum_path,
)

# Overlapping labels make consecutive losses strongly dependent: AR(1) with phi = 0.6 has a
# long-run variance four times its marginal variance.
PHI = 0.6


def ar1(n_streams: int, length: int, seed: int, phi: float = PHI) -> np.ndarray:
    """AR(1) streams with unit marginal standard deviation, started in their stationary law."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(size=(n_streams, length)) * np.sqrt(1 - phi**2)
    noise[:, 0] = rng.normal(size=n_streams)
    return signal.lfilter([1.0], [1.0, -phi], noise, axis=1)


def measured_arl(calibration: Calibration, streams: np.ndarray) -> tuple[float, float, float]:
    """The censored ARL over in-control ``streams`` and its exact exponential 95 % interval."""
    z = (streams - calibration.mean) / calibration.scale
    above = cusum_path(z, calibration.k) > calibration.h
    cap = streams.shape[1]
    lengths = np.where(above.any(axis=1), np.argmax(above, axis=1) + 1, cap + 1)
    alarms = int(np.count_nonzero(lengths <= cap))
    exposure = float(np.minimum(lengths, cap).sum())
    low = 2 * exposure / stats.chi2.ppf(0.975, 2 * alarms)
    high = 2 * exposure / stats.chi2.ppf(0.025, 2 * alarms)
    return censored_arl(lengths, cap), low, high


def test_cusum_path_matches_the_recursion_and_run_matches_update() -> None:
    xs = np.random.default_rng(3).normal(0.3, 2.0, size=500)
    looped = Cusum(k=0.4, h=6.0, mean=0.1, scale=2.0)
    alarms = [looped.update(x) for x in xs]
    batch = Cusum(k=0.4, h=6.0, mean=0.1, scale=2.0)
    path = batch.path(xs)
    first = batch.run(xs)
    statistic = 0.0
    for x, s in zip(xs, path, strict=True):
        statistic = max(0.0, statistic + (x - 0.1) / 2.0 - 0.4)
        assert s == pytest.approx(statistic, abs=1e-9)
    assert first == (alarms.index(True) if any(alarms) else None)
    assert batch.statistic == pytest.approx(looped.statistic)
    assert batch.n_seen == looped.n_seen == 500
    # A second batch continues from where the first left off.
    more = np.full(5, -10.0)
    assert batch.path(more)[0] == pytest.approx(max(0.0, looped.statistic - 5.05 - 0.4))
    batch.reset()
    assert batch.statistic == 0.0
    assert batch.run([]) is None


def test_false_alarm_rate_on_autocorrelated_streams_matches_the_calibrated_arl0() -> None:
    arl0 = 500
    reference = ar1(1, 5000, seed=11)[0]
    calibration = calibrate_threshold(reference, arl0=arl0, k=0.5, n_paths=400, seed=0)
    assert calibration.arl0_estimate == pytest.approx(arl0, rel=0.2)
    assert calibration.censored < 0.1
    arl, low, high = measured_arl(calibration, ar1(1000, 4 * arl0, seed=12))
    message = (
        f"measured ARL0 {arl:.0f} bars (95% interval {low:.0f}-{high:.0f}) over 1000 stationary "
        f"AR(1) streams, configured {arl0}, h={calibration.h:.3f}, block={calibration.block}"
    )
    # The calibration sees one finite reference: its mean and scale are estimates, and the
    # bootstrap loses some dependence at block edges. Over six references of 5000 bars the
    # measured ARL0 ranged 0.6-1.2 x arl0 (each +-7 % over 1000 streams): [0.5, 2] x arl0 is the
    # honest promise.
    assert arl0 / 2 <= arl <= arl0 * 2, message


def test_an_iid_calibration_would_cry_wolf_on_autocorrelated_losses() -> None:
    # Why the block bootstrap: blocks of one treat the losses as independent and give a
    # threshold that fires several times as often as configured.
    arl0 = 500
    reference = ar1(1, 5000, seed=11)[0]
    naive = calibrate_threshold(reference, arl0=arl0, block=1, n_paths=200, seed=0)
    blocked = calibrate_threshold(reference, arl0=arl0, n_paths=200, seed=0)
    assert naive.h < blocked.h
    arl, _, high = measured_arl(naive, ar1(300, 4 * arl0, seed=12))
    assert high < arl0 / 2, f"naive ARL0 {arl:.0f} bars, configured {arl0}"


def test_a_one_standard_deviation_shift_fires_within_100_bars() -> None:
    reference = ar1(1, 5000, seed=21)[0]
    calibration = calibrate_threshold(reference, arl0=2000, n_paths=200, seed=0)
    change = 1000
    streams = ar1(50, 1500, seed=22)
    streams[:, change:] += 1.0
    delays = []
    for stream in streams:
        # As in service: a false alarm before the change is acted upon and the detector reset.
        detector = calibration.detector()
        start = 0
        while (first := detector.run(stream[start:])) is not None and start + first < change:
            detector.reset()
            start += first + 1
        delays.append(len(stream) if first is None else start + first - change)
    detected = sum(d < 100 for d in delays)
    assert detected >= 45, (
        f"{detected}/50 streams alarmed within 100 bars of the shift; "
        f"median delay {np.median(delays):.0f}, h={calibration.h:.2f}"
    )


def test_coverage_monitor_is_quiet_at_nominal_coverage_and_fires_at_70_percent() -> None:
    rng = np.random.default_rng(5)
    nominal = CoverageMonitor(alpha_nominal=0.1, window=200, level=0.001)
    alarms = [nominal.update(bool(c)) for c in rng.random(20_000) < 0.9]
    share = np.mean(alarms[199:])
    assert share < 0.01, f"{share:.4f} of checks alarmed at nominal coverage"
    assert nominal.miscoverage == pytest.approx(0.1, abs=0.05)
    assert nominal.p_value() > 0.001 or alarms[-1]

    degraded = CoverageMonitor(alpha_nominal=0.1, window=200, level=0.001)
    fired = [degraded.update(bool(c)) for c in rng.random(1000) < 0.7]
    assert not any(fired[:199])  # no verdict before the window is full
    assert fired.index(True) == 199
    assert np.mean(fired[199:]) > 0.95
    assert degraded.p_value() < 0.001


def test_coverage_monitor_critical_count_is_the_binomial_tail() -> None:
    monitor = CoverageMonitor(alpha_nominal=0.1, window=100, level=0.01)
    tail = stats.binom.sf(np.arange(101) - 1, 100, 0.1)
    assert tail[monitor.critical] <= 0.01 < tail[monitor.critical - 1]
    assert np.isnan(monitor.miscoverage) and np.isnan(monitor.p_value())


def test_calibration_is_seeded_monotone_in_arl0_and_caps_long_paths() -> None:
    reference = ar1(1, 3000, seed=31)[0]
    first = calibrate_threshold(reference, arl0=300, n_paths=100, seed=4)
    assert first == calibrate_threshold(reference, arl0=300, n_paths=100, seed=4)
    assert first.detector().h == first.h and first.detector().scale == first.scale
    longer = calibrate_threshold(reference, arl0=3000, n_paths=100, seed=4)
    assert longer.h > first.h
    huge = calibrate_threshold(reference, arl0=50_000, n_paths=20, seed=4)
    assert huge.path_length == 20_000 and huge.h > longer.h
    assert 0 < huge.censored <= 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"arl0": 1}, r"arl0 must be > 1 .*got 1"),
        ({"arl0": 0.5}, r"arl0 must be > 1"),
        ({"arl0": float("nan")}, r"arl0 must be finite"),
        ({"k": -0.1}, r"k must be >= 0"),
        ({"block": 0}, r"block must be an integer >= 1"),
        ({"n_paths": 5}, r"n_paths must be an integer >= 10, got 5"),
    ],
)
def test_calibration_refuses_bad_parameters(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        calibrate_threshold(np.zeros(1000) + np.arange(1000) % 7, **kwargs)


def test_calibration_refuses_bad_references() -> None:
    with pytest.raises(ConfigError, match="reference is empty"):
        calibrate_threshold(np.array([]))
    with pytest.raises(ConfigError, match=r"reference holds 2 non-finite values .* of 500"):
        calibrate_threshold(np.r_[np.arange(498.0), np.nan, np.inf])
    with pytest.raises(ConfigError, match=r"reference has 150 differentials; .* at least 200"):
        calibrate_threshold(np.arange(150.0))
    with pytest.raises(ConfigError, match=r"reference has 300 differentials; .* at least 720 "):
        calibrate_threshold(np.arange(300.0), horizon=24)
    with pytest.raises(ConfigError, match="reference is constant"):
        calibrate_threshold(np.ones(500))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"k": -1.0}, "k must be >= 0"),
        ({"h": 0.0}, "h must be > 0"),
        ({"scale": 0.0}, "scale must be > 0"),
        ({"mean": float("inf")}, "mean must be finite"),
    ],
)
def test_cusum_refuses_bad_parameters(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        Cusum(**kwargs)


def test_cusum_refuses_non_finite_differentials() -> None:
    with pytest.raises(ConfigError, match="must be finite, got nan at 2"):
        Cusum().run([0.0, 1.0, np.nan])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"alpha_nominal": 0.0}, r"alpha_nominal must be in \(0, 1\)"),
        ({"level": 1.0}, r"level must be in \(0, 1\)"),
        ({"window": 5}, "window must be an integer >= 10"),
    ],
)
def test_coverage_monitor_refuses_bad_parameters(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        CoverageMonitor(**kwargs)


def test_coverage_monitor_counts_overlapping_labels_as_fewer_independent_ones() -> None:
    """Labels 24 bars ahead overlap: at nominal coverage their misses come in runs. Counted
    as independent they alarm far more often than the level; deflated by the overlap they
    do not."""
    bars, n = 24, 60_000
    rng = np.random.default_rng(3)
    shocks = rng.standard_normal(n + bars)
    y = np.convolve(shocks, np.ones(bars), mode="valid")[:n]  # N(0, bars), overlapping
    covered = np.abs(y) <= 1.6448536 * np.sqrt(bars)  # exact 90 % intervals
    naive = CoverageMonitor(0.1, window=500, level=0.001)
    deflated = CoverageMonitor(0.1, window=500, level=0.001, overlap=bars)
    naive_share = np.mean([naive.update(bool(c)) for c in covered])
    deflated_share = np.mean([deflated.update(bool(c)) for c in covered])
    print(f"alarmed checks: independent {naive_share:.4f}, deflated {deflated_share:.4f}")
    assert naive_share > 0.02  # twenty times the level
    assert deflated_share < 0.005
    assert deflated.critical > naive.critical
