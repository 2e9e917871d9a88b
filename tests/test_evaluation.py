"""``trademl evaluate``: the skill table over many series, its verdicts and its bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trademl.errors import ConfigError
from trademl.evaluation import (
    Series,
    compare_target,
    find_series,
    horizons_for,
    series_config,
    skill_counts,
    verdict,
)


def _wide(rng: np.random.Generator, rows: int, bars: int, learned_noise: float) -> pd.DataFrame:
    """Overlapping h-bar targets; a learned forecast near them, a baseline that knows less."""
    shocks = rng.normal(size=rows + bars)
    signal = np.convolve(shocks, np.ones(bars), mode="valid")[:rows]
    y = signal + rng.normal(size=rows)
    frame = pd.DataFrame(
        {
            f"target__max_high_{bars}": y,
            f"lgbm__max_high_{bars}": signal + learned_noise * rng.normal(size=rows),
            f"naive_volatility__max_high_{bars}": np.zeros(rows),
        },
        index=pd.date_range("2024-01-01", periods=rows, freq="h"),
    )
    frame[f"lgbm__max_high_{bars}__lo"] = frame[f"lgbm__max_high_{bars}"] - 1.645
    frame[f"lgbm__max_high_{bars}__hi"] = frame[f"lgbm__max_high_{bars}"] + 1.645
    return frame


def test_a_model_that_knows_the_signal_wins_and_one_that_does_not_loses() -> None:
    rng = np.random.default_rng(3)
    good = compare_target(_wide(rng, 3000, 6, 0.1), "max_high", 6, ["lgbm"])
    assert len(good) == 1 and good[0]["verdict"] == "wins" and good[0]["p_value"] < 0.001
    assert good[0]["model_r2"] > 0.5 > good[0]["baseline_r2"]
    assert good[0]["model_r2_low"] < good[0]["model_r2"] < good[0]["model_r2_high"]
    assert 0.85 < good[0]["coverage"] < 0.95  # ±1.645 around a forecast with unit noise
    # Pure noise 3x the target's scale as the "learned" forecast: significantly worse.
    bad = compare_target(_wide(rng, 3000, 6, 10.0), "max_high", 6, ["lgbm"])
    assert bad[0]["verdict"] == "loses" and bad[0]["loss_difference"] > 0


def test_the_best_of_several_learned_models_is_compared() -> None:
    rng = np.random.default_rng(4)
    frame = _wide(rng, 2000, 6, 0.1)
    frame["xgb__max_high_6"] = frame["naive_volatility__max_high_6"] + 5.0
    rows = compare_target(frame, "max_high", 6, ["xgb", "lgbm"])
    assert rows[0]["model"] == "lgbm"


def test_verdicts_and_counts() -> None:
    assert verdict(-0.1, 0.01, 0.02) == "wins"
    assert verdict(0.1, 0.99, 0.02) == "loses"
    assert verdict(-0.1, 0.2, 0.4) == "tie"
    table = pd.DataFrame(
        {
            "series": ["A", "B", "C"],
            "target": ["max_high"] * 3,
            "baseline": ["naive_volatility"] * 3,
            "verdict": ["wins", "tie", "loses"],
            "coverage": [0.905, 0.85, 0.89],
        }
    )
    counts = skill_counts(table).iloc[0]
    assert (counts["wins"], counts["ties"], counts["losses"]) == (1, 1, 1)
    assert counts["coverage_within_2pt"] == 2


def test_daily_series_are_judged_at_a_week_and_four_weeks() -> None:
    assert horizons_for("1d") == (5, 20)
    assert horizons_for("1h") == horizons_for("5m") == (6, 24)
    index = pd.date_range("2000-01-01", periods=3000, freq="D")
    cfg = series_config(
        Series(Path("x"), "SPY", "1d"), index, Path("out"), [{"kind": "lgbm"}], 2000
    )
    assert cfg["labels"]["horizons"] == [5, 20]
    assert cfg["data"]["start"] == str(index[-2000])  # the last max_bars bars


def test_series_are_found_by_name_and_bad_names_are_refused(data_dir: Path, tmp_path: Path) -> None:
    found = find_series(data_dir)
    assert len(found) >= 20 and {"BTCUSDT_1h", "SPY_1d", "EURUSD_1h"} <= {s.name for s in found}
    assert [s.name for s in find_series(data_dir, ["SPY_1d"])] == ["SPY_1d"]
    with pytest.raises(ConfigError, match="no series NOPE_1h"):
        find_series(data_dir, ["NOPE_1h"])
    with pytest.raises(ConfigError, match="does not exist"):
        find_series(tmp_path / "missing")
    with pytest.raises(ConfigError, match=r"no SYMBOL_TIMEFRAME\.csv"):
        find_series(tmp_path)


@pytest.mark.slow
def test_evaluate_command_writes_the_table_and_the_page(
    cli, tmp_path: Path, data_dir: Path
) -> None:
    result = cli(
        "evaluate",
        "--data",
        data_dir,
        "--series",
        "EURUSD_1h",
        "--max-bars",
        "2500",
        "--output",
        tmp_path / "skill",
    )
    assert result.code == 0, result.stderr
    table = pd.read_csv(tmp_path / "skill" / "skill.csv")
    # direction vs prior, each range vs mean and volatility, at 6 and 24 bars.
    assert len(table) == 2 * (1 + 2 + 2)
    assert set(table["verdict"]) <= {"wins", "tie", "loses"}
    assert table["p_value"].between(0, 1).all() and (table["rows"] > 100).all()
    page = (tmp_path / "skill" / "skill.html").read_text()
    assert "<table>" in page and "EURUSD_1h" in page
    assert "naive_volatility" in result.stdout
