"""The dashboard's fixtures: a champion trained on real BTCUSDT 1h candles with its served
predictions logged (monitoring), a challenger behind a gate it cannot pass, a recorded
backtest, and the real app on uvicorn at 127.0.0.1 (one server per module)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pandas as pd
import pytest
import uvicorn
import yaml
from playwright.sync_api import Browser, sync_playwright
from tests.conftest import IN_CI
from tests.support.api import free_port
from tests.support.monitoring import LOGGED_UNTIL, monitored_champion
from tests.support.training import tiny_run_config

from trademl.api import backtest, train
from trademl.config import Settings
from trademl.data.sources.files import read_candle_file
from trademl.serving import create_app

MODEL = "BTCUSDT_1h_dashboard"
API_KEY = "dashboard-test-key"
HEADERS = {"X-API-Key": API_KEY}
# A gate no short run passes: the challenger's promotion is refused with its numbers.
IMPOSSIBLE_GATE = {"metric": "log_loss", "margin": 100.0, "min_rows": 10**6}


@dataclass
class Dashboard:
    """The served home: its settings, the real candles, and the running server's URL."""

    home: Path
    settings: Settings
    candles: pd.DataFrame
    url: str


def _prepare(home: Path, data_dir: Path) -> Settings:
    settings = monitored_champion(
        home,
        data_dir,
        MODEL,
        api_key=API_KEY,
        model_reload_s=1.0,
        store_poll_s=0.1,
        ws_heartbeat_s=0.5,
        jobs_workers=1,
    )
    model = {"kind": "lgbm", "params": {"n_estimators": 5, "min_child_samples": 300}}
    challenger = tiny_run_config(
        home / "runs" / "challenger", model, name=MODEL, gate=IMPOSSIBLE_GATE
    )
    train(challenger, settings=settings)
    backtest(
        {
            "run": str(home / "runs" / "champion"),
            "strategy": {
                "kind": "maxmin",
                "horizon": "intraday",
                "params": {"max_bars": 6, "reward_risk": 1.0},
            },
            "output": str(home / "runs" / "backtest"),
        },
        settings=settings,
        track=True,
    )
    # A stored config the Jobs page offers; it names a symbol the store lacks (fails fast).
    (home / "configs").mkdir()
    broken = tiny_run_config(home / "runs" / "job", model, name="job_model", gate=IMPOSSIBLE_GATE)
    broken["data"]["symbol"] = "NOSUCHCOIN"
    (home / "configs" / "tiny.yaml").write_text(yaml.safe_dump(broken))
    return settings


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Iterator[Dashboard]:
    """The app serving the prepared home on uvicorn in a thread."""
    home = tmp_path_factory.mktemp("dashboard")
    settings = _prepare(home, data_dir)
    candles = read_candle_file(data_dir / "crypto" / "BTCUSDT_1h.csv")
    port = free_port()
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    assert httpx.get(f"{url}/health", timeout=5).status_code == 200
    try:
        yield Dashboard(home, settings, candles, url)
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def after_logged(candles: pd.DataFrame) -> pd.DataFrame:
    """The first real bar after the stored ones (what the Live test writes)."""
    return candles[candles.index > pd.Timestamp(LOGGED_UNTIL, tz="UTC")].iloc[:1]


# -- the browser ---------------------------------------------------------------------------------

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


# A module's, not the session's: Playwright's sync API keeps an event loop running in the main
# thread while it is open, and every later test of the process that calls asyncio.run() would
# fail (pytest-xdist runs other folders' files after this one in the same worker).
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium under Playwright, one per test module; a missing browser fails the
    run under CI (apt-get install chromium) and skips it elsewhere."""
    if not Path(CHROMIUM).exists():
        message = f"{CHROMIUM} is missing: apt-get install -y chromium"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Where the screenshots go: TRADEML_UI_ARTIFACTS, else .trademl-ci/artifacts/ui under CI
    (CI keeps that folder), else tmp/artifacts/ui in the repository (ignored by git)."""
    configured = os.environ.get("TRADEML_UI_ARTIFACTS")
    root = Path(__file__).resolve().parents[3]
    if configured:
        folder = Path(configured)
    elif IN_CI:
        folder = root / ".trademl-ci" / "artifacts" / "ui"
    else:
        folder = root / "tmp" / "artifacts" / "ui"
    folder.mkdir(parents=True, exist_ok=True)
    return folder
