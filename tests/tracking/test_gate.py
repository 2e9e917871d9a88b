"""The promotion gate on synthetic out-of-sample records: the numbers decide, and say why."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from trademl.config import GateSection
from trademl.errors import ConfigError
from trademl.tracking.gate import Evidence, evaluate_gate


def record(p_up: np.ndarray, index: pd.DatetimeIndex, y: np.ndarray, label: str) -> Evidence:
    frame = pd.DataFrame(
        {
            "target__direction_6": y,
            "lgbm__direction_6": p_up,
            "naive_prior__direction_6": np.full(len(y), 0.5),
        },
        index=index,
    )
    return Evidence(frame, "lgbm", {"intraday": 6}, 0.1, label)


@pytest.fixture
def window() -> tuple[pd.DatetimeIndex, np.ndarray]:
    rng = np.random.default_rng(0)
    index = pd.date_range("2024-01-01", periods=400, freq="h", tz="UTC", name="timestamp")
    return index, (rng.random(400) > 0.5).astype(float)


def test_beats_baseline_and_champion_on_common_rows(window) -> None:
    index, y = window
    sharp = record(np.where(y == 1, 0.7, 0.3), index, y, "candidate")
    blunt = record(np.where(y == 1, 0.6, 0.4)[100:], index[100:], y[100:], "version 1")
    result = evaluate_gate(sharp, blunt, GateSection(min_rows=100))
    assert result.passed, result.reason
    assert "300 common out-of-sample rows" in result.reason


def test_failing_numbers_are_named(window) -> None:
    index, y = window
    worse = record(np.where(y == 1, 0.4, 0.6), index, y, "candidate")
    result = evaluate_gate(worse, None, GateSection())
    assert not result.passed
    assert result.reason.startswith("log_loss 0.91629 does not beat naive_prior 0.69315")


def test_margin_and_too_small_overlap_refuse(window) -> None:
    index, y = window
    sharp = record(np.where(y == 1, 0.7, 0.3), index, y, "candidate")
    assert not evaluate_gate(sharp, None, GateSection(margin=1.0)).passed
    other = record(np.full(10, 0.5), index[:10], y[:10], "version 1")
    result = evaluate_gate(sharp, other, GateSection(min_rows=50))
    assert not result.passed and "only 10 out-of-sample rows in common" in result.reason


def test_metric_must_fit_the_target(window) -> None:
    index, y = window
    with pytest.raises(ConfigError, match="does not score target 'direction'"):
        evaluate_gate(record(np.full(400, 0.5), index, y, "c"), None, GateSection(metric="r2"))
