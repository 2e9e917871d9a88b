"""One renderer of a run's out-of-sample summary: the terminal table, summary.md and the model
card show the same cells."""

from __future__ import annotations

import doctest
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tests.support.training import tiny_run_config

import trademl.validation.summary as summary_module
from trademl.config import RunConfig
from trademl.tracking.card import model_card
from trademl.validation.summary import markdown_tables, summary_tables


@pytest.fixture
def summary() -> pd.DataFrame:
    """Two targets at one horizon: a learned model beside its baselines, some values missing."""
    direction = {
        "target": "direction",
        "horizon": "intraday",
        "horizon_bars": 6,
        "accuracy": 0.5312,
        "accuracy_lo": 0.52,
        "accuracy_hi": 0.54,
        "balanced_accuracy": 0.51,
        "log_loss": 0.6911,
        "roc_auc": 0.53,
        "brier": 0.2488,
        "n": 4800.0,
    }
    max_high = {
        "target": "max_high",
        "horizon": "intraday",
        "horizon_bars": 6,
        "r2": -0.0123,
        "r2_lo": -0.03,
        "r2_hi": 0.01,
        "mae": 0.004321,
        "rmse": 0.005,
        "ic": 0.3,
        "rank_ic": 0.28,
        "coverage": 0.9012,
        "coverage_lo": 0.89,
        "coverage_hi": 0.91,
        "coverage_worst_window": 0.8,
        "interval_width": 0.012,
        "n": 4800.0,
    }
    return pd.DataFrame.from_records(
        [
            {**direction, "model": "lgbm"},
            {**direction, "model": "naive_prior", "accuracy_lo": np.nan, "accuracy_hi": np.nan},
            {**max_high, "model": "lgbm", "coverage_mc_dropout": 0.85},
            {**max_high, "model": "naive_volatility", "coverage": np.nan},
        ]
    )


def test_tables_per_target_with_every_metric(summary: pd.DataFrame) -> None:
    direction, max_high = summary_tables(summary)
    assert direction.title == "direction, horizon intraday (6 bars)"
    assert direction.headers[:2] == ("model", "accuracy (95% CI)")
    assert direction.rows[0][:2] == ("lgbm", "0.5312 [0.5200, 0.5400]")
    assert direction.rows[1][:2] == ("naive_prior", "0.5312")  # no bounds: the value alone
    assert direction.rows[0][-1] == "4,800"
    row = dict(zip(max_high.headers, max_high.rows[1], strict=True))
    assert row["R² (95% CI)"] == "-0.0123 [-0.0300, +0.0100]"
    assert row["coverage (95% CI)"] == "-"  # no intervals
    assert row["MC-dropout coverage"] == "-"  # not in the summary for that model
    assert dict(zip(max_high.headers, max_high.rows[0], strict=True))["MC-dropout coverage"] == (
        "0.850"
    )


def test_brief_tables_are_a_subset_of_the_same_cells(summary: pd.DataFrame) -> None:
    for full, brief in zip(
        summary_tables(summary), summary_tables(summary, brief=True), strict=True
    ):
        assert brief.title == full.title
        assert set(brief.headers) < set(full.headers)
        for full_row, brief_row in zip(full.rows, brief.rows, strict=True):
            cells = dict(zip(full.headers, full_row, strict=True))
            assert brief_row == tuple(cells[h] for h in brief.headers)


def test_markdown_and_model_card_render_the_same_tables(
    summary: pd.DataFrame, tmp_path: Path
) -> None:
    lines = markdown_tables(summary, heading="###")
    assert lines[0] == "### direction, horizon intraday (6 bars)"
    assert "| lgbm | 0.5312 [0.5200, 0.5400] | 0.5100 | 0.6911 |" in lines[4]
    cfg = RunConfig.model_validate(tiny_run_config(tmp_path, {"kind": "lgbm"}, name="m", gate={}))
    card = model_card(cfg, summary, {"bars": 100})
    assert "\n".join(lines) in card


def test_docstring_examples() -> None:
    result = doctest.testmod(summary_module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
