"""A real HTTP server on 127.0.0.1 for testing network sources against files in their own format."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

Handler = Callable[[str, dict[str, list[str]]], "Reply"]


@dataclass
class Reply:
    """What the server answers: status, body and headers."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class LocalServer:
    """Routes by exact path (``routes``) or by a fallback ``handler``; records every request."""

    url: str
    routes: dict[str, Reply]
    requests: list[str]
    handler: Handler | None = None


@contextmanager
def local_http_server(handler: Handler | None = None) -> Iterator[LocalServer]:
    """Serve on an ephemeral 127.0.0.1 port until the block ends."""
    state = LocalServer(url="", routes={}, requests=[], handler=handler)

    class _RequestHandler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            state.requests.append(self.path)
            reply = state.routes.get(parts.path)
            if reply is None and state.handler is not None:
                reply = state.handler(parts.path, parse_qs(parts.query))
            if reply is None:
                reply = Reply(404, b"not found")
            self.send_response(reply.status)
            for key, value in reply.headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), _RequestHandler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
