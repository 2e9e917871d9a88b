"""An EVM JSON-RPC endpoint over HTTP on 127.0.0.1: eth-tester's in-process chain behind a
small server that speaks the wire format (quantities and bytes as 0x-hex), so that clients
reach it through web3's ``HTTPProvider`` as they would a node."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def _wire(value: Any) -> Any:
    """``value`` as JSON-RPC encodes it: integers as hex quantities, bytes as hex data."""
    if value is None or isinstance(value, bool | str | float):
        return value
    if isinstance(value, int):
        return hex(value)
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    if isinstance(value, Mapping):
        return {key: _wire(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_wire(item) for item in value]
    return value


@contextmanager
def json_rpc_server(web3: Any) -> Iterator[str]:
    """Serve the chain of ``web3`` (on an ``EthereumTesterProvider``) until the block ends;
    yields the URL. Requests go through web3's own request pipeline (which shapes eth-tester's
    answers as a node's), one at a time, as the in-process chain expects."""
    lock = threading.Lock()

    class _Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with lock:
                try:
                    result = web3.manager.request_blocking(request["method"], request["params"])
                    response: dict[str, Any] = {"jsonrpc": "2.0", "result": _wire(result)}
                except Exception as error:  # the in-process chain raises where a node answers
                    message = str(getattr(error, "message", None) or error)
                    response = {"jsonrpc": "2.0", "error": {"code": 3, "message": message}}
            response["id"] = request["id"]
            body = json.dumps(response).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
