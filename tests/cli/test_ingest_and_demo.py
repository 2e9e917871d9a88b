"""``trademl data ingest binance`` and the demo's download fallback, end to end against a local
server publishing real BTCUSDT klines in the archive's own format."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from tests.support.binance_archive import Archive
from tests.support.httpserver import local_http_server

from trademl.cli.demo import demo as _demo  # noqa: F401 - the command under test via `cli`
from trademl.config import get_settings, reload_settings
from trademl.data.ingest import open_default_store
from trademl.data.sources.files import read_candle_file

MONTHS = ("2024-01", "2024-02", "2024-03")


@pytest.fixture
def archive(home: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Archive]:
    text = pd.read_csv(data_dir / "crypto" / "BTCUSDT_1h.csv", dtype=str)
    rows = text.set_index(pd.DatetimeIndex(pd.to_datetime(text.pop("timestamp"), utc=True)))
    with local_http_server() as server:
        published = Archive(server, rows)
        for month in MONTHS:
            published.publish("monthly", month)
        monkeypatch.setenv("TRADEML_BINANCE_DATA_URL", server.url)
        monkeypatch.setenv("TRADEML_HTTP_RETRIES", "0")
        reload_settings()
        yield published


def test_ingest_binance_stores_exact_real_bars(cli, archive: Archive, data_dir: Path) -> None:
    args = ("data", "ingest", "binance", "--symbol", "BTC/USDT", "--timeframe", "1h")
    result = cli(*args, "--start", "2024-01-15", "--end", "2024-03-01")
    assert result.code == 0, result.stderr
    assert "inserted 1,104" in result.stdout  # 15 Jan 00:00 to 29 Feb 23:00, no gaps
    with open_default_store(get_settings()) as store:
        stored = store.read("BTC/USDT", "1h")
    real = read_candle_file(data_dir / "crypto" / "BTCUSDT_1h.csv")
    pd.testing.assert_frame_equal(stored, real.loc[stored.index], check_freq=False)
    requests_before = len(archive.archive_requests())
    again = cli(*args, "--start", "2024-01-15", "--end", "2024-03-01")
    assert "inserted 0" in again.stdout
    assert len(archive.archive_requests()) == requests_before  # served from the verified cache


def test_demo_downloads_when_no_shared_file(
    cli, archive: Archive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRADEML_TEST_DATA", str(tmp_path / "no-data-here"))
    result = cli("demo")
    assert result.code == 0, result.stderr
    assert "binance public archives" in result.stdout
    assert "2024-01-01 00:00" in result.stdout
    assert "2024-03-31 23:00" in result.stdout


def test_demo_uses_shared_file(cli, data_dir: Path) -> None:
    result = cli("demo")
    assert result.code == 0, result.stderr
    assert "BTCUSDT_1h.csv" in result.stdout
    assert "60,852" in result.stdout
    assert "128 in 28 gaps" in result.stdout
    # The registered model, replayed bar by bar through the served computation.
    parity = re.search(
        r"^served = validated on (\d+) replayed bars \(max abs diff (\S+)\)$",
        result.stdout,
        re.MULTILINE,
    )
    assert parity is not None, result.stdout
    assert int(parity[1]) == 48 and float(parity[2]) <= 1e-9
    # The run folder's own pipeline (no MLflow) predicts what the registered version predicts.
    text = " ".join(result.stdout.split())
    assert "loaded without MLflow, predicts the last bar exactly as the registered version" in text
    # The demo runs through the quickstart's stages and prints its summary table.
    assert "trademl quickstart: BTCUSDT 1h, 60,852 bars" in text and "deflated_sharpe_grid" in text
    assert "[3/5] training" in result.stderr
    assert "dashboard: http://127.0.0.1:8000/ui" in text
    # The champion's predictions through the live loop on the paper broker: the backtest's trades.
    assert re.search(r"live = backtest: 2000 bars .* \d+ trades compared, identical;", text)
    # Every plug-in family lists the example package's entry (installed by make install).
    plugins = re.search(r"^plug-ins: (.*)$", result.stdout, re.MULTILINE)
    assert plugins is not None, result.stdout
    for name in (
        "example_ridge",
        "range_mean",
        "example_folder",
        "examplemem",
        "example_threshold",
    ):
        assert name in text
    # The monitoring stage: the later span served, the policy replayed until its first cycle,
    # the cycle gated and recorded, the champion's report written.
    assert "4,368 later bars served and logged" in text
    trigger = re.search(r"(scheduled|performance|drift) trigger: (PROMOTED|REJECTED)", text)
    assert trigger is not None, result.stdout
    assert re.search(r"cycle recorded: MLflow run [0-9a-f]{32} in experiment auto_retraining", text)
    report = re.search(r"monitoring report: (\S+\.html)", text)
    assert report is not None and Path(report[1]).exists()


def test_quickstart_offline_names_the_local_way(
    cli, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A port nothing listens on: the archives cannot be reached.
    monkeypatch.setenv("TRADEML_BINANCE_DATA_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("TRADEML_HTTP_RETRIES", "0")
    reload_settings()
    result = cli("quickstart")
    assert result.code == 4, result.stderr
    text = " ".join(result.stderr.split())
    assert "cannot be reached" in text and "trademl quickstart --source PATH" in text


@pytest.mark.parametrize(
    ("source", "extra", "message"),
    [
        ("missing.csv", (), "no such file or folder"),
        ("candles.csv", (), "the name does not read SYMBOL_TIMEFRAME"),
        (".", ("--symbol", "ETHUSDT"), "no ETHUSDT_1h candle file"),
        ("../../etc/passwd", (), "no such file or folder"),
    ],
)
def test_quickstart_refuses_a_bad_source_before_writing(
    cli, home: Path, tmp_path: Path, source: str, extra: tuple[str, ...], message: str
) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "candles.csv").write_text("timestamp,open,high,low,close,volume\n")
    (folder / "BTCUSDT_1h.csv").write_text("timestamp,open,high,low,close,volume\n")
    result = cli("quickstart", "--source", folder / source, *extra)
    assert result.code == 2, result.stderr
    assert message in " ".join(result.stderr.split())
    assert not (home / "market.duckdb").exists()  # nothing stored
