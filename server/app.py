"""The ASGI application: /graphql (POST, GraphiQL on GET, graphql-transport-ws), /healthz, /readyz, /metrics."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from core import tracing
from core.logging import configure_logging
from core.services import Services, build_services
from core.settings import Settings, get_settings
from resolvers.trading import sequencer
from schema import build_schema
from server.cors import OriginGatedCORS
from server.graphql_view import GraphQLView
from server.health import healthz, metrics, readyz, sample_pool
from server.http_protocol import TIMEOUTS_STATE_KEY, RequestTimeouts
from server.middleware import GraphQLFastPath, RequestContextMiddleware
from server.oauth_token import token_endpoint
from server.reports_http import report_routes

# Browsers on an allowed origin (CORS_ORIGINS) may send these; credentials travel in the Authorization header, never
# in cookies, so no Access-Control-Allow-Credentials.
CORS_METHODS = ["GET", "POST", "OPTIONS"]
CORS_HEADERS = [
    "Authorization",
    "Content-Type",
    "X-API-Key",
    "X-Request-ID",
    "Apollo-Require-Preflight",
    "X-Apollo-Operation-Name",
]

log = logging.getLogger("rwa.server")
GC_YOUNG_THRESHOLD = 10_000  # allocations between young collections (CPython's default: 700); see lifespan


def _graphiql(settings: Settings) -> tuple[str | None, list[BaseRoute]]:
    if not settings.graphiql:
        return None, []
    try:
        from server.graphiql import graphiql_html, static_mount
    except ImportError:  # GraphiQL page not available in this build
        return None, []
    return graphiql_html(explorer=settings.graphiql_explorer), [static_mount()]


class RwaApp(Starlette):
    """Starlette, with HTTP requests to /graphql handed straight to `graphql_http` (RequestContextMiddleware and CORS
    around the view, the same instances' configuration as in the middleware stack): past Starlette's own call,
    ServerErrorMiddleware (with its send wrapper) and GraphQLFastPath: three layers per request. What those add
    for such a request is nothing: RequestContextMiddleware answers any exception with a typed 500 itself, and
    uvicorn answers one raised past it. Off (None) when tracing wraps the app or middleware is added later."""

    graphql_http: ASGIApp | None = None
    graphql_path = "/graphql"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        fast = self.graphql_http
        if (
            fast is not None
            and scope["type"] == "http"
            and scope["path"] == scope.get("root_path", "") + self.graphql_path
        ):
            scope["app"] = self
            await fast(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

    def add_middleware(self, middleware_class: Any, *args: Any, **kwargs: Any) -> None:
        self.graphql_http = None  # a layer added after create_app sees every request
        super().add_middleware(middleware_class, *args, **kwargs)


async def _drain_trading(timeout: float) -> None:
    """The order sequencer's work in flight, committed and published within `timeout` seconds, or a warning."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    if not await sequencer.drain(timeout):
        log.warning(
            "shutdown: trading writes or market data still in flight after SHUTDOWN_DRAIN_TIMEOUT_S=%.1fs; "
            "closing anyway (their events may not be published)",
            timeout,
            extra={"waited_s": round(loop.time() - started, 3)},
        )


def create_app(settings: Settings | None = None, services: Services | None = None) -> Starlette:
    """`services` is injected by tests (transaction-bound sessions); otherwise built from settings at startup."""
    settings = settings or (services.settings if services else get_settings())
    settings.check_production()
    tracing.setup(settings)  # OTEL_EXPORTER_OTLP_ENDPOINT unset: nothing installed (core/tracing.py)
    owns_services = services is None
    services = services or build_services(settings)
    schema = build_schema(settings)
    graphiql_html, static_routes = _graphiql(settings)
    view = GraphQLView(schema, services, graphiql_html)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        # injected services (tests) are started by whoever built them
        await (services.start() if owns_services else services.open_read_pool())
        # Everything allocated at startup (schema, modules) is permanent: keep it out of the collector's
        # generations, so full collections stay short (a ~250 ms pause otherwise dominated p99).
        gc.collect()
        gc.freeze()
        # A young collection every 700 allocations ran every couple of requests, each walking the objects of the
        # requests in flight (promoting them, to be walked again): ~3-7% of a small query's instructions. Garbage
        # without cycles is freed by reference counting regardless; only cyclic garbage waits longer. Peak RSS
        # under bench.api_me levels off at ~146 MB at 10,000 (~140 at 700, ~147.5 at 20,000; target < 150).
        gc_thresholds = gc.get_threshold()
        gc.set_threshold(GC_YOUNG_THRESHOLD, *gc_thresholds[1:])
        pool_sampler = asyncio.create_task(sample_pool(services))  # pool gauges for the ops port's /metrics
        log.info(
            "api started",
            extra={
                "env": settings.env.value,
                "graphiql": graphiql_html is not None,
                "introspection": settings.introspection,
            },
        )
        try:
            # uvicorn's lifespan state: what `rwa serve`'s protocol bounds each request's head and body with
            # (server/http_protocol.py); requests see it in scope["state"] too
            yield {TIMEOUTS_STATE_KEY: RequestTimeouts.of(settings)}
        finally:
            pool_sampler.cancel()
            gc.set_threshold(*gc_thresholds)
            try:
                # uvicorn has finished (or cut) the requests: an order batch or cancel they started may still be
                # committing, its events queued for Redis. Let them commit and publish before the engine and Redis
                # close (injected services too: their owner closes them after this).
                await _drain_trading(settings.shutdown_drain_timeout_s)
            finally:
                if owns_services:
                    await services.aclose()
                log.info("api stopped")

    routes: list[BaseRoute] = [
        # every method reaches the view, which answers the unsupported ones with a typed JSON 405
        Route("/graphql", view, methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]),
        WebSocketRoute("/graphql", view),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        # /metrics lives on the ops port (core/ops_server.py); on the public port only when asked
        *([Route("/metrics", metrics)] if settings.metrics_on_api_port else []),
        *report_routes(services),  # CSV/PDF downloads, authorized like /graphql (server/reports_http.py)
        # OAuth 2.0 client-credentials grant for partners' clients (server/oauth_token.py)
        Route("/oauth/token", token_endpoint(services), methods=["GET", "POST", "PUT", "DELETE"]),
        *static_routes,
    ]
    app = RwaApp(routes=routes, lifespan=lifespan)
    app.state.services = services
    app.state.schema = schema
    app.state.graphql_view = view
    app.add_middleware(GraphQLFastPath, view=view)  # innermost: see server/middleware.py
    cors: dict[str, Any] = dict(
        allow_origins=settings.allowed_origins,
        allow_methods=CORS_METHODS,
        allow_headers=CORS_HEADERS,
        expose_headers=["X-Request-ID", "Retry-After"],
        max_age=600,
    )
    if settings.allowed_origins:  # inside RequestContextMiddleware: preflight answers get the security headers too
        app.add_middleware(OriginGatedCORS, **cors)
    app.add_middleware(RequestContextMiddleware)
    if (traced := tracing.asgi_middleware()) is not None:  # outermost: the request span covers everything
        app.add_middleware(traced)
    else:  # the same layers around the view, for RwaApp's /graphql HTTP requests
        inner: Any = OriginGatedCORS(view, **cors) if settings.allowed_origins else view
        app.graphql_http = RequestContextMiddleware(inner)
    return app


def create_app_from_env() -> Starlette:
    """uvicorn --factory entry point for worker processes (settings and URLs come from the environment)."""
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    return create_app(settings)
