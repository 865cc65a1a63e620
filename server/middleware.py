"""ASGI middleware: request ids (echoed, and on every log line), one access log line per request, security
headers on every HTTP response, and a last line of defence that turns an unexpected exception into a typed JSON
error (HTTP) or a 1011 close (websocket) instead of a stack trace or a silent socket.

Security headers are defaults: a response that already carries one keeps its own. So the GraphiQL page sets the
CSP that lets it run (server/graphiql.py), and a view that wants a response cached (public persisted queries,
later) sets its own Cache-Control; everything else is `no-store` except the versioned static assets."""

from __future__ import annotations

import json
import logging
import os
import re
import time
from typing import Any

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.logging import request_id_var
from core.metrics import HTTP_REQUESTS

log = logging.getLogger("rwa.http")
_VALID_RID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_KNOWN_PATHS = {"/graphql", "/healthz", "/readyz", "/metrics", "/oauth/token"}
# the server's own ASGI send of a websocket, before any wrapping: shared subscriptions write frames to the
# connection behind it directly (server/shared_subscriptions.py)
RAW_SEND_SCOPE_KEY = "rwa.raw_send"
# set on a request's scope by `rwa serve`'s protocol when the request's body did not arrive in time and it answered
# 408 itself (server/http_protocol.py)
BODY_TIMED_OUT_SCOPE_KEY = "rwa.body_timed_out"
# Every HTTP response: no MIME sniffing (a JSON error echoing input must not render as HTML), no framing
# (clickjacking), no referrer leaking URLs, and a CSP that allows nothing (API responses are data, not pages).
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
)
# GraphQL results, errors and health answers are per caller and per moment: no shared or browser cache keeps them
NO_STORE = (b"cache-control", b"no-store")
_CACHEABLE_PREFIX = "/static/"  # GraphiQL's bundles, versioned in their URLs
_DEFAULT_HEADERS = (*SECURITY_HEADERS, NO_STORE)
_DEFAULT_NAMES = frozenset(name for name, _ in _DEFAULT_HEADERS)


_COUNTERS: dict[tuple[str, str, int], Any] = {}


def _request_counter(method: str, path_label: str, status: int) -> Any:
    """The labelled child of HTTP_REQUESTS; `labels()` validates and hashes its arguments on every call, so the
    children are kept here. Bounded: methods the server answers x known paths x HTTP status codes."""
    key = (method, path_label, status)
    child = _COUNTERS.get(key)
    if child is None:
        child = _COUNTERS[key] = HTTP_REQUESTS.labels(method[:16], path_label, str(status))
    return child


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        incoming = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"x-request-id"), None)
        rid = incoming if incoming and _VALID_RID.match(incoming) else os.urandom(16).hex()
        token = request_id_var.set(rid)
        started = time.perf_counter()
        status = {"code": 500, "sent": False}

        defaults = SECURITY_HEADERS if scope.get("path", "").startswith(_CACHEABLE_PREFIX) else _DEFAULT_HEADERS

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                status["sent"] = True
                headers = list(message.get("headers") or ())
                present = {name.lower() for name, _ in headers}
                if present.isdisjoint(_DEFAULT_NAMES):  # the usual case: one extend, no per-header test
                    headers += defaults
                else:
                    headers += [h for h in defaults if h[0] not in present]
                headers.append((b"x-request-id", rid.encode()))
                message["headers"] = headers
            await send(message)

        if scope["type"] == "websocket":
            scope[RAW_SEND_SCOPE_KEY] = send
        try:
            # a websocket's frames go straight out: wrapping every send would cost a call per delivered message
            await self.app(scope, receive, send_with_id if scope["type"] == "http" else send)
        except ClientDisconnect:
            # the client went away while its body was read, or the body timed out (the protocol answered 408):
            # nobody to answer, nothing went wrong here (nginx's 499 "client closed request" in the metrics)
            status["code"] = 408 if scope.get(BODY_TIMED_OUT_SCOPE_KEY) else 499
        except Exception:
            log.exception("unhandled error")
            if scope["type"] == "http" and not status["sent"]:
                body = json.dumps(
                    {"errors": [{"message": "Internal server error", "extensions": {"code": "INTERNAL"}}]}
                ).encode()
                await send_with_id(
                    {"type": "http.response.start", "status": 500, "headers": [(b"content-type", b"application/json")]}
                )
                await send({"type": "http.response.body", "body": body})
            elif scope["type"] == "websocket":
                # the client must not wait on a socket nobody serves: 1011 = internal error (before the handshake
                # was accepted, the server turns this close into a 403 rejection)
                try:
                    await send({"type": "websocket.close", "code": 1011})
                except Exception:  # noqa: BLE001 - already closed: nothing left to tell the client
                    pass
        finally:
            if scope["type"] == "http":
                path = scope.get("path", "")
                path_label = path if path in _KNOWN_PATHS else ("/static" if path.startswith("/static") else "other")
                _request_counter(scope.get("method", ""), path_label, status["code"]).inc()
                if log.isEnabledFor(logging.INFO):  # the line's fields cost a dict per request even when dropped
                    log.info(
                        "request",
                        extra={
                            "method": scope.get("method"),
                            "path": path,
                            "status": status["code"],
                            "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                        },
                    )
            request_id_var.reset(token)


class GraphQLFastPath:
    """`/graphql` (HTTP and websocket) straight to the GraphQL view, past Starlette's exception middleware and router
    (three layers and a route match per request, ~3% of a small query's CPU); every other path goes through them.
    Innermost of the user middleware: the request id, security headers, CORS and the last-resort error handler
    above still wrap it."""

    def __init__(self, app: ASGIApp, view: ASGIApp, path: str = "/graphql") -> None:
        self.app, self.view, self.path = app, view, path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan" and scope["path"] == scope.get("root_path", "") + self.path:
            await self.view(scope, receive, send)
            return
        await self.app(scope, receive, send)
