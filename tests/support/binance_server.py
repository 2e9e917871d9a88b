"""A local HTTP server on 127.0.0.1 speaking Binance spot's REST API in its own format.

Signed endpoints check the ``X-MBX-APIKEY`` header, the HMAC-SHA256 ``signature`` over the query
string and body, and the ``timestamp``/``recvWindow`` at the moment the request is processed,
as Binance does. Orders go to :class:`~tests.support.binance_spot.SpotExchange`. Faults can be
queued per endpoint: a 429 with ``Retry-After``, a delay before or after the order is accepted,
or a connection dropped after accepting it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

from tests.support.binance_market import BinanceError, now_ms
from tests.support.binance_spot import SpotExchange, SpotOrder

FaultKind = Literal["throttle", "delay_before", "delay_after", "drop_after"]
RATE_LIMITED = (
    "Too many requests; current limit of IP(127.0.0.1) is 6000 requests per minute. "
    "Please use WebSocket Streams for live updates to avoid polling the API."
)


@dataclass
class Fault:
    """What to do to the next ``count`` requests of ``method`` ``path``."""

    method: str
    path: str
    kind: FaultKind
    seconds: float = 0.0
    count: int = 1


@dataclass
class Hit:
    """One request as the server received it."""

    at: float
    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]
    status: int = 0


@dataclass
class BinanceSpotServer:
    """The running server: its URL, exchange state, keys, faults and request log."""

    url: str
    exchange: SpotExchange
    api_key: str
    api_secret: str
    hits: list[Hit] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    clock_offset_ms: int = 0  # how far the venue's clock runs ahead of this machine's

    def inject(
        self, method: str, path: str, kind: FaultKind, seconds: float = 0.0, count: int = 1
    ) -> None:
        """Queue a fault for the next ``count`` requests of ``method`` ``path``."""
        with self.lock:
            self.faults.append(Fault(method, path, kind, seconds, count))

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.method == method and fault.path == path and fault.count > 0:
                    fault.count -= 1
                    return fault
        return None

    def calls(self, method: str, path: str) -> list[Hit]:
        """The requests received for one endpoint, in order."""
        with self.lock:
            return [h for h in self.hits if h.method == method and h.path == path]

    # -- routing --------------------------------------------------------------------------------

    def _authorize(self, raw: str, params: dict[str, str], headers: dict[str, str]) -> None:
        key = headers.get("x-mbx-apikey")
        if not key:
            raise BinanceError(401, -2014, "API-key format invalid.")
        if not hmac.compare_digest(key, self.api_key):
            raise BinanceError(401, -2015, "Invalid API-key, IP, or permissions for action.")
        payload = "&".join(p for p in raw.split("&") if not p.startswith("signature="))
        expected = hmac.new(self.api_secret.encode(), payload.encode(), hashlib.sha256)
        if not hmac.compare_digest(params.get("signature", ""), expected.hexdigest()):
            raise BinanceError(400, -1022, "Signature for this request is not valid.")
        if not params.get("timestamp", "").isdigit():
            raise BinanceError(400, -1102, "Mandatory parameter 'timestamp' was not sent.")
        window = int(params.get("recvWindow", "5000"))
        if window > 60_000:
            raise BinanceError(400, -1131, "recvWindow must be less than 60000")
        stamp, now = int(params["timestamp"]), now_ms() + self.clock_offset_ms
        if stamp > now + 1000 or now - stamp > window:
            raise BinanceError(
                400, -1021, "Timestamp for this request is outside of the recvWindow."
            )

    def route(
        self, method: str, path: str, raw: str, params: dict[str, str], headers: dict[str, str]
    ) -> Any:
        """The JSON answer of one request (raising :class:`BinanceError` for a refusal)."""
        exchange = self.exchange
        public = {
            ("GET", "/api/v3/ping"): lambda: {},
            ("GET", "/api/v3/time"): lambda: {"serverTime": now_ms() + self.clock_offset_ms},
            ("GET", "/api/v3/exchangeInfo"): lambda: {
                "timezone": "UTC",
                "serverTime": now_ms(),
                "rateLimits": [],
                "exchangeFilters": [],
                "symbols": [m.info() for m in exchange.markets.values()],
            },
        }
        if (method, path) in public:
            return public[(method, path)]()
        signed = {
            ("POST", "/api/v3/order"): lambda: self._placed(exchange.new_order(params)),
            ("GET", "/api/v3/order"): lambda: self._query(params),
            ("DELETE", "/api/v3/order"): lambda: self._cancel(params),
            ("GET", "/api/v3/openOrders"): lambda: self._open(params),
            ("GET", "/api/v3/account"): exchange.account,
            ("GET", "/api/v3/myTrades"): lambda: exchange.my_trades(params),
            ("POST", "/api/v3/orderList/oco"): lambda: exchange.new_oco(params),
        }
        if (method, path) not in signed:
            raise BinanceError(404, -1000, f"No route {method} {path}.")
        self._authorize(raw, params, headers)
        return signed[(method, path)]()

    def _placed(self, order: SpotOrder) -> dict[str, Any]:
        with self.exchange.lock:
            fills = [
                {
                    "price": t["price"],
                    "qty": t["qty"],
                    "commission": t["commission"],
                    "commissionAsset": t["commissionAsset"],
                    "tradeId": t["id"],
                }
                for t in self.exchange.trades
                if t["orderId"] == order.order_id
            ]
            return {**order.json(), "transactTime": order.created, "fills": fills}

    def _query(self, params: dict[str, str]) -> dict[str, Any]:
        with self.exchange.lock:
            return self.exchange.find(params, (-2013, "Order does not exist.")).json()

    def _cancel(self, params: dict[str, str]) -> dict[str, Any]:
        wanted = self.exchange.cancel(params)
        named = [
            o
            for o in wanted
            if o.client_id == params.get("origClientOrderId")
            or str(o.order_id) == params.get("orderId")
        ]
        order = (named or wanted)[0]
        answer = order.json()
        answer["origClientOrderId"] = order.client_id
        answer["clientOrderId"] = params.get("newClientOrderId", f"cancel{order.order_id}")
        return answer

    def _open(self, params: dict[str, str]) -> list[dict[str, Any]]:
        with self.exchange.lock:
            symbol = params.get("symbol")
            if symbol is not None and symbol not in self.exchange.markets:
                raise BinanceError(400, -1121, "Invalid symbol.")
            return [
                o.json()
                for o in self.exchange.orders.values()
                if o.is_open and (symbol is None or o.symbol == symbol)
            ]


@contextmanager
def binance_spot_server(
    exchange: SpotExchange, api_key: str, api_secret: str
) -> Iterator[BinanceSpotServer]:
    """Serve ``exchange`` on an ephemeral 127.0.0.1 port until the block ends."""
    state = BinanceSpotServer("", exchange, api_key, api_secret)

    class _Handler(BaseHTTPRequestHandler):
        def _serve(self, method: str) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            raw = "&".join(x for x in (parts.query, body) if x)
            params = dict(parse_qsl(raw, keep_blank_values=True))
            headers = {k.lower(): v for k, v in self.headers.items()}
            hit = Hit(time.monotonic(), method, parts.path, params, headers)
            with state.lock:
                state.hits.append(hit)
            fault = state._take_fault(method, parts.path)
            extra: dict[str, str] = {}
            if fault is not None and fault.kind == "throttle":
                status, payload = 429, {"code": -1003, "msg": RATE_LIMITED}
                extra["Retry-After"] = str(int(fault.seconds))
            else:
                if fault is not None and fault.kind == "delay_before":
                    time.sleep(fault.seconds)
                try:
                    status, payload = 200, state.route(method, parts.path, raw, params, headers)
                except BinanceError as error:
                    status, payload = error.status, {"code": error.code, "msg": error.msg}
                if fault is not None and fault.kind == "delay_after":
                    time.sleep(fault.seconds)
                if fault is not None and fault.kind == "drop_after":
                    self.close_connection = True
                    hit.status = -1
                    return
            hit.status = status
            data = json.dumps(payload).encode()
            with suppress(BrokenPipeError, ConnectionResetError):
                self.send_response(status)
                self.send_header("Content-Type", "application/json;charset=UTF-8")
                for key, value in extra.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def do_DELETE(self) -> None:
            self._serve("DELETE")

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
