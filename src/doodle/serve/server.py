"""uvicorn, configured against slow and hostile clients: the HTTP protocol with deadlines.

uvicorn's httptools protocol times out only an idle keep-alive connection: a client that connects
and sends nothing, sends half a request line, or announces a body and sends part of it, holds its
connection (and a request task) for as long as it likes. `GuardedProtocol` adds three bounds:

- headers: from a connection's first byte of a request (or from connecting), `header_timeout`
  seconds to finish the request line and headers; a connection that sent nothing yet is closed,
  one that sent part of a request gets 408;
- body: once the headers are in, `body_timeout` seconds for the whole body, else 408 (or a plain
  close when the app has already started answering), and the app sees the client as gone;
- size: request line plus headers over `max_header_bytes` get 431 (the parser has no limit).

Each answer is JSON like the app's own errors and closes the connection (the rest of the request
cannot be trusted). `uvicorn_config` also sets uvicorn's `limit_concurrency` (503 beyond
`max_connections`). With plain uvicorn the same protocol is `--http doodle.serve.server:GuardedProtocol`
(default limits).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from doodle.serve.settings import ServeSettings

log = logging.getLogger(__name__)
_DEFAULTS = ServeSettings()
PHRASES = {408: "Request Timeout", 431: "Request Header Fields Too Large"}


def error_response(status: int, detail: str) -> bytes:
    """A complete HTTP/1.1 error response with the app's JSON error body, closing the connection."""
    body = json.dumps({"detail": detail, "errors": []}).encode()
    head = (f"HTTP/1.1 {status} {PHRASES.get(status, '')}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n")
    return head.encode("latin-1") + body


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with header and body deadlines and a header size limit (see the
    module docstring); the class attributes are the limits (`protocol_for` sets them)."""

    header_timeout: float = _DEFAULTS.header_timeout
    body_timeout: float = _DEFAULTS.body_timeout
    max_header_bytes: int = _DEFAULTS.max_header_bytes

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._deadline: asyncio.TimerHandle | None = None
        self._in_headers = True  # reading a request line and headers (or waiting for them)
        self._begun = False  # a byte of the current request has arrived
        self._header_bytes = 0
        super().connection_made(transport)
        self._arm(self.header_timeout, self._headers_late)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._in_headers:
            self._header_bytes += len(data)
        super().data_received(data)
        if self._in_headers and self._header_bytes > self.max_header_bytes and not self.transport.is_closing():
            self._refuse(431, f"the request line and headers are over the limit of {self.max_header_bytes} bytes")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._begun = True
        if self._deadline is None:
            self._arm(self.header_timeout, self._headers_late)

    def on_headers_complete(self) -> None:
        self._in_headers = False
        self._disarm()
        super().on_headers_complete()
        self._arm(self.body_timeout, self._body_late)

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()
        self._in_headers, self._begun, self._header_bytes = True, False, 0

    def _arm(self, seconds: float, callback: Any) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, callback)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _headers_late(self) -> None:
        """The header deadline: close an idle connection, answer 408 to a half-sent request."""
        self._deadline = None
        if self.transport.is_closing() or not self._in_headers:
            return
        if not self._begun:
            self.transport.close()  # nothing to answer: a connection that never asked anything
            return
        self._refuse(408, f"the request headers did not arrive within {self.header_timeout:g} s")

    def _body_late(self) -> None:
        """The body deadline: 408 (if no answer has started), and the app told the client is gone."""
        self._deadline = None
        if self.transport.is_closing():
            return
        self._refuse(408, f"the request body did not arrive within {self.body_timeout:g} s")

    def _refuse(self, status: int, detail: str) -> None:
        """Answer `status` where the connection is free to answer (no response of the current
        request started, none of an earlier pipelined one unfinished), tell the app the client of
        the current request is gone, close."""
        log.warning("%s %s: %s; closing the connection", self._peer(), status, detail)
        cycle = self.cycle
        if self._in_headers:  # the cycle, if any, is the previous request's
            if cycle is None or cycle.response_complete:
                self.transport.write(error_response(status, detail))
        elif cycle is not None:
            if not cycle.response_started:
                self.transport.write(error_response(status, detail))
            if not cycle.response_complete:
                cycle.disconnected = True  # its receive() now says http.disconnect, its send() is a no-op
                cycle.message_event.set()
        self.transport.close()

    def _peer(self) -> str:
        return f"{self.client[0]}:{self.client[1]}" if self.client else "client"


def protocol_for(settings: ServeSettings) -> type[GuardedProtocol]:
    """`GuardedProtocol` with the limits of `settings`."""
    return type("GuardedProtocol", (GuardedProtocol,), {
        "header_timeout": settings.header_timeout, "body_timeout": settings.body_timeout,
        "max_header_bytes": settings.max_header_bytes})


def uvicorn_config(app: Any, settings: ServeSettings, **options: Any) -> uvicorn.Config:
    """The uvicorn configuration serving `app` on settings.host:port with the limits of `settings`;
    `options` are more uvicorn.Config arguments (log_level, access_log, ...)."""
    return uvicorn.Config(app, host=settings.host, port=settings.port, http=protocol_for(settings), ws="none",
                          limit_concurrency=settings.max_connections, **options)


def build_server(settings: ServeSettings, log_level: str = "warning") -> tuple[uvicorn.Server, Any]:
    """(uvicorn server, engine) for `settings.model`: the model is loaded (and exported) before any
    port is bound, so a bad model is a clear error, not a dead server. `server.run()` serves until
    Ctrl+C; then call `engine.close()`."""
    from doodle.serve.app import create_app
    from doodle.serve.inference import load_engine

    engine = load_engine(settings.model, settings.backend, settings.checkpoint, settings.inference_threads)
    try:
        app = create_app(settings, engine)
        return uvicorn.Server(uvicorn_config(app, settings, log_level=log_level, access_log=False)), engine
    except BaseException:
        engine.close()
        raise


def serve_model(settings: ServeSettings, log_level: str = "warning", announce: Any = None) -> None:
    """Serve `settings.model` until Ctrl+C; `announce(engine)` runs once it is loaded, before serving.
    A port that cannot be bound is one line of error (uvicorn has logged why)."""
    from doodle.errors import DoodleError

    server, engine = build_server(settings, log_level)
    try:
        if announce is not None:
            announce(engine)
        server.run()
        if not server.started:
            raise DoodleError(f"the server could not start on {settings.host}:{settings.port}")
    finally:
        engine.close()
