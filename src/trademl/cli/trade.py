"""``trademl trade NAME``: the live loop on a broker; ``trademl trade-stop``: the kill switch."""

from __future__ import annotations

from typing import Annotated

import typer


def trade(
    name: Annotated[str, typer.Argument(help="The registered model whose champion trades.")],
    broker: Annotated[
        str, typer.Option("--broker", help="paper, ccxt:<exchange> (ccxt:binance) or dex.")
    ],
    symbol: Annotated[str, typer.Option("--symbol", help="The market, as stored (BTCUSDT).")],
    timeframe: Annotated[
        str | None, typer.Option("--timeframe", help="The model's timeframe (checked).")
    ] = None,
    horizon: Annotated[
        str | None, typer.Option("--horizon", help="The horizon traded (the model's first).")
    ] = None,
    risk_per_trade: Annotated[
        float | None,
        typer.Option(
            "--risk-per-trade",
            help="Equity fraction lost at a stop (TRADEML_TRADE_RISK_PER_TRADE).",
        ),
    ] = None,
    equity: Annotated[
        float | None, typer.Option("--equity", help="A new loop's starting equity.")
    ] = None,
    alias: Annotated[
        str, typer.Option("--alias", help="Registry alias or version traded.")
    ] = "champion",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Journal the orders it would send; send none.")
    ] = False,
    once: Annotated[
        bool, typer.Option("--once", help="Handle the bars stored now, then stop.")
    ] = False,
) -> None:
    """Trade a model's signals: on every closed bar in the store, the champion's signal (the
    one GET /signals answers), sized by risk, entered with its stop and target; every intent,
    order and fill in the trade journal."""
    from trademl.config import get_settings
    from trademl.trading.live import run_trading

    result = run_trading(
        get_settings(),
        name,
        broker,
        symbol,
        timeframe=timeframe,
        horizon=horizon,
        risk_per_trade=risk_per_trade,
        dry_run=dry_run,
        once=once,
        equity=equity,
        alias=alias,
    )
    typer.echo(
        f"loop {result.loop}: {name} version {result.version}, {result.bars} bar(s) handled, "
        f"{len(result.intents)} intent(s) in the journal"
        + (" - stopped by the kill switch" if result.stopped else "")
    )


def trade_stop(
    reason: Annotated[str, typer.Option("--reason", help="Recorded in the journal.")] = "",
    release: Annotated[
        bool, typer.Option("--release", help="Release the kill switch instead.")
    ] = False,
    flatten: Annotated[
        bool,
        typer.Option(
            "--flatten",
            help="Also cancel and flatten every journalled loop now (loops not running).",
        ),
    ] = False,
) -> None:
    """The kill switch: running loops cancel their orders, flatten and stop; no loop enters
    while it is engaged."""
    from trademl.config import get_settings
    from trademl.trading.live import stop_trading

    done = stop_trading(get_settings(), reason, release=release, flatten_now=flatten)
    if release:
        typer.echo("kill switch released")
        return
    typer.echo("kill switch engaged")
    for item in done:
        typer.echo(f"cancelled {len(item.cancelled)} order(s), sent {len(item.closing)} closing")
