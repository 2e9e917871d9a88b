"""Running a loop against the market store: ``trademl trade`` and ``trademl trade-stop``.

:func:`run_trading` loads the registry's champion, opens the broker and the journal,
reconciles, then polls the store every ``trade_poll_s`` seconds for closed bars. On the paper
broker every new bar is stepped (the venue itself runs on those bars); on a real venue only
the newest one is acted on, its next open taken as its close (a bar missed while the loop was
down is never traded late).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pandas as pd
from loguru import logger

from trademl.config import Settings
from trademl.data.stores import MarketStore, open_store
from trademl.data.stores.duckdb_store import DuckDBStore, duckdb_path
from trademl.data.timeframes import Timeframe
from trademl.errors import ConfigError, NotFoundError
from trademl.tracking.pipeline import load_pipeline
from trademl.trading.broker import Broker
from trademl.trading.brokers import check_spec, open_broker
from trademl.trading.journal import TradeJournal
from trademl.trading.loop import (
    LoopConfig,
    PipelineSignals,
    TradingLoop,
    paper_step,
    venue_step,
)
from trademl.trading.paper import PaperBroker
from trademl.trading.risk import Flattened, RiskLimits, flatten
from trademl.trading.signal import signal_params

_QUOTES = ("USDT", "USDC", "BUSD", "FDUSD", "USD", "EUR")


@dataclass
class TradingRun:
    """What :func:`run_trading` did."""

    loop: str
    model: str
    version: int
    bars: int = 0
    stopped: bool = False
    intents: list[str] = field(default_factory=list)


def _open_store(url: str) -> MarketStore:
    # Read-only for DuckDB: an import may write the file while the loop runs.
    if url.lower().startswith("duckdb"):
        return DuckDBStore(duckdb_path(url), read_only=True)
    return open_store(url)


def _recent_bars(
    settings: Settings, symbol: str, timeframe: str, after: pd.Timestamp | None, window: int
) -> pd.DataFrame:
    """Stored candles from ``window`` bars before ``after`` (the whole series when None)."""
    tf = Timeframe.parse(timeframe)
    start = None if after is None else after - tf.delta * (window * 4 + 16)
    with _open_store(settings.market_store_url) as store:
        candles = store.read(symbol, tf.name, start)
    if candles.empty:
        raise NotFoundError(
            f"no {symbol} {tf.name} candles in the store to trade on; import some "
            "(trademl data import)"
        )
    return candles


def initial_equity(broker: Broker, settings: Settings, given: float | None) -> float:
    """The starting equity of a new loop: ``given``, the paper account's cash, or the venue's
    balance of a common quote asset.

    Raises
    ------
    ConfigError
        None can be told (pass ``--equity``).
    """
    if given is not None:
        if not given > 0:
            raise ConfigError(f"equity must be positive, got {given!r}")
        return float(given)
    if isinstance(broker, PaperBroker):
        return settings.paper_initial_cash
    balances = {b.asset.upper(): b.total for b in broker.balances()}
    for asset in _QUOTES:
        if balances.get(asset, 0.0) > 0:
            return balances[asset]
    raise ConfigError(
        f"no quote balance ({', '.join(_QUOTES)}) at {broker.name} to size trades from; "
        "pass --equity"
    )


def run_trading(
    settings: Settings,
    model: str,
    broker_spec: str,
    symbol: str,
    *,
    timeframe: str | None = None,
    horizon: str | None = None,
    risk_per_trade: float | None = None,
    dry_run: bool = False,
    once: bool = False,
    equity: float | None = None,
    alias: str = "champion",
    max_polls: int | None = None,
) -> TradingRun:
    """Trade the ``alias`` version of the registered ``model`` on ``symbol``.

    Parameters
    ----------
    settings : Settings
        Registry, store, journal, broker and risk settings.
    model : str
        The registered model name.
    broker_spec : str
        ``paper``, ``ccxt:<exchange>`` or ``dex``.
    symbol : str
        The market (one the model predicts).
    timeframe : str, optional
        Must be the model's (its own by default).
    horizon : str, optional
        The horizon traded (the model's first by default).
    risk_per_trade : float, optional
        Equity fraction lost at a stop (``trade_risk_per_trade`` by default).
    dry_run : bool
        Journal the orders it would send; send none.
    once : bool
        Handle the bars stored now, then return.
    equity : float, optional
        A new loop's starting equity (see :func:`initial_equity`).
    alias : str
        The registry alias (or version number) traded.
    max_polls : int, optional
        Stop after this many looks at the store (tests); None polls until stopped.

    Raises
    ------
    ConfigError
        A bad broker spec, symbol, timeframe, horizon or risk.
    ModelNotFoundError
        No such model or alias.
    """
    spec_kind, _ = check_spec(broker_spec)
    risk = settings.trade_risk_per_trade if risk_per_trade is None else risk_per_trade
    if not 0.0 < risk <= 1.0:
        raise ConfigError(f"risk per trade must lie in (0, 1], got {risk!r}")
    pipeline, info = load_pipeline(model, alias, settings)
    pipeline = pipeline.for_symbol(symbol)
    tf = Timeframe.parse(timeframe or pipeline.timeframe).name
    if tf != pipeline.timeframe:
        raise ConfigError(f"model {model!r} predicts {pipeline.timeframe} bars, not {tf}")
    chosen = horizon or next(iter(pipeline.horizons))
    if chosen not in pipeline.horizons:
        raise ConfigError(
            f"horizon {chosen!r} is not predicted by {model!r}; expected one of "
            f"{', '.join(pipeline.horizons)}"
        )
    broker = open_broker(broker_spec, settings)
    journal = TradeJournal.from_settings(settings)
    name = f"{model}-{symbol}-{tf}-{broker_spec}"
    config = LoopConfig(
        name,
        symbol,
        tf,
        f"{model}@{alias}",
        broker_spec,
        risk_per_trade=risk,
        fee_bps=settings.trade_fee_bps,
        slippage_bps=settings.trade_slippage_bps,
        dry_run=dry_run,
        limits=RiskLimits.from_settings(settings),
    )
    signals = PipelineSignals(pipeline, chosen, signal_params())
    loop = TradingLoop(
        broker, journal, signals, config, initial_equity=initial_equity(broker, settings, equity)
    )
    loop.reconcile()
    result = TradingRun(name, model, info.version)
    polls = 0
    try:
        while not loop.stopped:
            result.bars += _new_bars(loop, broker, settings, pipeline.window_bars, spec_kind)
            polls += 1
            if once or (max_polls is not None and polls >= max_polls):
                break
            time.sleep(settings.trade_poll_s)
    finally:
        loop.flush()
        result.stopped = loop.stopped
        result.intents = [i.id for i in journal.intents(name)]
        journal.close()
        if isinstance(broker, PaperBroker):
            broker.close()
    return result


def _new_bars(loop: TradingLoop, broker: Broker, settings: Settings, window: int, kind: str) -> int:
    candles = _recent_bars(
        settings, loop.config.symbol, loop.config.timeframe, loop.last_bar, window
    )
    positions = range(len(candles))
    if loop.last_bar is not None:
        positions = range(
            int(candles.index.searchsorted(loop.last_bar, side="right")), len(candles)
        )
    if not isinstance(broker, PaperBroker) or loop.last_bar is None:
        positions = positions[-1:]  # a real venue acts on the newest bar only
    delta = Timeframe.parse(loop.config.timeframe).delta
    for position in positions:
        history = candles.iloc[max(0, position + 1 - window) : position + 1]
        if isinstance(broker, PaperBroker):
            paper_step(loop, broker, history)
        else:
            venue_step(loop, history, delta)
        logger.info("{} handled bar {} ({})", loop.config.name, history.index[-1], kind)
    return len(positions)


def stop_trading(
    settings: Settings, reason: str = "", *, release: bool = False, flatten_now: bool = False
) -> list[Flattened]:
    """Engage (or ``release``) the kill switch; running loops cancel, flatten and stop at their
    next bar. With ``flatten_now`` every journalled loop's orders are cancelled and its position
    closed here and now (for loops that are not running)."""
    journal = TradeJournal.from_settings(settings)
    try:
        journal.set_switch(not release, reason)
        done: list[Flattened] = []
        if flatten_now and not release:
            stamp = int(time.time())
            for record in journal.loops():
                broker = open_broker(record.broker, settings)
                prefix = f"kill-{stamp:x}-{len(done)}"
                done.append(flatten(broker, journal, record.name, record.symbol, prefix))
                if isinstance(broker, PaperBroker):
                    broker.close()
        return done
    finally:
        journal.close()
