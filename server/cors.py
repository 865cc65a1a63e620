"""CORS for browsers, at no cost to the callers that are not browsers.

Starlette's CORSMiddleware builds a `Headers` object and wraps `send` for every request, even one without an
`Origin` header (server-to-server clients, mobile apps, the load balancer's probes), where CORS has nothing to
say. This gate looks for the header in the raw ASGI headers and hands only cross-origin requests (and preflights,
which always carry it) to CORSMiddleware."""

from __future__ import annotations

from collections.abc import Collection

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send


class OriginGatedCORS:
    def __init__(
        self,
        app: ASGIApp,
        *,
        allow_origins: Collection[str],
        allow_methods: Collection[str],
        allow_headers: Collection[str],
        expose_headers: Collection[str] = (),
        max_age: int = 600,
    ) -> None:
        self.app = app
        self.cors = CORSMiddleware(
            app,
            allow_origins=allow_origins,
            allow_methods=allow_methods,
            allow_headers=allow_headers,
            expose_headers=expose_headers,
            max_age=max_age,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for name, _ in scope["headers"]:
                if name == b"origin":
                    await self.cors(scope, receive, send)
                    return
        await self.app(scope, receive, send)
