"""The promotion gate on synthetic out-of-sample records: Diebold–Mariano tests per served
target decide, and the record says why with the numbers."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from trademl.config import GateSection, load_run_config
from trademl.errors import ConfigError
from trademl.tracking.gate import Evidence, evaluate_gate
from trademl.validation.selection import choose_sources

ROWS = 1500
BARS = 6


@pytest.fixture
def truth() -> tuple[pd.DatetimeIndex, np.ndarray]:
    """A min-low target: minus a volatility times a positive shock, hourly rows."""
    rng = np.random.default_rng(0)
    index = pd.date_range("2024-01-01", periods=ROWS, freq="h", tz="UTC", name="timestamp")
    return index, -0.01 * rng.gamma(2.0, size=ROWS)


def record(
    index: pd.DatetimeIndex,
    y: np.ndarray,
    model_noise: float,
    *,
    seed: int,
    label: str = "candidate",
    sources: dict[str, str] | None = None,
    interval: float | None = None,
) -> Evidence:
    """A run's min-low predictions: the model is the truth plus noise of ``model_noise``; the
    baselines are the mean and the truth plus much more noise."""
    rng = np.random.default_rng(seed)
    model = y + rng.normal(scale=model_noise, size=len(y))
    frame = pd.DataFrame(
        {
            f"target__min_low_{BARS}": y,
            f"lgbm__min_low_{BARS}": model,
            f"naive_mean__min_low_{BARS}": np.full(len(y), y.mean()),
            f"naive_volatility__min_low_{BARS}": y + rng.normal(scale=0.008, size=len(y)),
        },
        index=index,
    )
    if interval is not None:
        frame[f"lgbm__min_low_{BARS}__lo"] = model - interval
        frame[f"lgbm__min_low_{BARS}__hi"] = model + interval
    choices = choose_sources(frame, "lgbm", level=0.05, min_rows=1)
    if sources is None:
        sources = {target: choice.source for target, choice in choices.items()}
    return Evidence(frame, "lgbm", {"intraday": BARS}, 0.1, label, sources)


def test_a_model_that_beats_every_baseline_serves_and_passes(truth) -> None:
    index, y = truth
    result = evaluate_gate(record(index, y, 0.002, seed=1), None, GateSection())
    assert result.passed, result.reason
    assert result.sources == {"min_low_6": "lgbm"}
    # The record: per comparison, the loss difference, its interval, the p-value and the rows.
    versus = {c.reference: c.result for c in result.comparisons}
    assert set(versus) == {"naive_mean", "naive_volatility"}
    for numbers in versus.values():
        assert numbers is not None and numbers.rows == ROWS and numbers.lag >= BARS
        assert numbers.high < 0 and numbers.p_value < 0.05
    assert "one-sided p" in result.reason and "1,500 rows" in result.reason


def test_a_model_that_loses_to_a_baseline_is_served_by_it_and_not_promoted(truth) -> None:
    index, y = truth
    losing = record(index, y, 0.012, seed=2)  # noisier than the volatility baseline
    assert losing.served("min_low_6") == "naive_volatility"
    result = evaluate_gate(losing, None, GateSection())
    assert not result.passed
    assert "the baselines serve them all" in result.reason
    # What is served (the baseline) is not worse than any baseline: the only failing clause.
    assert [c.name for c in result.checks if not c.passed] == ["learned"]
    assert any("served by the baseline naive_volatility" in c.detail for c in result.checks)
    # The decision record keeps the numbers that made the baseline serve.
    assert "min_low_6: lgbm vs naive_volatility: mean squared loss difference +" in (
        result.explain()
    )


def test_a_significantly_better_challenger_is_promoted(truth) -> None:
    index, y = truth
    champion = record(index[200:], y[200:], 0.004, seed=3, label="version 1")
    challenger = record(index, y, 0.002, seed=4)
    result = evaluate_gate(challenger, champion, GateSection())
    assert result.passed, result.reason
    versus = next(c for c in result.comparisons if "version 1" in c.reference)
    assert versus.result is not None and versus.result.rows == ROWS - 200
    assert versus.result.p_value < 0.05


def test_a_challenger_not_significantly_better_is_refused(truth) -> None:
    index, y = truth
    champion = record(index, y, 0.003, seed=5, label="version 1")
    # Better than the baselines, and in the point estimate maybe better than the champion,
    # but not by more than the test can tell from noise.
    challenger = record(index, y, 0.00299, seed=6)
    result = evaluate_gate(challenger, champion, GateSection())
    assert not result.passed
    failing = [c.name for c in result.checks if not c.passed]
    assert failing == ["better than champion"], result.reason
    assert "significantly better than the champion (version 1)" in result.reason
    assert "on no gated target" in result.reason


def test_a_challenger_significantly_worse_on_one_target_is_refused(truth) -> None:
    index, y = truth
    champion = record(index, y, 0.002, seed=7, label="version 1")
    challenger = record(index, y, 0.004, seed=8)
    result = evaluate_gate(challenger, champion, GateSection())
    assert not result.passed
    assert "min_low_6 is significantly worse than the champion (version 1)" in result.reason


def test_coverage_of_the_served_intervals_is_checked(truth) -> None:
    index, y = truth
    wide = evaluate_gate(record(index, y, 0.002, seed=9, interval=0.0033), None, GateSection())
    assert wide.passed, wide.reason
    narrow = evaluate_gate(record(index, y, 0.002, seed=9, interval=0.0005), None, GateSection())
    assert not narrow.passed
    assert re.search(
        r"min_low_6 interval coverage of lgbm 0\.1\d\d is outside 0\.05 of nominal 0\.90",
        narrow.reason,
    )


def test_a_margin_asks_for_more_than_zero(truth) -> None:
    index, y = truth
    evidence = record(index, y, 0.002, seed=10)
    assert evaluate_gate(evidence, None, GateSection()).passed
    assert not evaluate_gate(evidence, None, GateSection(margin=1.0)).passed


def test_a_champion_with_too_few_common_rows_refuses(truth) -> None:
    index, y = truth
    champion = record(index[:40], y[:40], 0.003, seed=11, label="version 1")
    result = evaluate_gate(record(index, y, 0.002, seed=12), champion, GateSection(min_rows=50))
    assert not result.passed and "only 40 out-of-sample rows in common" in result.reason


def test_gated_targets_must_be_validated(truth) -> None:
    index, y = truth
    evidence = record(index, y, 0.002, seed=13)
    with pytest.raises(ConfigError, match=r"'min_low@swing', 'direction@6' name no served target"):
        evaluate_gate(evidence, None, GateSection(targets=("min_low@swing", "direction@6")))
    with pytest.raises(ConfigError, match=r"validated: min_low@intraday \(6 bars\)"):
        evaluate_gate(evidence, None, GateSection(targets=("max_high",)))
    # The older target/horizon keys name the one gated target.
    legacy = GateSection(target="min_low", horizon="intraday", metric="r2")
    assert evaluate_gate(evidence, None, legacy).passed
    assert evaluate_gate(evidence, None, GateSection(targets=("min_low@6",))).passed


def test_bad_targets_in_a_run_config_are_named(tmp_path) -> None:
    config = {
        "data": {"symbol": "BTCUSDT", "timeframe": "1h"},
        "models": [{"kind": "lgbm"}],
        "output": str(tmp_path / "run"),
        "registry": {"gate": {"targets": ["min_low@intraday", "close@6", "max_high@"]}},
    }
    with pytest.raises(ConfigError, match=r"targets 'close@6', 'max_high@': expected"):
        load_run_config(config)
    with pytest.raises(ConfigError, match="level"):
        load_run_config({**config, "registry": {"gate": {"level": 1.5}}})


def test_metric_must_be_known_and_fit_the_older_target_key(truth) -> None:
    index, y = truth
    evidence = record(index, y, 0.002, seed=14)
    with pytest.raises(ConfigError, match="does not score target 'direction'"):
        evaluate_gate(evidence, None, GateSection(target="direction", metric="r2"))
    with pytest.raises(ConfigError, match="'sharpe' is not a metric"):
        evaluate_gate(evidence, None, GateSection(metric="sharpe"))
