"""Draw the concept pages' figures from trademl's own code and the shared market data.

Run from the repository root after changing what a figure shows:

    .venv/bin/python docs/figures/make_figures.py

The PNGs are committed, so building the site needs neither the data nor this script's time.
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from trademl.data.sources.files import read_candle_file
from trademl.features.indicators import Bars, get_indicator
from trademl.models.uncertainty import conformal_quantile
from trademl.testing import perturb_after
from trademl.validation.coverage import rolling_coverage
from trademl.validation.overfitting import (
    deflated_sharpe_ratio,
    expected_max_sharpe,
    probability_of_backtest_overfitting,
)
from trademl.validation.significance import diebold_mariano
from trademl.validation.splitters import PurgedKFold, WalkForward

HERE = Path(__file__).resolve().parent
DATA = Path(os.environ.get("TRADEML_TEST_DATA", "../shared/data"))


def btc_hourly() -> pd.DataFrame:
    """BTCUSDT 1h candles of the shared data."""
    return read_candle_file(DATA / "crypto" / "BTCUSDT_1h.csv")


def causality(candles: pd.DataFrame) -> None:
    """RSI 14 (causal) and a centred mean (leaky) before and after the bars past t change."""
    window = candles.iloc[-1_000:]
    cut = 900
    changed = perturb_after(window, cut, np.random.default_rng(0), scale=0.05)
    rsi = get_indicator("rsi")

    def rsi_of(frame: pd.DataFrame) -> np.ndarray:
        params = rsi.resolve({"timeperiod": 14})
        return next(iter(rsi.run(Bars.from_candles(frame), params).values()))

    def centred(frame: pd.DataFrame) -> np.ndarray:
        return frame["close"].rolling(25, center=True).mean().to_numpy()

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4), sharex=True)
    rows = np.arange(len(window))
    for axis, title, compute in (
        (axes[0], "RSI 14: causal", rsi_of),
        (axes[1], "centred 25-bar mean: peeks ahead", centred),
    ):
        before, after = compute(window), compute(changed)
        axis.plot(rows, before, label="original bars", lw=1.4)
        axis.plot(rows, after, label="bars after t perturbed", lw=1.0, ls="--")
        shown = np.concatenate([before[cut - 60 : cut + 40], after[cut - 60 : cut + 40]])
        margin = 0.05 * (np.nanmax(shown) - np.nanmin(shown))
        axis.set_ylim(np.nanmin(shown) - margin, np.nanmax(shown) + margin)
        axis.axvline(cut, color="k", lw=0.8)
        axis.text(cut + 2, axis.get_ylim()[1], " t", va="top")
        axis.set_xlim(cut - 60, cut + 40)
        axis.set_title(title)
        axis.set_xlabel("bar")
    axes[0].legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(HERE / "causality.png", dpi=110)
    plt.close(fig)


def purging() -> None:
    """Rows of each fold: train, purged, embargoed, test."""
    n_rows, horizon = 120, 6
    splitters = (
        (
            "WalkForward(test_size=20, n_splits=4, horizon_bars=6, min_train_size=30)",
            WalkForward(test_size=20, n_splits=4, horizon_bars=horizon, min_train_size=30),
        ),
        (
            "PurgedKFold(n_splits=5, horizon_bars=6, embargo_bars=4)",
            PurgedKFold(n_splits=5, horizon_bars=horizon, embargo_bars=4),
        ),
    )
    colours = {"train": "#4c72b0", "test": "#dd8452", "dropped": "#d0d0d0"}
    fig, axes = plt.subplots(2, 1, figsize=(10, 4.4))
    for axis, (title, splitter) in zip(axes, splitters, strict=True):
        for fold, (train, test) in enumerate(splitter.split(n_rows)):
            state = np.full(n_rows, "unused", dtype=object)
            state[train] = "train"
            state[test] = "test"
            if isinstance(splitter, WalkForward):
                # Walk-forward rows before the test block that do not train were purged.
                dropped = np.arange(train[-1] + 1, test[0])
            else:
                dropped = np.setdiff1d(np.arange(n_rows), np.concatenate([train, test]))
            state[dropped] = "dropped"
            for row, kind in enumerate(state):
                if kind in colours:
                    axis.barh(fold, 1, left=row, color=colours[kind], height=0.7)
        axis.set_title(title, fontsize=10)
        axis.set_ylabel("fold")
        axis.invert_yaxis()
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in colours.values()]
    axes[0].legend(handles, ["train", "test", "purged / embargoed"], loc="lower left", fontsize=8)
    axes[1].set_xlabel("row (bar)")
    fig.tight_layout()
    fig.savefig(HERE / "purging.png", dpi=110)
    plt.close(fig)


def conformal(candles: pd.DataFrame) -> None:
    """Rolling coverage of plain and volatility-normalised split-conformal 90% intervals."""
    horizon, alpha = 6, 0.1
    close, high = candles["close"], candles["high"]
    future_high = high[::-1].rolling(horizon).max()[::-1].shift(-1)
    target = np.log(future_high / close).to_numpy()
    returns = np.log(close).diff()
    sigma = returns.rolling(24 * 7).std().to_numpy() * np.sqrt(horizon)
    forecast = pd.Series(target).shift(horizon).rolling(24 * 30).mean().to_numpy()
    keep = np.isfinite(target) & np.isfinite(sigma) & np.isfinite(forecast)
    target, sigma, forecast = target[keep], sigma[keep], forecast[keep]
    # Walk-forward: each 1,000-row block is calibrated on the 4,000 rows before it, less the
    # horizon (their labels would overlap the block's).
    block, history = 1_000, 4_000
    plain = np.full(len(target), np.nan)
    scaled = np.full(len(target), np.nan)
    errors = np.abs(target - forecast)
    for start in range(history + horizon, len(target), block):
        calibration = slice(start - horizon - history, start - horizon)
        rows = slice(start, start + block)
        plain[rows] = conformal_quantile(errors[calibration], alpha)
        scaled[rows] = conformal_quantile((errors / sigma)[calibration], alpha) * sigma[rows]
    test = np.isfinite(plain)
    window = 500
    fig, axis = plt.subplots(figsize=(10, 3.4))
    for label, half_width in (
        ("plain scores |y - ŷ|", plain),
        ("normalised scores |y - ŷ| / σ̂", scaled),
    ):
        lo, hi = forecast - half_width, forecast + half_width
        axis.plot(rolling_coverage(target[test], lo[test], hi[test], window), label=label, lw=1)
    axis.axhline(1 - alpha, color="k", lw=0.8, ls="--", label="nominal 90%")
    axis.set_ylim(0.5, 1.02)
    axis.set_title("BTCUSDT 1h, max high over 6 bars: coverage over rolling 500-bar windows")
    axis.set_xlabel("test row")
    axis.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(HERE / "conformal.png", dpi=110)
    plt.close(fig)


def gate() -> None:
    """False-alarm rate of a comparison that ignores overlapping labels, and of the DM test."""
    rng = np.random.default_rng(0)
    horizon, rows, runs = 24, 2_000, 300
    naive, hac = [], []
    for _ in range(runs):
        # Two equally good forecasts whose loss difference is a moving sum over h bars, as
        # the losses of overlapping labels are.
        shocks = rng.normal(size=rows + horizon)
        difference = np.convolve(shocks, np.ones(horizon) / horizon, mode="valid")[:rows]
        zeros = np.zeros(rows)
        naive.append(diebold_mariano(difference, zeros, 1, lag=0).p_value)
        hac.append(diebold_mariano(difference, zeros, horizon).p_value)
    fig, axis = plt.subplots(figsize=(7, 3.4))
    levels = np.linspace(0.0, 0.2, 41)
    axis.plot(levels, [np.mean(np.array(naive) < a) for a in levels], label="lag ignored (h = 1)")
    axis.plot(
        levels,
        [np.mean(np.array(hac) < a) for a in levels],
        label=f"Newey-West, lag ≥ h = {horizon}",
    )
    axis.plot(levels, levels, color="k", lw=0.8, ls="--", label="nominal")
    axis.set_xlabel("test level")
    axis.set_ylabel("share of equal pairs called 'better'")
    axis.set_title("Two equally good forecasts, labels overlapping over 24 bars")
    axis.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(HERE / "gate.png", dpi=110)
    plt.close(fig)


def overfitting() -> None:
    """The Sharpe ratio that luck alone reaches, and PBO of pure-noise strategies."""
    rng = np.random.default_rng(0)
    trials = np.arange(1, 201)
    variance = 0.02**2
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    axes[0].plot(
        trials, [expected_max_sharpe(int(n), variance) for n in trials], label="E[max SR] of noise"
    )
    observed = 0.05
    axes[0].plot(
        trials,
        [deflated_sharpe_ratio(observed, 2_000, int(n), variance) for n in trials],
        label=f"DSR of an observed SR {observed} (2,000 bars)",
    )
    axes[0].set_xlabel("configurations tried")
    axes[0].set_title("Deflated Sharpe ratio")
    axes[0].legend(fontsize=8)
    noise = rng.normal(0, 0.01, size=(2_000, 50))
    edge = noise.copy()
    edge[:, :5] += 0.002  # five configurations with a real, persistent edge
    for returns, label in ((noise, "50 noise strategies"), (edge, "5 of 50 with a real edge")):
        result = probability_of_backtest_overfitting(returns, n_partitions=16)
        axes[1].hist(result.logits, bins=30, alpha=0.6, label=f"{label}: PBO {result.pbo:.2f}")
    axes[1].axvline(0, color="k", lw=0.8)
    axes[1].set_title("Probability of backtest overfitting")
    axes[1].set_xlabel("logit of the in-sample best's out-of-sample rank")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(HERE / "overfitting.png", dpi=110)
    plt.close(fig)


def main() -> None:
    """Draw every figure."""
    candles = btc_hourly()
    causality(candles)
    purging()
    conformal(candles)
    gate()
    overfitting()


if __name__ == "__main__":
    main()
