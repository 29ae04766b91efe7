"""The fake Plain's HTTP side: a threading server, its request handler and replies.

The handler routes ``POST /graphql/v1`` and the admin endpoints to ``Routes`` and writes
their ``Reply``; a reply may also be a hang-up, for dropped-connection faults.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final
from urllib.parse import urlsplit

from graphql import GraphQLError

from backfill.fakeplain.stats import Stats

GRAPHQL_PATH: Final = "/graphql/v1"
MAX_BODY_BYTES: Final = 10 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Reply:
    """An answer to send: status, JSON payload and headers, or a hang-up (``drop``)."""

    status: int
    payload: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    drop: bool = False
    delay_s: float = 0.0


def error_body(message: str, code: str) -> dict[str, Any]:
    """A GraphQL ``errors`` body with one error and its Apollo-style code."""
    return {"errors": [{"message": message, "extensions": {"code": code}}]}


def graphql_error_body(errors: Sequence[GraphQLError], code: str) -> dict[str, Any]:
    """A GraphQL ``errors`` body of graphql-core's errors, each given ``code``."""
    formatted = []
    for error in errors:
        entry = dict(error.formatted)
        entry["extensions"] = {**(error.extensions or {}), "code": code}
        formatted.append(entry)
    return {"errors": formatted}


@dataclass(frozen=True, slots=True)
class Routes:
    """What the server calls to answer each endpoint; called from handler threads."""

    graphql: Callable[[str | None, bytes], Reply]
    faults: Callable[[bytes], Reply]
    stats: Callable[[], Stats]
    reset: Callable[[], None]


class Server(ThreadingHTTPServer):
    """Serves ``routes`` on ``address``, a thread per connection."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], routes: Routes) -> None:
        super().__init__(address, _Handler)
        self.routes = routes
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up mid-exchange is routine in fault tests; only real bugs print.
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)

    def hang_up(self) -> None:
        """Shut every open connection, idle keep-alive ones included."""
        with self.connections_lock:
            open_connections = list(self.connections)
        for connection in open_connections:
            _hang_up(connection)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakePlain/1.0"
    # Idle keep-alive connections end on their own rather than holding a thread forever.
    timeout = 60
    # Headers and body go out in separate writes; Nagle plus delayed ACKs would add ~40 ms.
    disable_nagle_algorithm = True
    server: Server

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        """Stay silent: a line per request would drown the output of whoever runs the server."""

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        routes = self.server.routes
        if path == "/_fake/stats":
            self._send(Reply(200, asdict(routes.stats())))
        elif path == "/_fake/events":
            self._send(Reply(200, routes.stats().events))
        elif path == GRAPHQL_PATH:
            self._send(Reply(405, error_body("Use POST", "METHOD_NOT_ALLOWED"), {"Allow": "POST"}))
        else:
            self._send(Reply(404, error_body("Not Found", "NOT_FOUND")))

    def do_POST(self) -> None:
        body = self._read_body()
        if body is None:
            return
        path = urlsplit(self.path).path
        routes = self.server.routes
        if path == GRAPHQL_PATH:
            reply = routes.graphql(self.headers.get("Authorization"), body)
            if reply.delay_s:
                time.sleep(reply.delay_s)
            if reply.drop:
                self._drop()
            else:
                self._send(reply)
        elif path == "/_fake/reset":
            routes.reset()
            self._send(Reply(200, {"ok": True}))
        elif path == "/_fake/faults":
            self._send(routes.faults(body))
        else:
            self._send(Reply(404, error_body("Not Found", "NOT_FOUND")))

    def _read_body(self) -> bytes | None:
        length_header = self.headers.get("Content-Length")
        try:
            length = int(length_header) if length_header is not None else -1
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY_BYTES:
            # Without a usable length the request's end is unknown: answer and hang up.
            self.close_connection = True
            status = 413 if length > MAX_BODY_BYTES else 411
            self._send(Reply(status, error_body("Content-Length required", "BAD_REQUEST")))
            return None
        return self.rfile.read(length)

    def _send(self, reply: Reply) -> None:
        payload = json.dumps(reply.payload, separators=(",", ":"), default=str).encode()
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except OSError:
            self.close_connection = True

    def _drop(self) -> None:
        self.close_connection = True
        _hang_up(self.connection)


def _hang_up(connection: socket.socket) -> None:
    try:
        connection.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
