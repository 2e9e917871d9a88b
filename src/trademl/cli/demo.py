"""``trademl demo``: the end-to-end job of ``make demo`` on the embedded defaults."""

from __future__ import annotations

import sys

import numpy as np
from rich.console import Console
from rich.table import Table

from trademl.config import get_settings
from trademl.demo import run_demo

console = Console(highlight=False, width=None if sys.stdout.isatty() else 100)


def demo() -> None:
    """Ingest real candles and print their summary (later stages extend this)."""
    settings = get_settings()
    summary = run_demo(settings)
    candles, report = summary.candles, summary.gaps
    console.rule("[bold]trademl demo: data")
    console.print(f"source:  {summary.origin}")
    console.print(f"store:   {summary.store_url}")
    r = summary.imported.report
    console.print(
        f"written: inserted {r.inserted:,}, updated {r.updated:,}, unchanged {r.unchanged:,}"
    )
    table = Table(title="BTCUSDT 1h")
    table.add_column("measure")
    table.add_column("value", justify="right")
    close = candles["close"]
    returns = summary.daily_returns
    rows = [
        ("bars", f"{len(candles):,}"),
        ("first bar (UTC)", f"{candles.index[0]:%Y-%m-%d %H:%M}"),
        ("last bar (UTC)", f"{candles.index[-1]:%Y-%m-%d %H:%M}"),
        (
            "missing bars",
            f"{report.missing_bars:,} in {len(report.gaps)} gaps ({report.coverage:.3%} coverage)",
        ),
        (
            "largest gap",
            f"{report.largest(1)[0].missing_bars} bars from {report.largest(1)[0].start:%Y-%m-%d %H:%M}"
            if report.gaps
            else "-",
        ),
        ("close first → last", f"{close.iloc[0]:,.2f} → {close.iloc[-1]:,.2f}"),
        ("close min / max", f"{close.min():,.2f} / {close.max():,.2f}"),
        ("daily return mean ± sd", f"{returns.mean():+.3%} ± {returns.std():.3%}"),
        ("annualised volatility", f"{returns.std() * np.sqrt(365):.1%}"),
        ("total volume (BTC)", f"{candles['volume'].sum():,.0f}"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
    console.print("next: trademl data list | trademl data show BTCUSDT 1h --format csv | head")
