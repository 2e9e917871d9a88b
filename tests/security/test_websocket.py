"""Items 3 and 6 of issue 14 on the WebSocket: the key travels in the X-API-Key header or the
``apikey.<key>`` subprotocol token (never the query string) and is never logged; streams are
bounded in total and per client, the excess closed with 1013/1008 while the open sockets keep
receiving; all sockets of a series share one store poller."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from tests.security.conftest import serve
from tests.serving.conftest import STORE_END, Served
from tests.serving.test_stream import next_of
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from trademl.data.stores import open_store
from trademl.serving import create_app

WS_KEY = "ws-KEY-3e9d-never-in-a-log"
MAX_CONNECTIONS = 4
MAX_PER_CLIENT = 3


@dataclass
class WsServer:
    """The server and the store it reads."""

    base: str
    store_url: str


@pytest.fixture(scope="module")
def server(served: Served, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WsServer]:
    folder = tmp_path_factory.mktemp("ws")
    store_url = f"duckdb:///{(folder / 'market.duckdb').as_posix()}"
    with open_store(store_url) as store:
        store.write(served.candles[served.candles.index < STORE_END], "BTCUSDT", "1h")
    env = {
        "TRADEML_STORE_URL": store_url,
        "TRADEML_API_KEY": WS_KEY,
        "TRADEML_API_AUTH_ALL": "true",
        "TRADEML_SERVE_LATEST_UNPROMOTED": "true",
        "TRADEML_STORE_POLL_S": "0.05",
        "TRADEML_WS_HEARTBEAT_S": "0.2",
        "TRADEML_WS_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
        "TRADEML_WS_MAX_PER_CLIENT": str(MAX_PER_CLIENT),
        "TRADEML_LOG_LEVEL": "DEBUG",
    }
    with serve(served.home, env, folder / "server.log") as running:
        yield WsServer(running.base, store_url)
    # Whatever the tests sent, and in whichever place, the key never reached the log.
    text = running.log.read_text()
    assert "WebSocket /ws/BTCUSDT" in text  # the access log was on: there was a log to grep
    assert WS_KEY not in text


def ws_url(server: WsServer, query: str = "timeframe=1h") -> str:
    return f"ws://{server.base}/ws/BTCUSDT?{query}"


async def first_message(socket: ClientConnection, kind: str = "prediction") -> dict[str, Any]:
    """The next message of ``kind`` (heartbeats skipped)."""
    async with asyncio.timeout(20):
        while True:
            message: dict[str, Any] = json.loads(await socket.recv())
            if message["type"] == kind:
                return message


async def closed_with(socket: ClientConnection) -> tuple[int, str]:
    """The close code and reason the server sent."""
    async with asyncio.timeout(20):
        with contextlib.suppress(ConnectionClosed):
            while True:
                await socket.recv()
    assert socket.close_code is not None, "the server did not send a close frame"
    return socket.close_code, socket.close_reason or ""


def test_the_key_comes_from_the_header_or_the_subprotocol(server: WsServer) -> None:
    async def attempt() -> None:
        async with connect(ws_url(server), additional_headers={"X-API-Key": WS_KEY}) as socket:
            assert (await first_message(socket))["symbol"] == "BTCUSDT"
        protocols: Any = ["trademl", f"apikey.{WS_KEY}"]
        async with connect(ws_url(server), subprotocols=protocols) as socket:
            assert socket.subprotocol == "trademl"  # ours is echoed, not the key's token
            assert (await first_message(socket))["symbol"] == "BTCUSDT"
        async with connect(ws_url(server)) as socket:
            code, reason = await closed_with(socket)
            assert code == 1008 and "missing API key" in reason
        async with connect(ws_url(server), subprotocols=["trademl", "apikey.wrong"]) as socket:
            code, reason = await closed_with(socket)
            assert code == 1008 and "wrong API key" in reason

    asyncio.run(attempt())


def test_a_key_in_the_query_string_is_refused(server: WsServer) -> None:
    async def attempt() -> None:
        for name in ("api_key", "apikey"):
            async with connect(ws_url(server, f"timeframe=1h&{name}={WS_KEY}")) as socket:
                code, reason = await closed_with(socket)
                assert code == 1008 and "query string is refused" in reason
                assert WS_KEY not in reason

    asyncio.run(attempt())


def test_a_flood_is_bounded_and_open_sockets_keep_receiving(
    server: WsServer, served: Served
) -> None:
    headers = {"X-API-Key": WS_KEY}
    # Loopback answers every 127.x address: a second client is another source address.
    other = {"local_addr": ("127.0.0.2", 0)}

    async def flood() -> None:
        opened: list[ClientConnection] = []
        try:
            for _ in range(MAX_PER_CLIENT):
                opened.append(await connect(ws_url(server), additional_headers=headers))
            for socket in opened:
                await first_message(socket)
            # The client's bound: more sockets from the same address are closed with 1008.
            for _ in range(5):
                async with connect(ws_url(server), additional_headers=headers) as extra:
                    code, reason = await closed_with(extra)
                    assert code == 1008 and "ws_max_per_client" in reason
            # The server's bound: another client fills it, and its next socket gets 1013.
            opened.append(await connect(ws_url(server), additional_headers=headers, **other))
            await first_message(opened[-1])
            async with connect(ws_url(server), additional_headers=headers, **other) as extra:
                code, reason = await closed_with(extra)
                assert code == 1013 and "ws_max_connections" in reason
            # Every socket let in still streams: a new bar reaches all of them.
            bar = served.candles[served.candles.index >= STORE_END].iloc[:1]
            with open_store(server.store_url) as store:
                store.write(bar, "BTCUSDT", "1h")
            for socket in opened:
                message = await first_message(socket)
                assert pd.Timestamp(message["bar_timestamp"]) == bar.index[0]
        finally:
            for socket in opened:
                await socket.close()
        # Closed sockets give their slots back.
        await asyncio.sleep(0.5)
        async with connect(ws_url(server), additional_headers=headers) as socket:
            await first_message(socket, "heartbeat")

    asyncio.run(flood())


def test_sockets_of_a_series_share_one_poller(served: Served) -> None:
    settings = served.settings.model_copy(update={"store_poll_s": 0.05, "model_reload_s": 0})
    app = create_app(settings)
    hub = app.state.serving.streams
    with TestClient(app) as client:
        sockets = [client.websocket_connect("/ws/BTCUSDT?timeframe=1h") for _ in range(3)]
        opened = [socket.__enter__() for socket in sockets]
        try:
            for socket in opened:
                next_of(socket, "prediction")
            assert list(hub.feeds) == [("BTCUSDT", "1h")]
            feed = hub.feeds["BTCUSDT", "1h"]
            assert feed.subscribers == 3
            polls, started = feed.polls, time.monotonic()
            time.sleep(0.5)
            # One look per period for the three sockets (not three), with slack for a slow loop.
            rate = (feed.polls - polls) / (time.monotonic() - started)
            assert rate <= 1.5 / settings.store_poll_s
        finally:
            for socket in sockets:
                socket.__exit__(None, None, None)
    assert hub.feeds == {} and hub.connections == 0
