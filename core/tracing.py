"""OpenTelemetry tracing: API requests (ASGI), SQLAlchemy, Redis, outgoing httpx (RPC nodes, webhooks) and
dramatiq jobs, exported over OTLP/HTTP when OTEL_EXPORTER_OTLP_ENDPOINT is set.

Without the endpoint nothing is installed: no instrumentation wraps a call, no span is created, and the
opentelemetry packages are not even imported (`enabled()` is a module flag), so an untraced process pays nothing.

Jobs: the sender's context travels in the message's options (`traceparent`); the job runs in a trace of its own
whose root span links to the span that queued it (OpenTelemetry's messaging convention for async work).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter
    from sqlalchemy.ext.asyncio import AsyncEngine
    from starlette.types import ASGIApp

    from core.settings import Settings

log = logging.getLogger("rwa.tracing")
_enabled = False
_provider: Any = None
_instrumented_engines: set[int] = set()
# ASGI paths not traced (probes and scrapes would be most of the spans)
EXCLUDED_URLS = "/healthz,/readyz,/metrics"
MESSAGE_OPTION = "otel"


def enabled() -> bool:
    return _enabled


def setup(settings: Settings, *, exporter: SpanExporter | None = None, service_name: str | None = None) -> bool:
    """Install the tracer provider and the library instrumentations once per process. With `exporter` (tests:
    an InMemorySpanExporter) spans go there synchronously; otherwise OTLP when the endpoint is configured.
    Returns whether tracing is on."""
    global _enabled
    if _enabled:
        return True
    endpoint = settings.otel_exporter_otlp_endpoint
    if exporter is None and not endpoint:
        return False
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    name = service_name or settings.otel_service_name or "stablerwa"
    command = " ".join(a.rsplit("/", 1)[-1] for a in sys.argv[:3])
    provider = TracerProvider(
        resource=Resource.create(
            {"service.name": name, "process.command_line": command, "deployment.environment": settings.env.value}
        ),
        sampler=ParentBased(TraceIdRatioBased(settings.otel_traces_sampler_ratio)),
    )
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    elif endpoint:  # always set here (returned above otherwise)
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        # the exporter reads OTEL_EXPORTER_OTLP_* itself (headers, timeout, certificate): the standard names
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces")))
        trace.set_tracer_provider(provider)  # once per process, for any other instrumented library

    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    RedisInstrumentor().instrument(tracer_provider=provider)
    HTTPXClientInstrumentor().instrument(tracer_provider=provider)
    # the hot paths that run SQL on the raw asyncpg connection (resolvers/raw_sql.py); SQLAlchemy statements
    # are traced per engine (instrument_engine)
    AsyncPGInstrumentor().instrument(tracer_provider=provider)
    global _provider
    _provider, _enabled = provider, True
    log.info("tracing on", extra={"service": name, "otlp": settings.otel_exporter_otlp_endpoint or "in-process"})
    return True


def reset() -> None:
    """Undo `setup` (tests: a traced test must not leave the rest of the session traced)."""
    global _enabled, _provider
    if not _enabled:
        return
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    AsyncPGInstrumentor().uninstrument()
    RedisInstrumentor().uninstrument()
    HTTPXClientInstrumentor().uninstrument()
    SQLAlchemyInstrumentor().uninstrument()
    _instrumented_engines.clear()
    _provider.shutdown()
    _enabled, _provider = False, None


def instrument_engine(engine: AsyncEngine) -> None:
    """Spans for every statement of this engine (a no-op when tracing is off)."""
    if not _enabled or id(engine) in _instrumented_engines:
        return
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    # skip_dep_check: the instrumentation declares sqlalchemy<2.1 but only uses the engine event API, unchanged
    # in 2.1 (tests/platform/test_tracing.py checks the statement spans)
    SQLAlchemyInstrumentor().instrument(
        engine=engine.sync_engine, enable_commenter=False, tracer_provider=_provider, skip_dep_check=True
    )
    _instrumented_engines.add(id(engine))


def asgi_middleware() -> Callable[[ASGIApp], ASGIApp] | None:
    """A middleware factory for Starlette's add_middleware, or None when tracing is off."""
    if not _enabled:
        return None
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    def traced(app: ASGIApp) -> ASGIApp:
        # no span per ASGI receive/send message: they doubled the spans of every request for nothing a trace shows
        return OpenTelemetryMiddleware(
            app, excluded_urls=EXCLUDED_URLS, tracer_provider=_provider, exclude_spans=["receive", "send"]
        )

    return traced


def current_ids() -> tuple[str, str] | None:
    """(trace id, span id) in hex of the active span, for log lines; None when tracing is off or no span."""
    if not _enabled:
        return None
    from opentelemetry import trace

    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


def dramatiq_middleware() -> Any:
    """The dramatiq middleware carrying trace context through messages (None when tracing is off)."""
    if not _enabled:
        return None
    import dramatiq
    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from opentelemetry.propagate import extract, inject
    from opentelemetry.trace import Link, SpanKind, Status, StatusCode

    tracer = trace.get_tracer("rwa.jobs", tracer_provider=_provider)

    class DramatiqTracing(dramatiq.Middleware):
        """Producer: a `publish <actor>` span whose context goes into message.options["otel"]. Consumer: a
        `process <actor>` span, root of the job's own trace, linked to that producer span."""

        def __init__(self) -> None:
            self._open: dict[str, tuple[Any, Any]] = {}  # message id -> (span, context token)

        def before_enqueue(self, broker: Any, message: Any, delay: Any) -> None:
            if MESSAGE_OPTION in message.options:  # a retry re-enqueues the same message: keep its origin
                return
            with tracer.start_as_current_span(
                f"publish {message.actor_name}", kind=SpanKind.PRODUCER, attributes=_attributes(message)
            ):
                carrier: dict[str, str] = {}
                inject(carrier)
                message.options[MESSAGE_OPTION] = carrier

        def before_process_message(self, broker: Any, message: Any) -> None:
            parent = trace.get_current_span(extract(message.options.get(MESSAGE_OPTION) or {})).get_span_context()
            links = [Link(parent)] if parent.is_valid else []
            span = tracer.start_span(
                f"process {message.actor_name}",
                kind=SpanKind.CONSUMER,
                links=links,
                context=otel_context.Context(),
                attributes=_attributes(message),
            )
            token = otel_context.attach(trace.set_span_in_context(span))
            self._open[message.message_id] = (span, token)

        def after_process_message(
            self, broker: Any, message: Any, *, result: Any = None, exception: BaseException | None = None
        ) -> None:
            span, token = self._open.pop(message.message_id, (None, None))
            if span is None:
                return
            if exception is not None:
                span.record_exception(exception)
                span.set_status(Status(StatusCode.ERROR, type(exception).__name__))
            span.end()
            try:
                otel_context.detach(token)
            except ValueError:  # detached from another context (async actors): the span is ended all the same
                pass

        after_skip_message = after_process_message

    return DramatiqTracing()


def _attributes(message: Any) -> dict[str, Any]:
    return {
        "messaging.system": "dramatiq",
        "messaging.destination.name": message.queue_name,
        "messaging.message.id": message.message_id,
        "rwa.actor": message.actor_name,
        "messaging.message.retry": int(message.options.get("retries", 0)),
    }
