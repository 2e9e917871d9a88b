"""Backtest benchmark: ``trademl.backtest.engine.run_backtest`` beside vectorbt's
``Portfolio.from_signals`` on the same long-only stop/target rule.

Input: the real BTCUSDT 5-minute bars of ../shared/data, relabelled as consecutive minutes
and tiled (every bar a real bar; only the clock is new). Signals on 2.5% of bars (seeded; ~20,000
trades in case A); each is a long with a stop at close * (1 - 0.2%) and a target at
close * (1 + 0.3%), no time limit; fees 10 bps per side, no slippage.

Case A  one asset, 1,000,000 bars.
Case B  100 assets x 10,000 bars (asset k = bars k*10,000 .. of the tiled data). Both get the
        same wide 10,000 x 100 frames: ours ``run_backtest_panel`` (one validation pass and one
        compiled call over all assets), vectorbt ``from_signals`` on the frames.

Semantics differ slightly: vectorbt gets entries shifted one bar, ``price=open``,
``stop_entry_price="price"`` (stops are % of the entry open, checked from the bar after entry;
ours: levels from the signal close, checked from the entry bar). vectorbt buys a fixed one unit
per trade from unlimited cash (its default, all cash, runs out under fees and skips entries);
ours sizes by 1% risk of equity. Sizing changes no entry or exit, so both take the same trades.

Steady state = best of 3 after a warm-up (inputs built untimed; ours includes validation and
its trades/equity frames). First call = a fresh process, import and first case-A call timed
apart, after the parent ran (numba caches warm).  Run: .venv/bin/python bench/backtest_bench.py
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

DATA = Path(
    os.environ.get(
        "TRADEML_TEST_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
    )
)
OHLCV = ("open", "high", "low", "close", "volume")
STOP, TARGET = 0.002, 0.003
SIGNAL_RATE = 0.025
FEE_BPS = 10.0
SEED = 0
A_BARS = 1_000_000
B_ASSETS, B_BARS = 100, 10_000
Arrays = dict[str, np.ndarray]


def load_bars(n: int) -> Arrays:
    real = pd.read_csv(DATA / "crypto" / "BTCUSDT_5m.csv.gz")
    reps = -(-n // len(real))
    return {c: np.tile(real[c].to_numpy(np.float64), reps)[:n] for c in OHLCV}


def entry_mask(n: int, seed: int) -> np.ndarray:
    mask = np.random.default_rng(seed).random(n) < SIGNAL_RATE
    mask[-1] = False  # no next open to enter at
    return mask


def assets(case: str) -> list[tuple[Arrays, np.ndarray]]:
    """(bars, signal mask) per asset."""
    bars = load_bars(A_BARS)
    if case == "A":
        return [(bars, entry_mask(A_BARS, SEED))]
    return [
        ({c: v[k * B_BARS : (k + 1) * B_BARS] for c, v in bars.items()}, entry_mask(B_BARS, k))
        for k in range(B_ASSETS)
    ]


def index(n: int) -> pd.DatetimeIndex:
    return pd.date_range("2000-01-01", periods=n, freq="1min", tz="UTC")


# -- the two measured paths ----------------------------------------------------------------------


def ours_inputs(data: list[tuple[Arrays, np.ndarray]]) -> Any:
    """Case A: (candles, Signals). Case B: (wide price frames, PanelSignals)."""
    from trademl.backtest.panel import PanelSignals
    from trademl.backtest.signals import Signals
    from trademl.data.candles import make_candles

    if len(data) > 1:
        frames = vbt_inputs(data)
        close = frames["close"].to_numpy()
        mask = np.stack([m for _, m in data], axis=1)
        signals = PanelSignals.from_side(
            mask.astype(np.int8),
            np.where(mask, close * (1 - STOP), np.nan),
            np.where(mask, close * (1 + TARGET), np.nan),
        )
        return ({c: frames[c] for c in ("open", "high", "low", "close")}, signals)
    bars, mask = data[0]
    idx = index(len(mask))
    candles = make_candles(idx, *(bars[c] for c in OHLCV), symbol="BENCH", timeframe="1m")
    close = bars["close"]
    n = len(mask)
    signal = Signals(
        idx,
        mask.astype(np.int8),
        np.where(mask, close * (1 - STOP), np.nan),
        np.where(mask, close * (1 + TARGET), np.nan),
        np.zeros(n, np.int64),
        np.ones(n),
    )
    return (candles, signal)


def ours(inputs: Any) -> Any:
    from trademl.backtest.engine import run_backtest
    from trademl.backtest.panel import PanelSignals, run_backtest_panel

    prices, signals = inputs
    if isinstance(signals, PanelSignals):
        return run_backtest_panel(prices, signals, fee_bps=FEE_BPS, slippage_bps=0.0)
    return run_backtest(prices, signals, fee_bps=FEE_BPS, slippage_bps=0.0)


def vbt_inputs(data: list[tuple[Arrays, np.ndarray]]) -> dict[str, pd.DataFrame]:
    idx = index(len(data[0][1]))
    frames = {c: pd.DataFrame({k: b[c] for k, (b, _) in enumerate(data)}, index=idx) for c in OHLCV}
    # entries shifted one bar: the signal at bar t's close becomes an entry at bar t+1's open
    shifted = np.zeros((len(idx), len(data)), dtype=bool)
    for k, (_, mask) in enumerate(data):
        shifted[1:, k] = mask[:-1]
    frames["entries"] = pd.DataFrame(shifted, index=idx)
    return frames


def vbt(f: dict[str, pd.DataFrame]) -> Any:
    import vectorbt

    return vectorbt.Portfolio.from_signals(
        f["close"],
        f["entries"],
        exits=None,
        price=f["open"],
        open=f["open"],
        high=f["high"],
        low=f["low"],
        sl_stop=STOP,
        tp_stop=TARGET,
        stop_entry_price="price",
        fees=FEE_BPS / 1e4,
        size=1.0,
        size_type="amount",
        init_cash=np.inf,
        freq="1min",
    )


def run(mode: str, inputs: Any) -> Any:
    return ours(inputs) if mode == "ours" else vbt(inputs)


def steady(mode: str, inputs: Any, repeats: int = 3) -> tuple[float, list[float], Any]:
    result = run(mode, inputs)  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = run(mode, inputs)
        times.append(time.perf_counter() - started)
    return min(times), times, result


# -- first call, in a fresh process --------------------------------------------------------------


def child(mode: str) -> dict[str, float]:
    data = assets("A")
    started = time.perf_counter()
    if mode == "ours":
        import trademl.backtest.engine  # noqa: F401
    else:
        import vectorbt  # noqa: F401
    import_s = time.perf_counter() - started
    inputs = ours_inputs(data) if mode == "ours" else vbt_inputs(data)
    started = time.perf_counter()
    run(mode, inputs)
    return {"import_s": import_s, "first_call_s": time.perf_counter() - started}


def fresh(mode: str) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", mode], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{done.stderr.strip()[-2000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def numba_threads() -> int:
    import numba

    return int(numba.get_num_threads())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results/backtest.json"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    if args.child:
        print(json.dumps(child(args.child)))
        return
    cases: dict[str, Any] = {}
    for case in ("A", "B"):
        row: dict[str, Any] = {}
        entries: dict[str, np.ndarray] = {}
        for mode in ("ours", "vectorbt"):
            print(f"case {case}: {mode} ...", file=sys.stderr, flush=True)
            best, times, result = steady(
                mode, (ours_inputs if mode == "ours" else vbt_inputs)(assets(case))
            )
            if mode == "ours":
                trades = len(result.trades)
                equity = result.equity
                asset = result.trades.get("asset", 0)
                pos = equity.index.get_indexer(result.trades["entry_time"])
                entries[mode] = pos - 1 + np.asarray(asset, dtype=np.int64) * 10**7
            else:
                rec = result.trades.records
                trades = len(rec)
                entries[mode] = rec["entry_idx"] - 1 + rec["col"] * 10**7
            row[mode] = {"seconds": best, "runs_s": times, "trades": int(trades)}
        row["vectorbt_over_ours"] = row["vectorbt"]["seconds"] / row["ours"]["seconds"]
        row["common_signal_bars"] = int(np.intersect1d(entries["ours"], entries["vectorbt"]).size)
        cases[case] = row
    first = {mode: fresh(mode) for mode in ("ours", "vectorbt")}
    results: dict[str, Any] = {
        "data": "BTCUSDT 5m (real bars), tiled as consecutive 1-minute bars",
        "case_A": f"1 asset x {A_BARS:,} bars",
        "case_B": f"{B_ASSETS} assets x {B_BARS:,} bars (ours: run_backtest_panel)",
        **{"signal_rate": SIGNAL_RATE, "stop_pct": STOP, "target_pct": TARGET, "fee_bps": FEE_BPS},
        **{"vectorbt": version("vectorbt"), "numba": version("numba")},
        "cpus": len(os.sched_getaffinity(0)),
        "numba_threads": numba_threads(),
        "cases": cases,
        "first_call_fresh_process_case_A": first,
    }
    print(
        f"\nlong-only stop {STOP:.1%} / target {TARGET:.1%}, fees {FEE_BPS:g} bps, signals on "
        f"{SIGNAL_RATE:.1%} of bars; vectorbt {results['vectorbt']}; steady = best of 3 after warm-up"
    )
    print(
        f"{'case':<34}{'ours s':>9}{'vbt s':>9}{'vbt/ours':>10}{'ours tr':>9}{'vbt tr':>9}{'common':>8}"
    )
    for case, label in (("A", results["case_A"]), ("B", results["case_B"][:22])):
        r = cases[case]
        print(
            f"{case + ' ' + label:<34}{r['ours']['seconds']:>9.3f}{r['vectorbt']['seconds']:>9.3f}"
            f"{r['vectorbt_over_ours']:>9.1f}x{r['ours']['trades']:>9,}{r['vectorbt']['trades']:>9,}"
            f"{r['common_signal_bars']:>8,}"
        )
    print("first call, fresh process (case A):")
    for mode, f in first.items():
        print(f"  {mode:<9} import {f['import_s']:.2f} s, first call {f['first_call_s']:.2f} s")
    print(f"numba threads: {results['numba_threads']} (NUMBA_NUM_THREADS=1 for one)")
    print("targets: ours >= 10x faster steady-state, first call < 1 s; semantics: see --help")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
