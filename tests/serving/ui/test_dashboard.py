"""The dashboard in a real browser (Debian's Chromium under Playwright) against the real
server on 127.0.0.1, serving a champion trained on real BTCUSDT 1h candles: every page in
every language, the market table's candles and bands, promotion from the Models page, the
Live page's stream, and an attacker's inputs."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, WebSocketRoute, expect
from tests.serving.ui.conftest import API_KEY, HEADERS, MODEL, Dashboard, after_logged
from tests.support.api import cli_server

from trademl.cli.serve import dashboard_url
from trademl.data.ingest import open_default_store

PAGES = ("market", "live", "backtests", "backtest", "models", "monitoring", "jobs")
TITLES = {"en": "Market", "ru": "Рынок", "es": "Mercado"}
LANGUAGE_HEADERS = {"en": "en-GB,en;q=0.8", "ru": "ru-RU,ru;q=0.9", "es": "es-ES,es;q=0.9"}


def backtest_path(dashboard: Dashboard) -> str:
    listing = httpx.get(f"{dashboard.url}/ui/backtests", timeout=30).text
    run_id = re.search(r"/ui/backtests/([0-9a-f]{32})", listing)
    assert run_id, "the recorded backtest is not listed"
    return f"/ui/backtests/{run_id.group(1)}"


def context(browser: Browser, locale: str = "en") -> BrowserContext:
    return browser.new_context(
        locale=locale,
        extra_http_headers={"Accept-Language": LANGUAGE_HEADERS[locale]},
        viewport={"width": 1280, "height": 900},
    )


class Watch:
    """Console errors, failed requests and error responses of a page."""

    def __init__(self, page: Page) -> None:
        self.problems: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))
        page.on("requestfailed", lambda r: self.problems.append(f"failed: {r.url} {r.failure}"))
        page.on(
            "response",
            lambda r: self.problems.append(f"{r.status}: {r.url}") if r.status >= 400 else None,
        )

    def _console(self, message: object) -> None:
        if getattr(message, "type", "") == "error":
            self.problems.append(f"console: {getattr(message, 'text', '')}")


@pytest.fixture(scope="module")
def pages(dashboard: Dashboard) -> dict[str, str]:
    paths = {name: f"/ui/{name}" for name in PAGES}
    paths["backtest"] = backtest_path(dashboard)
    return paths


@pytest.mark.parametrize("locale", ["en", "ru", "es"])
def test_every_page_loads_in_each_language(
    browser: Browser, dashboard: Dashboard, pages: dict[str, str], artifacts: Path, locale: str
) -> None:
    ctx = context(browser, locale)
    page = ctx.new_page()
    watch = Watch(page)
    try:
        for name, path in pages.items():
            response = page.goto(dashboard.url + path, wait_until="load")
            assert response is not None and response.status == 200, (name, response)
            assert page.locator("html").get_attribute("lang") == locale
            expect(page.locator("nav a").first).to_have_text(TITLES[locale])
            charts = page.locator("[data-chart]")
            if charts.count():  # Plotly drew every chart from the data beside it
                expect(page.locator("[data-chart] .main-svg").first).to_be_visible()
            page.screenshot(path=str(artifacts / f"{name}-{locale}.png"))
        assert watch.problems == []
    finally:
        ctx.close()


def test_market_table_shows_real_candles_and_bands(browser: Browser, dashboard: Dashboard) -> None:
    ctx = context(browser)
    page = ctx.new_page()
    try:
        page.goto(f"{dashboard.url}/ui/market?symbol=BTCUSDT&timeframe=1h&bars=50")
        rows = page.locator("#market-table tbody tr")
        expect(rows).to_have_count(50)
        stored = dashboard.candles.loc[:"2023-06-30 23:00"]
        last = stored.iloc[-1]
        cells = rows.first.locator("td").all_inner_texts()
        assert cells[0].replace("\u202f", " ") == "Jun 30, 2023, 11:00:00 PM"
        assert cells[1:5] == [f"{last[c]:,.2f}" for c in ("open", "high", "low", "close")]
        predicted_high, predicted_low = (float(cells[i].replace(",", "")) for i in (6, 8))
        assert predicted_low < last["close"] < predicted_high
        low, high = (float(v.replace(",", "")) for v in cells[7].split(" – "))
        assert low < predicted_high < high  # the interval brackets its point forecast
        # The oldest row shown is the 50th bar from the end, with its band too.
        oldest = rows.last.locator("td").all_inner_texts()
        assert oldest[4] == f"{stored['close'].iloc[-50]:,.2f}" and oldest[6] != "-"
    finally:
        ctx.close()


def served_champion(dashboard: Dashboard) -> int:
    body = httpx.get(f"{dashboard.url}/api/v1/models", timeout=30).json()
    return int(next(m for m in body["models"] if m["name"] == MODEL)["champion"])


def test_without_the_key_no_promote_button_and_401(browser: Browser, dashboard: Dashboard) -> None:
    ctx = context(browser)
    page = ctx.new_page()
    try:
        page.goto(f"{dashboard.url}/ui/models")
        expect(page.locator("#versions-table")).to_be_visible()
        expect(page.locator("button.promote")).to_have_count(0)
        statuses = page.evaluate(
            """async (name) => {
                const type = {"Content-Type": "application/x-www-form-urlencoded"};
                const form = {method: "POST", headers: type, body: "version=2&force=1"};
                const ui = await fetch(`/ui/models/${name}/promote`, form);
                const api = await fetch(`/api/v1/models/${name}/promote`, {method: "POST"});
                return [ui.status, api.status];
            }""",
            MODEL,
        )
        assert statuses == [401, 401]
        assert served_champion(dashboard) == 1
    finally:
        ctx.close()


def test_promote_refused_forced_and_rolled_back_from_the_models_page(
    browser: Browser, dashboard: Dashboard
) -> None:
    ctx = context(browser)
    page = ctx.new_page()
    try:
        page.goto(f"{dashboard.url}/ui/login")
        page.fill("input[name=key]", API_KEY)
        page.click("form[action='/ui/login'] button")
        page.wait_for_url("**/ui/models")
        # Version 2 is the challenger, trained behind a gate it cannot pass.
        with page.expect_response(re.compile("/promote$")) as refused:
            page.click("button.promote[data-version='2']")
        assert refused.value.status == 409
        outcome = page.locator("#outcome")
        expect(outcome).to_contain_text("The promotion gate refused this version.")
        expect(outcome).to_contain_text("the gate needs 1,000,000")  # its numbers
        assert served_champion(dashboard) == 1
        page.check("input[name=force][data-version='2']")
        page.click("button.promote[data-version='2']")
        expect(page.locator("#outcome")).to_contain_text("Version 2 is now the champion.")
        assert served_champion(dashboard) == 2
        expect(page.locator("#history-table tbody tr").first).to_contain_text("promoted")
        page.click("button.rollback")
        expect(page.locator("#outcome")).to_contain_text("The champion is version 1 again.")
        assert served_champion(dashboard) == 1
    finally:
        ctx.close()


def test_dead_stream_says_reconnecting(browser: Browser, dashboard: Dashboard) -> None:
    ctx = context(browser, "ru")
    page = ctx.new_page()

    def refuse(socket: WebSocketRoute) -> None:
        socket.close(code=1011, reason="gone")

    try:
        page.route_web_socket(re.compile(r"/ws/"), refuse)
        page.goto(f"{dashboard.url}/ui/live")
        expect(page.locator("#live-status")).to_contain_text("переподключение", timeout=10_000)
    finally:
        ctx.close()


def test_live_page_receives_the_prediction_of_a_new_bar(
    browser: Browser, dashboard: Dashboard, artifacts: Path
) -> None:
    ctx = context(browser)
    page = ctx.new_page()
    watch = Watch(page)
    try:
        page.goto(f"{dashboard.url}/ui/live")
        expect(page.locator("#live-status")).to_contain_text("Live:", timeout=15_000)
        new = after_logged(dashboard.candles)
        with open_default_store(dashboard.settings) as store:
            store.write(new, "BTCUSDT", "1h")
        row = page.locator(f"#live-table tr[data-bar='{new.index[0]:%Y-%m-%dT%H:%M:%S}.000Z']")
        expect(row).to_have_count(1, timeout=15_000)
        expect(row.locator("td").nth(1)).to_have_text(f"{new['close'].iloc[0]:,.2f}")
        assert row.locator("td").nth(3).inner_text() != "-"  # a predicted low
        page.screenshot(path=str(artifacts / "live-en-after-bar.png"))
        assert watch.problems == []
    finally:
        ctx.close()


# -- an attacker's inputs, over HTTP -------------------------------------------------------------


@pytest.fixture
def http(dashboard: Dashboard) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=dashboard.url, timeout=30) as client:
        yield client


def sign_in(http: httpx.Client) -> dict[str, str]:
    """The session cookie of a sign-in, sent explicitly from then on (the jar emptied)."""
    signed = http.post("/ui/login", data={"key": API_KEY}, follow_redirects=False)
    assert signed.status_code == 303
    http.cookies.clear()
    return {"trademl_ui": signed.cookies["trademl_ui"]}


def test_backtest_and_monitoring_pages_show_their_numbers(
    http: httpx.Client, dashboard: Dashboard, pages: dict[str, str]
) -> None:
    run = http.get(pages["backtest"]).text
    trades = pd.read_csv(dashboard.home / "runs" / "backtest" / "trades.csv")
    assert f"{len(trades)} trades; the last {len(trades)} are listed." in run
    assert run.count("<tr><td>", run.index('id="trades-table"')) == len(trades)
    for table in ("metrics-table", "equity-table", "monthly-table", "r-table"):
        assert f'id="{table}"' in run
    assert ">deflated_sharpe<" in run and ">max_drawdown<" in run
    report = http.get("/ui/monitoring", headers={"Accept-Language": "ru"}).text
    assert "BTCUSDT_1h_dashboard v1: прогнозов в журнале" in report
    assert "min_low_6: the loss of" in report  # the CUSUM alarm of the logged weeks
    assert 'id="targets-table"' in report and "Дрейф признаков" in report


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("symbol=DOGEUSDT&timeframe=1h", "no DOGEUSDT 1h candles in the store"),
        ("symbol=BTCUSDT&timeframe=fortnight", "fortnight"),
        ("symbol=%3Cscript%3Ealert(1)%3C%2Fscript%3E&timeframe=1h", "is not a symbol name"),
        ("symbol=..%2F..%2Fetc%2Fpasswd&timeframe=1h", "is not a symbol name"),
    ],
)
def test_unknown_or_hostile_series_is_a_404_page(http: httpx.Client, query: str, says: str) -> None:
    for page in ("market", "live"):
        response = http.get(f"/ui/{page}?{query}")
        assert response.status_code == 404
        assert says in response.text
        assert "<script>alert" not in response.text  # escaped, never markup
        assert "script-src 'self'" in response.headers["content-security-policy"]


def test_hostile_language_cookie_and_header_fall_back(http: httpx.Client) -> None:
    response = http.get(
        "/ui/backtests",
        cookies={"trademl_lang": "../../etc/passwd"},
        headers={"Accept-Language": "xx;q=1," * 200},
    )
    assert response.status_code == 200 and '<html lang="en">' in response.text
    switched = http.get("/ui/backtests?lang=ru")
    assert '<html lang="ru">' in switched.text
    assert switched.cookies.get("trademl_lang") == "ru"
    # The cookie the switcher set now beats the browser's language.
    kept = http.get(
        "/ui/backtests", cookies={"trademl_lang": "es"}, headers={"Accept-Language": "ru"}
    )
    assert '<html lang="es">' in kept.text
    http.cookies.clear()
    hostile = http.get("/ui/backtests?lang=%3Cb%3E")  # the jar emptied above
    assert '<html lang="en">' in hostile.text and "<b>" not in hostile.text
    assert "trademl_lang" not in hostile.headers.get("set-cookie", "")


def test_huge_or_bad_queries_are_refused_with_a_page(http: httpx.Client) -> None:
    long_symbol = http.get("/ui/market", params={"symbol": "A" * 5000, "timeframe": "1h"})
    assert long_symbol.status_code == 422 and "longer than" in long_symbol.text
    assert http.get("/ui/market?bars=100000000").status_code == 422
    assert http.get("/ui/models?name=..%2F..%2Fx").status_code == 404
    assert http.get("/ui/monitoring?version=%27%3B--").status_code == 422
    assert http.get("/ui/backtests/not-a-run").status_code == 404
    assert http.get("/ui/backtests/" + "0" * 32).status_code == 404
    assert http.get("/ui/static/..%2F..%2Fconfig.py").status_code == 404


def test_actions_refuse_forgery(http: httpx.Client, dashboard: Dashboard) -> None:
    login = http.post("/ui/login", data={"key": "wrong"})
    assert login.status_code == 403 and "wrong API key" in login.text
    assert "wrong" not in login.headers.get("set-cookie", "")
    foreign = http.post(
        "/ui/login", data={"key": API_KEY}, headers={"Origin": "https://evil.example"}
    )
    assert foreign.status_code == 403
    signed = http.post("/ui/login", data={"key": API_KEY}, follow_redirects=False)
    assert signed.status_code == 303
    cookie = signed.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and API_KEY not in cookie
    session = {"trademl_ui": signed.cookies["trademl_ui"]}
    http.cookies.clear()
    # Signed in but without the page's token (a forged form): refused, nothing changes.
    forged = http.post(f"/ui/models/{MODEL}/promote", data={"version": "2"}, cookies=session)
    assert forged.status_code == 403
    cross = http.post(
        f"/ui/models/{MODEL}/promote",
        data={"version": "2", "token": "x"},
        cookies=session,
        headers={"Origin": "https://evil.example"},
    )
    assert cross.status_code == 403
    tampered = {"trademl_ui": session["trademl_ui"][:-4] + "0000"}
    assert (
        http.post("/ui/jobs/train", data={"config": "tiny.yaml"}, cookies=tampered).status_code
        == 401
    )
    assert served_champion(dashboard) == 1
    assert API_KEY not in http.get("/ui/models", cookies=session).text


def test_training_form_starts_a_job_from_a_stored_config_only(
    http: httpx.Client, dashboard: Dashboard
) -> None:
    session = sign_in(http)
    jobs = http.get("/ui/jobs", cookies=session).text
    token = re.search(r'name="token" value="([0-9a-f]+)"', jobs)
    assert token and "tiny.yaml" in jobs
    outside = http.post(
        "/ui/jobs/train",
        data={"config": "../../etc/passwd", "token": token.group(1)},
        cookies=session,
    )
    assert outside.status_code == 404 and "not one of the stored configs" in outside.text
    started = http.post(
        "/ui/jobs/train",
        data={"config": "tiny.yaml", "token": token.group(1)},
        cookies=session,
        follow_redirects=False,
    )
    assert started.status_code == 303
    job_id = started.headers["location"].rsplit("=", 1)[1]
    job = http.get(f"/api/v1/jobs/{job_id}", headers=HEADERS).json()
    assert job["kind"] == "train"
    assert job_id in http.get("/ui/jobs", cookies=session).text
    # Without a session the jobs (a client's own) are not listed.
    assert job_id not in http.get("/ui/jobs").text


# -- trademl dashboard -------------------------------------------------------------------------


def test_dashboard_url_reaches_a_wildcard_bind_on_loopback() -> None:
    assert dashboard_url("0.0.0.0", 8000) == "http://127.0.0.1:8000/ui"
    assert dashboard_url("::1", 9000) == "http://[::1]:9000/ui"


def test_dashboard_command_serves_the_pages(dashboard: Dashboard) -> None:
    env = {
        **os.environ,
        "TRADEML_HOME": str(dashboard.home),
        "TRADEML_API_KEY": API_KEY,
        "TRADEML_MODEL_RELOAD_S": "0",
    }
    for name in ("TRADEML_STORE_URL", "TRADEML_MLFLOW_TRACKING_URI", "TRADEML_JOBS_URL"):
        env.pop(name, None)
    with cli_server(["dashboard", "--no-open"], env) as server:
        market = httpx.get(f"{server.url}/ui/market", timeout=30, headers={"Accept-Language": "es"})
        assert market.status_code == 200 and '<html lang="es">' in market.text
        assert "Bandas: modelo BTCUSDT_1h_dashboard v1 (champion)" in market.text
    assert f"dashboard: {server.url}/ui" in server.output
