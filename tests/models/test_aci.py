"""Volatility-normalised conformal intervals and adaptive conformal inference (ACI) along a
walk-forward path: width follows the scale, the path is causal, ACI recovers coverage after a
volatility jump."""

from __future__ import annotations

from functools import partial

import numpy as np
import pandas as pd
import pytest

from trademl.errors import ConfigError
from trademl.models.aci import AdaptiveConformal
from trademl.models.naive import NaiveModel
from trademl.models.uncertainty import SplitConformalRegressor, conformal_quantile
from trademl.validation.runner import evaluate
from trademl.validation.splitters import make_splitter


def covered(y: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    return (lower <= y) & (y <= upper)


def volatile(n: int, seed: int) -> tuple[pd.DataFrame, pd.Series]:
    """y = sigma_t * noise, sigma_t known at t (column vol) and spanning a factor of 8."""
    rng = np.random.default_rng(seed)
    vol = np.exp(rng.uniform(np.log(0.5), np.log(4.0), n))
    X = pd.DataFrame({"vol": vol, "f": rng.normal(size=n)})
    return X, pd.Series(vol * rng.normal(size=n))


def test_normalised_width_scales_with_the_volatility_and_covers_every_regime() -> None:
    X, y = volatile(6000, 0)
    zero = NaiveModel(strategy="zero")
    normalised = SplitConformalRegressor(zero, scale_features=["vol"]).fit(X[:4000], y[:4000])
    plain = SplitConformalRegressor(zero).fit(X[:4000], y[:4000])
    X_new, y_new = X[4000:], y[4000:].to_numpy()
    lower, upper = normalised.predict_interval(X_new, 0.1)
    width = upper - lower
    vol = X_new["vol"].to_numpy()
    # width = 2 q sigma: proportional to the scale column, row by row.
    np.testing.assert_allclose(width / vol, width[0] / vol[0], rtol=1e-12)
    assert np.isclose(width[0] / vol[0], 2 * conformal_quantile(normalised.scores_, 0.1))
    calm, turbulent = vol < 1.0, vol > 2.0
    hits = covered(y_new, lower, upper)
    assert abs(hits[calm].mean() - 0.9) < 0.05 and abs(hits[turbulent].mean() - 0.9) < 0.05
    # Plain conformal has one width: it over-covers calm rows and under-covers turbulent ones.
    plain_hits = covered(y_new, *plain.predict_interval(X_new, 0.1))
    assert plain_hits[calm].mean() > 0.97 and plain_hits[turbulent].mean() < 0.8


def test_normalised_conformal_refuses_a_missing_or_empty_scale() -> None:
    X, y = volatile(500, 1)
    with pytest.raises(ConfigError, match=r"scale_features names column.*'sigma'"):
        SplitConformalRegressor(NaiveModel(strategy="zero"), scale_features=["sigma"]).fit(X, y)
    with pytest.raises(ConfigError, match="scale_features must be a non-empty list"):
        SplitConformalRegressor(NaiveModel(strategy="zero"), scale_features="vol").fit(X, y)  # type: ignore[arg-type]
    X["vol"] = np.nan
    with pytest.raises(ConfigError, match="no finite positive value"):
        SplitConformalRegressor(NaiveModel(strategy="zero"), scale_features=["vol"]).fit(X, y)


def test_normalised_conformal_fills_and_floors_the_scale() -> None:
    X, y = volatile(2000, 2)
    model = SplitConformalRegressor(NaiveModel(strategy="zero"), scale_features=["vol"]).fit(X, y)
    odd = pd.DataFrame({"vol": [np.nan, 0.0, 1e-9, 2.0], "f": 0.0})
    scale = model.scale(odd)
    assert scale[0] == model.scale_fill_  # unknown: the calibration median
    assert scale[1] == scale[0]  # zero is not a volatility: filled too
    assert scale[2] == model.scale_floor_ == 0.1 * model.scale_fill_
    assert scale[3] == 2.0
    assert model.clone().scale_features == ["vol"]


def jump_series(seed: int) -> tuple[pd.DataFrame, pd.Series]:
    """2,000 calm rows, 1,000 calm test rows, then volatility up by half for 3,000 rows."""
    rng = np.random.default_rng(seed)
    sigma = np.r_[np.ones(3000), np.full(3000, 1.5)]
    return pd.DataFrame({"f": rng.normal(size=6000)}), pd.Series(sigma * rng.normal(size=6000))


def run_path(
    X: pd.DataFrame, y: pd.Series, horizon: int, adaptive: bool, test_size: int = 4000
) -> pd.DataFrame:
    splitter = make_splitter(
        "walk_forward", {"test_size": test_size, "min_train_size": 1000}, horizon
    )
    evaluation = evaluate(
        {"zero": partial(SplitConformalRegressor, NaiveModel(strategy="zero"), gap=horizon)},
        {"zero": X},
        y,
        splitter.split(X, y),
        task="regression",
        alpha=0.1,
        adaptive=partial(AdaptiveConformal, 0.1, 0.01, horizon=horizon) if adaptive else None,
    )
    frame = evaluation.predictions
    frame.attrs["final"] = evaluation.adaptive_alpha
    return frame


def test_aci_recovers_coverage_after_a_volatility_jump_where_static_conformal_does_not() -> None:
    X, y = jump_series(3)
    static, adaptive = run_path(X, y, 6, False), run_path(X, y, 6, True)
    late = slice(2500, None)  # test rows 2,500 on: 1,500 rows after the jump
    for frame in (static, adaptive):
        frame["hit"] = covered(
            frame["target"].to_numpy(), frame["zero__lo"].to_numpy(), frame["zero__hi"].to_numpy()
        )
    assert static["hit"].iloc[late].mean() < 0.8
    assert abs(adaptive["hit"].iloc[late].mean() - 0.9) < 0.03
    # Misses lowered the level (wider intervals) after the jump.
    assert adaptive["zero__alpha"].iloc[late].mean() < 0.05
    assert adaptive.attrs["final"]["zero"] < 0.1


def test_aci_is_causal_labels_not_yet_matured_do_not_move_the_interval() -> None:
    horizon = 6
    X, y = jump_series(4)
    reference = run_path(X, y, horizon, True, test_size=1000)
    # Row t of the last test block: labels of rows t - horizon + 1 ... (not matured at t) change.
    t = len(y) - 400
    changed = y.copy()
    changed.iloc[t - horizon + 1 :] *= 10.0
    perturbed = run_path(X, changed, horizon, True, test_size=1000)
    at = reference.index.get_loc(X.index[t])
    for column in ("zero__lo", "zero__hi", "zero__alpha"):
        np.testing.assert_array_equal(
            perturbed[column].to_numpy()[: at + 1], reference[column].to_numpy()[: at + 1]
        )
    # The same change one row earlier reaches row t: its label had matured by then.
    earlier = y.copy()
    earlier.iloc[t - horizon :] *= 10.0
    moved = run_path(X, earlier, horizon, True, test_size=1000)
    assert moved["zero__alpha"].to_numpy()[at] != reference["zero__alpha"].to_numpy()[at]


def test_adaptive_level_update_clip_and_finish() -> None:
    path = AdaptiveConformal(alpha=0.1, rate=0.02, horizon=2)
    calibration = np.arange(1.0, 1000.0)
    q = path.step(calibration, np.full(5, 1e9), np.arange(5))  # every row a miss
    # Rows 0 and 1 see no matured miss; row t then sees the misses of rows up to t - 2.
    assert path.levels_[:3] == [0.1, 0.1, pytest.approx(0.082)]
    assert q[0] == conformal_quantile(calibration, 0.1) and q[2] > q[0]
    assert path.finish() == pytest.approx(0.1 - 5 * 0.018)
    for _ in range(20):
        path.step(calibration, np.full(10, 1e9), np.arange(10) + path._last_position + 1)  # type: ignore[operator]
    assert path.finish() == path.lower == pytest.approx(0.01)
    hits = AdaptiveConformal(alpha=0.1, rate=0.1, horizon=1)
    hits.step(calibration, np.zeros(50), np.arange(50))
    assert hits.finish() == hits.upper == pytest.approx(0.3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"alpha": 0.0}, "alpha must lie in"),
        ({"alpha": 0.1, "rate": 1.5}, "rate must lie in"),
        ({"alpha": 0.1, "horizon": 0}, "horizon must be an integer"),
        ({"alpha": 0.1, "lower": 0.2}, "lower <= alpha <= upper"),
    ],
)
def test_adaptive_conformal_bad_parameters(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        AdaptiveConformal(**kwargs)


def test_adaptive_path_refuses_positions_that_go_back() -> None:
    path = AdaptiveConformal(alpha=0.1)
    path.step(np.arange(10.0), np.zeros(3), np.array([5, 6, 7]))
    with pytest.raises(ConfigError, match="positions must increase"):
        path.step(np.arange(10.0), np.zeros(2), np.array([7, 8]))
