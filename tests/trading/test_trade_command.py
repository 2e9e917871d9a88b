"""``trademl trade`` on a real champion (a few seconds of training) and the paper broker, over
bars arriving in the store; ``trademl trade-stop``; bad arguments."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest
from tests.conftest import Outcome, cli_runner
from tests.support.training import SHORT_RUN_GATE, SMALL_LGBM, tiny_run_config

from trademl.api import train
from trademl.config import Settings, _cached_settings, reload_settings
from trademl.data.ingest import open_default_store
from trademl.data.sources.files import read_candle_file
from trademl.trading.journal import TradeJournal
from trademl.trading.parity import champion_parity

MODEL = "trade_cli_test"
TRAINED_UNTIL = "2023-04-30 23:00"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> tuple[Path, pd.DataFrame]:
    """A home with a champion trained up to TRAINED_UNTIL and the bars up to then stored."""
    home = tmp_path_factory.mktemp("trade_cli")
    settings = Settings(home=home, mlflow_timeout_s=5)
    candles = read_candle_file(data_dir / "crypto" / "BTCUSDT_1h.csv")
    with open_default_store(settings) as store:
        store.write(candles.loc["2022-12-15":TRAINED_UNTIL], "BTCUSDT", "1h")
    run = tiny_run_config(home / "runs" / "champion", SMALL_LGBM, name=MODEL, gate=SHORT_RUN_GATE)
    train(run, settings=settings)
    return home, candles


@pytest.fixture
def cli(
    trained: tuple[Path, pd.DataFrame],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Callable[..., Outcome]]:
    monkeypatch.setenv("TRADEML_HOME", str(trained[0]))
    monkeypatch.delenv("TRADEML_STORE_URL", raising=False)
    monkeypatch.setenv("TRADEML_MLFLOW_TIMEOUT_S", "5")
    reload_settings()
    yield cli_runner(capsys)
    _cached_settings.cache_clear()


def _store(home: Path, bars: pd.DataFrame) -> None:
    with open_default_store(Settings(home=home)) as store:
        store.write(bars, "BTCUSDT", "1h")


def test_trade_follows_new_bars_and_stops_on_the_switch(
    cli: Callable[..., Outcome], trained: tuple[Path, pd.DataFrame]
) -> None:
    home, candles = trained
    args = ("trade", MODEL, "--broker", "paper", "--symbol", "BTCUSDT", "--once")
    first = cli(*args)
    assert first.code == 0, first.stderr
    assert "1 bar(s) handled" in first.stdout
    later = candles.loc["2023-05-01":"2023-05-02 23:00"]
    _store(home, later)
    second = cli(*args, "--timeframe", "1h")
    assert second.code == 0, second.stderr
    assert f"{len(later)} bar(s) handled" in second.stdout
    journal = TradeJournal(f"sqlite:///{home / 'trading' / 'journal.sqlite'}")
    (record,) = journal.loops()
    assert record.last_bar == later.index[-1]
    assert record.model == f"{MODEL}@champion" and record.broker == "paper"

    assert cli("trade-stop", "--reason", "drill").stdout.strip() == "kill switch engaged"
    _store(home, candles.loc["2023-05-03":"2023-05-03 01:00"])
    stopped = cli(*args)
    assert stopped.code == 0 and "stopped by the kill switch" in stopped.stdout
    assert journal.switch() == (True, "drill")
    assert [e for e in journal.events(record.name) if e["kind"] == "kill"]
    assert cli("trade-stop", "--release").stdout.strip() == "kill switch released"
    # With no loop running, --flatten cancels and closes at the venue itself.
    flattened = cli("trade-stop", "--flatten", "--reason", "no loop running")
    assert flattened.code == 0 and "cancelled 0 order(s)" in flattened.stdout
    assert journal.switch() == (True, "no loop running")
    assert cli("trade-stop", "--release").code == 0
    journal.close()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--broker", "kraken"), "expected paper, dex or ccxt"),
        (("--broker", "paper", "--timeframe", "4h"), "predicts 1h bars, not 4h"),
        (("--broker", "paper", "--risk-per-trade", "2"), "risk per trade must lie in"),
        (("--broker", "paper", "--horizon", "forever"), "horizon 'forever' is not predicted"),
    ],
)
def test_bad_arguments_are_named(
    cli: Callable[..., Outcome], extra: tuple[str, ...], message: str
) -> None:
    outcome = cli("trade", MODEL, "--symbol", "BTCUSDT", "--once", *extra)
    assert outcome.code != 0
    assert message in outcome.stderr
    assert "Traceback" not in outcome.stderr


def test_an_unknown_model_is_named(cli: Callable[..., Outcome]) -> None:
    outcome = cli("trade", "no_such_model", "--broker", "paper", "--symbol", "BTCUSDT", "--once")
    assert outcome.code != 0 and "no_such_model" in outcome.stderr


def test_the_champions_predictions_replay_into_the_backtests_trades(
    trained: tuple[Path, pd.DataFrame],
) -> None:
    """The demo's stage on this champion: its own predictions, live loop = backtest."""
    home, candles = trained
    settings = Settings(home=home, mlflow_timeout_s=5)
    report = champion_parity(settings, MODEL, 1, candles.loc[:"2023-06-30 23:00"], bars=600)
    assert report.bars == 600
    assert report.trades > 0 and report.identical, report.mismatches
    assert "live = backtest: 600 bars" in str(report) and "identical" in str(report)
