"""Drift diagnosis: calibrated on identical data at any window size, sensitive to a real shift,
clear about bad input, and running on the shared BTCUSDT features."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import trademl
from trademl.errors import DataValidationError
from trademl.monitoring.drift import (
    DriftReport,
    ReferenceStats,
    drift_report,
    reference_stats,
)

ALPHA = 0.05


def _mixed_columns(rng: np.random.Generator, rows: int, columns: int) -> pd.DataFrame:
    # Continuous, heavy-tailed, count and zero-inflated columns: atoms and fat tails are where
    # a quantile sketch goes wrong first.
    data: dict[str, np.ndarray] = {}
    for i in range(columns):
        kind = i % 4
        if kind == 0:
            data[f"normal_{i}"] = rng.normal(size=rows)
        elif kind == 1:
            data[f"student_{i}"] = rng.standard_t(3, size=rows)
        elif kind == 2:
            data[f"poisson_{i}"] = rng.poisson(1.0, size=rows).astype(float)
        else:
            zero = rng.random(rows) < 0.6
            data[f"zero_inflated_{i}"] = np.where(zero, 0.0, rng.exponential(size=rows))
    return pd.DataFrame(data)


def _not_above(flagged: int, trials: int, rate: float) -> bool:
    """The measured share is not significantly above ``rate`` (one-sided binomial, 1 %)."""
    return bool(stats.binomtest(flagged, trials, rate, alternative="greater").pvalue > 0.01)


@pytest.mark.parametrize(
    ("reference_rows", "window_rows", "columns"),
    [(20_000, 100, 120), (200_000, 100_000, 16)],
    ids=["n=100", "n=100000"],
)
def test_identical_data_is_flagged_at_most_alpha_at_any_window_size(
    reference_rows: int, window_rows: int, columns: int
) -> None:
    rng = np.random.default_rng(7)
    reference = reference_stats(_mixed_columns(rng, reference_rows, columns))
    report = drift_report(reference, _mixed_columns(rng, window_rows, columns), alpha=ALPHA)

    table = report.table
    assert len(report) == columns and (table["n"] == window_rows).all()
    # Each column's own test rejects at about alpha, measured with its binomial interval...
    # (Wasserstein alone runs up to ~2x alpha on count columns at 100,000 rows; its share of
    # the column's Bonferroni p-value keeps that within bounds.)
    statistics = ["psi_pvalue", "ks_pvalue", "pvalue"]
    if window_rows < 10_000:
        statistics.append("wasserstein_pvalue")
    for name in statistics:
        flagged = int((table[name] <= ALPHA).sum())
        assert _not_above(flagged, columns, ALPHA), (name, flagged, columns)
    # ...and the Benjamini-Hochberg decision across columns flags (almost) none.
    assert report.drifted_share <= ALPHA
    if window_rows == 100:
        # The point of it: the fixed PSI > 0.1 rule cries wolf several times as often.
        assert (table["psi"] > 0.1).mean() > 3 * ALPHA


def _autoregressive(rng: np.random.Generator, rows: int, columns: int, phi: float) -> pd.DataFrame:
    noise = rng.normal(size=(rows + 200, columns))
    values = np.empty_like(noise)
    values[0] = noise[0]
    for t in range(1, len(noise)):
        values[t] = phi * values[t - 1] + noise[t]
    return pd.DataFrame(values[200:], columns=[f"ar_{i}" for i in range(columns)])


def test_autocorrelated_rows_count_as_fewer_independent_ones() -> None:
    # A month of hourly AR(1) features with phi = 0.9 is worth ~720 / 19 independent rows;
    # counted as 720 they would be flagged on almost every window of unchanged data.
    rng = np.random.default_rng(5)
    columns = 60
    reference = reference_stats(_autoregressive(rng, 20_000, columns, 0.9))
    report = drift_report(reference, _autoregressive(rng, 720, columns, 0.9))

    table = report.table
    assert table["n_effective"].between(10, 200).all()
    assert 20 < table["n_effective"].median() < 80
    assert reference.columns["ar_0"].effective_count < 20_000 / 10
    assert _not_above(int((table["pvalue"] <= ALPHA).sum()), columns, ALPHA)
    assert report.drifted_share <= ALPHA


def test_a_shift_of_a_third_of_a_standard_deviation_is_flagged_alone() -> None:
    rng = np.random.default_rng(13)
    names = [f"feature_{i}" for i in range(20)]
    reference = reference_stats(pd.DataFrame(rng.normal(size=(20_000, 20)), columns=names))
    recent = pd.DataFrame(rng.normal(size=(2_000, 20)), columns=names)
    recent["feature_3"] += 0.3

    report = drift_report(reference, recent)

    assert report.drifted == ["feature_3"]
    top = report.table.iloc[0]
    assert top["column"] == "feature_3" and top["pvalue"] < 1e-6
    assert top["wasserstein"] > 0.15  # a 0.3 sd shift over an IQR of 1.35 sd is about 0.22
    assert (
        (
            (report.table[["psi_pvalue", "ks_pvalue", "wasserstein_pvalue"]] >= 0)
            & (report.table[["psi_pvalue", "ks_pvalue", "wasserstein_pvalue"]] <= 1)
        )
        .all()
        .all()
    )


def test_the_report_is_sorted_by_evidence_and_reproducible() -> None:
    rng = np.random.default_rng(3)
    names = ["a", "b", "c", "d"]
    reference = reference_stats(pd.DataFrame(rng.normal(size=(5_000, 4)), columns=names))
    recent = pd.DataFrame(rng.normal(size=(500, 4)), columns=names)
    recent["c"] *= 1.5

    first = drift_report(reference, recent, random_state=4)
    second = drift_report(reference, recent, random_state=4)

    pd.testing.assert_frame_equal(first.table, second.table)
    assert first.table["pvalue"].is_monotonic_increasing
    assert first.table["column"].iloc[0] == "c"
    assert isinstance(first, DriftReport) and first.to_frame() is not first.table


def test_reference_stats_round_trip_through_json_and_pickle() -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "x": rng.normal(size=1_000),
            "flag": rng.integers(0, 2, size=1_000).astype(bool),
            "gappy": np.where(rng.random(1_000) < 0.1, np.nan, rng.random(1_000)),
        }
    )
    reference = reference_stats(frame, quantiles=50)

    assert reference.columns["gappy"].nan_share == pytest.approx(frame["gappy"].isna().mean())
    assert reference.columns["x"].count == 1_000
    assert reference.columns["x"].minimum == frame["x"].min()
    assert reference.columns["x"].maximum == frame["x"].max()
    # Both atoms of the 0/1 column are kept exactly.
    left, right = reference.columns["flag"].cdf_bounds(np.array([0.0, 1.0]))
    share_false = 1.0 - frame["flag"].mean()
    assert left.tolist() == pytest.approx([0.0, share_false])
    assert right.tolist() == pytest.approx([share_false, 1.0])

    restored = ReferenceStats.from_dict(json.loads(json.dumps(reference.to_dict())))
    assert restored == reference
    assert pickle.loads(pickle.dumps(reference)) == reference


def test_nan_share_of_the_window_is_reported() -> None:
    rng = np.random.default_rng(1)
    reference = reference_stats(pd.DataFrame({"x": rng.normal(size=2_000)}))
    recent = pd.DataFrame({"x": np.where(rng.random(400) < 0.25, np.nan, rng.normal(size=400))})

    row = drift_report(reference, recent).table.iloc[0]

    assert row["nan_share"] == pytest.approx(recent["x"].isna().mean())
    assert row["n"] == recent["x"].notna().sum()
    assert row["reference_nan_share"] == 0.0


def test_bad_input_is_refused_with_the_numbers() -> None:
    rng = np.random.default_rng(2)
    reference = reference_stats(pd.DataFrame({"a": rng.normal(size=500), "b": rng.random(500)}))

    with pytest.raises(DataValidationError, match=r"columns the reference lacks: 'zeta', 'eta'"):
        drift_report(reference, pd.DataFrame({"a": rng.normal(size=100), "zeta": 1.0, "eta": 2.0}))
    with pytest.raises(DataValidationError, match=r"has 12 rows; expected at least 30"):
        drift_report(reference, pd.DataFrame({"a": rng.normal(size=12)}))
    values = np.full(100, np.nan)
    values[:5] = 1.0
    with pytest.raises(DataValidationError, match=r"'a' has 5 finite values; expected at least 30"):
        drift_report(reference, pd.DataFrame({"a": values}))
    with pytest.raises(DataValidationError, match=r"reference statistics have no columns"):
        drift_report(ReferenceStats({}), pd.DataFrame({"a": rng.normal(size=100)}))
    with pytest.raises(DataValidationError, match=r"reference frame has no columns"):
        reference_stats(pd.DataFrame(index=range(100)))
    with pytest.raises(
        DataValidationError, match=r"'name' has dtype \w+; expected a numeric column"
    ):
        reference_stats(pd.DataFrame({"name": ["x"] * 100}))
    with pytest.raises(DataValidationError, match=r"quantiles=7"):
        reference_stats(pd.DataFrame({"a": rng.normal(size=100)}), quantiles=7)
    with pytest.raises(DataValidationError, match=r"alpha=1.5"):
        drift_report(reference, pd.DataFrame({"a": rng.normal(size=100)}), alpha=1.5)


def test_btcusdt_features_of_2023_against_a_2022_reference(data_dir: Path) -> None:
    candles = trademl.read_candles(data_dir / "crypto" / "BTCUSDT_1h.csv")
    features = trademl.build_features(candles, "minimal", drop_warmup=True)
    index = pd.DatetimeIndex(features.index)
    year_2022 = features[index.year == 2022]
    if len(year_2022) < 1_000 or not (index >= pd.Timestamp("2023-03-01", tz=index.tz)).any():
        pytest.skip("the shared BTCUSDT 1h data does not cover 2022 and early 2023")
    reference = reference_stats(year_2022)

    in_sample = drift_report(reference, year_2022[pd.DatetimeIndex(year_2022.index).month == 6])
    month = (index.year == 2023) & (index.month == 2)
    later = drift_report(reference, features[month])

    for report in (in_sample, later):
        assert set(report.table["column"]) == set(features.columns)
        pvalues = report.table[["psi_pvalue", "ks_pvalue", "wasserstein_pvalue", "qvalue"]]
        assert ((pvalues >= 0) & (pvalues <= 1)).all().all()
        assert report.table["n"].min() > 600
        assert (report.table["n_effective"] <= report.table["n"]).all()
