"""A loop killed with SIGKILL in the middle of an order, then restarted: the venue holds
exactly one entry order, the journal knows it, and the trade goes on (SQLite and PostgreSQL)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from trademl.trading.journal import TradeJournal
from trademl.trading.paper import PaperBroker

WORKER = Path(__file__).with_name("kill_worker.py")
ROOT = Path(__file__).resolve().parents[2]


def _worker(args: list[str]) -> list[str]:
    return [sys.executable, str(WORKER), *args]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT / "src")}


def _kill_mid_order(args: list[str], marker: Path) -> None:
    process = subprocess.Popen(_worker(args), env=_env(), stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not marker.exists():
        if process.poll() is not None:
            raise AssertionError(f"worker ended early: {process.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("the worker never reached the order")
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    assert process.wait(timeout=30) == -signal.SIGKILL
    process.stderr.close()  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("backend", "mode"), [("sqlite", "before"), ("postgresql", "after"), ("sqlite", "exits")]
)
def test_killed_mid_order_then_restarted_places_exactly_one_order(
    backend: str, mode: str, tmp_path: Path, data_dir: Path, request: pytest.FixtureRequest
) -> None:
    if backend == "postgresql":
        journal_url = request.getfixturevalue("postgres_url")
        engine = sa.create_engine(journal_url)
        with engine.begin() as conn:
            for table in (
                "trade_events",
                "trade_fills",
                "trade_orders",
                "trade_intents",
                "trade_loops",
                "trade_switches",
            ):
                conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
        engine.dispose()
    else:
        journal_url = f"sqlite:///{tmp_path / 'journal.sqlite'}"
    paper_url = f"sqlite:///{tmp_path / 'paper.sqlite'}"
    csv = str(data_dir / "crypto" / "BTCUSDT_1h.csv")
    marker = tmp_path / "paused"
    _kill_mid_order([journal_url, paper_url, csv, str(marker), mode], marker)

    journal = TradeJournal(journal_url)
    orders = journal.orders("kill-test")
    (entry,) = [o for o in orders if o.role == "entry"]
    # The crash came between the two journal writes of the order (of the exits: before them).
    assert entry.state == ("filled" if mode == "exits" else "sending")
    assert [o.state for o in orders if o.role != "entry"] == (
        ["sending", "sending"] if mode == "exits" else []
    )
    venue = PaperBroker(paper_url)
    held = venue.order("BTCUSDT", entry.client_id)
    assert (held is None) == (mode == "before")
    venue.close()

    done = subprocess.run(
        _worker([journal_url, paper_url, csv, str(marker), "none"]),
        env=_env(),
        capture_output=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]

    venue = PaperBroker(paper_url)
    entries = [f for f in venue.fills("BTCUSDT") if f.client_id.endswith("-e")]
    assert len(entries) == 1  # never lost, never doubled
    (entry,) = [o for o in journal.orders("kill-test") if o.role == "entry"]
    assert (entry.client_id, entry.state) == (entries[0].client_id, "filled")
    (intent,) = journal.intents("kill-test")
    assert intent.state in ("open", "closed")
    assert intent.entry_price == entries[0].price
    held = sum(p.quantity for p in venue.positions())
    assert held == (intent.quantity if intent.state == "open" else 0.0)
    exits = {o.role: o.state for o in journal.orders("kill-test") if o.role != "entry"}
    assert set(exits) == {"stop", "target"}  # placed once, after the restart if need be
    assert sorted(exits.values()) in (["canceled", "filled"], ["new", "new"])
    kinds = [
        e["detail"]["state"]
        for e in journal.events("kill-test")
        if e["subject"] == entry.client_id and e["kind"] == "order"
    ]
    assert kinds[0] == "sending" and kinds[-1] == "filled"
    venue.close()
    journal.close()
