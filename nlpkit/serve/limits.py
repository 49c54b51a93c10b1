"""What every request goes through before it reaches a route: its id, the API key, the in-flight cap, the body
size cap; and what every response carries: the request id, one JSON shape for errors, its metrics and log line.

All of it is one pure ASGI middleware (:class:`Guard`), not Starlette's ``BaseHTTPMiddleware``: it holds the
in-flight slot until the last byte of a streamed response is sent or the client goes away, and it does not
buffer streams.

Errors have OpenAI's shape, which its client and most others read::

    {"error": {"message": "...", "type": "invalid_request_error", "param": "inputs", "code": 413},
     "request_id": "..."}
"""

from __future__ import annotations

import contextvars
import hmac
import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from nlpkit.serve.metrics import ServeMetrics
from nlpkit.serve.settings import ServeSettings

__all__ = ["OPEN_PATHS", "UNCAPPED_PATHS", "Guard", "RequestIdFilter", "ServeError", "error_body", "request_id"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

logger = logging.getLogger("nlpkit.serve")

#: Routes that answer without the API key (a load balancer's liveness probe carries none).
OPEN_PATHS = frozenset({"/health"})
#: Routes that do not count against --max-concurrency: monitoring must answer when the server is full.
UNCAPPED_PATHS = frozenset({"/health", "/ready", "/metrics"})
#: A client's X-Request-ID is used when it looks like an id (no spaces or control characters that would
#: forge log lines); otherwise the server makes one.
_CLIENT_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")

_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("nlpkit_request_id", default="-")

ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
               413: "invalid_request_error", 422: "invalid_request_error", 429: "rate_limit_error",
               500: "server_error", 503: "server_error", 504: "timeout_error"}


def request_id() -> str:
    """The id of the request being served (``-`` outside one)."""
    return _request_id.get()


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` to every log record (for a format with ``%(request_id)s``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = _request_id.get()
        return True


class ServeError(Exception):
    """An answer other than 200: the status, a message saying what is wrong and the limit or fix, and the
    request field it is about (``param``)."""

    def __init__(self, status: int, message: str, param: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.headers = status, message, param, headers or {}


def error_body(status: int, message: str, param: str | None = None) -> dict[str, Any]:
    """The JSON of an error answer."""
    return {"error": {"message": message, "type": ERROR_TYPES.get(status, "invalid_request_error"),
                      "param": param, "code": status}, "request_id": request_id()}


async def send_json(send: Send, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
    """Send a whole JSON response through ``send``."""
    data = json.dumps(body).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": data})


class Guard:
    """The middleware of every request (see the module docstring)."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], *, settings: ServeSettings,
                 metrics: ServeMetrics, routes: Callable[[], set[str]]):
        self.app, self.settings, self.metrics, self.routes = app, settings, metrics, routes
        self.in_flight = 0

    def _route(self, path: str) -> str:
        """The metrics label of a path: the route's path, or ``unmatched`` (no label per made-up URL)."""
        return path if path in self.routes() else "unmatched"

    def _authorized(self, scope: Scope) -> bool:
        key = self.settings.api_key
        if not key or scope["path"] in OPEN_PATHS or scope.get("method") == "OPTIONS":
            return True  # OPTIONS: a browser's CORS preflight never carries credentials
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                scheme, _, token = value.decode("latin-1").partition(" ")
                return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), key.encode())
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"x-request-id"), "")
        rid = given if _CLIENT_ID.fullmatch(given) else uuid.uuid4().hex
        token = _request_id.set(rid)
        path, start, status = scope["path"], time.perf_counter(), [500]
        started = [False]

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                started[0] = True
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        counted = path not in UNCAPPED_PATHS
        try:
            if not self._authorized(scope):
                self.metrics.rejected.labels("unauthorized").inc()
                await send_json(send_with_id, 401, error_body(
                    401, "Missing or wrong API key: send the header 'Authorization: Bearer <key>' with the key the "
                         "server was started with (--api-key or NLPKIT_API_KEY)."), {"www-authenticate": "Bearer"})
                return
            if counted and self.in_flight >= self.settings.max_concurrency:
                self.metrics.rejected.labels("busy").inc()
                await send_json(send_with_id, 429, error_body(
                    429, f"The server is serving its limit of {self.settings.max_concurrency} requests at once "
                         f"(--max-concurrency); retry after the time in Retry-After."), {"retry-after": "1"})
                return
            if counted:
                self.in_flight += 1
                self.metrics.in_flight.set(self.in_flight)
            try:
                body = await self._read_body(scope, receive) if scope.get("method") in ("POST", "PUT", "PATCH") \
                    else None
                if body is None and scope.get("method") in ("POST", "PUT", "PATCH"):
                    self.metrics.rejected.labels("too_large").inc()
                    await send_json(send_with_id, 413, error_body(
                        413, f"The request body is larger than the limit of {self.settings.max_body_bytes:,} bytes "
                             f"(--max-body-bytes).", "body"))
                    return
                await self.app(scope, _replay(body, receive) if body is not None else receive, send_with_id)
            finally:
                if counted:
                    self.in_flight -= 1
                    self.metrics.in_flight.set(self.in_flight)
        except Exception:
            # a bug, not the client's fault: logged with its traceback, answered 500, and the server goes on
            logger.exception("%s %s failed", scope.get("method"), path)
            if not started[0]:
                await send_json(send_with_id, 500, error_body(
                    500, f"Internal error while serving this request (request id {rid}); the server log has the "
                         f"details."))
        finally:
            seconds = time.perf_counter() - start
            route = self._route(path)
            self.metrics.requests.labels(route, str(status[0])).inc()
            self.metrics.latency.labels(route).observe(seconds)
            logger.info("%s %s %d %.1fms", scope.get("method"), path, status[0], seconds * 1000)
            _request_id.reset(token)

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes | None:
        """The whole request body, or None when it is over --max-body-bytes (refused from Content-Length
        before reading, or as soon as a chunked body passes the limit)."""
        limit = self.settings.max_body_bytes or 0
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                return None
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives ``body`` once, then the client's own messages (its disconnect)."""
    sent = [False]

    async def replay() -> Message:
        if not sent[0]:
            sent[0] = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
