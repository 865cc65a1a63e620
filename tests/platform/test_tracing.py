"""OpenTelemetry: a `placeOrder` request traced from the ASGI request through its SQL to the Redis publish of its
market data, a job's trace linked to the request that queued it (context carried in the message), the trace id on
every JSON log line, and nothing installed at all when OTEL_EXPORTER_OTLP_ENDPOINT is unset."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from core import tracing
from core.logging import JsonFormatter
from core.settings import Settings
from tests.trading.factories import make_market, make_trader

PLACE = (
    "mutation($i: PlaceOrderInput!) { placeOrder(input: $i) { order { id status filledQuantity } errors { code } } }"
)


class Lines(logging.Handler):
    """JSON log lines as the process writes them."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.lines: list[dict] = []  # type: ignore[type-arg]

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@pytest.fixture
def spans(settings: Settings, engine) -> Iterator[InMemorySpanExporter]:  # type: ignore[no-untyped-def]
    exporter = InMemorySpanExporter()
    assert tracing.setup(settings, exporter=exporter)
    tracing.instrument_engine(engine)  # the test database's engine (the app's sessions are bound to it)
    try:
        yield exporter
    finally:
        tracing.reset()


@pytest.fixture
def log_lines() -> Iterator[Lines]:
    handler, root = Lines(), logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def _hex(trace_id: int) -> str:
    return format(trace_id, "032x")


async def test_place_order_trace_from_request_to_database_to_publish(
    spans,
    log_lines,
    app_client,
    make_user,  # type: ignore[no-untyped-def]
    session_factory,
) -> None:
    m = await make_market(session_factory)
    seller, buyer = await make_user(), await make_user()
    await make_trader(session_factory, m, user_id=seller.id, tokens="100")
    await make_trader(session_factory, m, user_id=buyer.id, cash="1000")
    async with app_client() as client:

        async def place(user, side: str) -> dict:  # type: ignore[no-untyped-def,type-arg]
            body = {
                "query": PLACE,
                "operationName": None,
                "variables": {
                    "i": {
                        "marketId": str(m.market_id),
                        "side": side,
                        "type": "LIMIT",
                        "quantity": "10",
                        "price": "2.50",
                    }
                },
            }
            resp = await client.post("/graphql", json=body, headers={"Authorization": f"Bearer {user.token}"})
            return resp.json()["data"]["placeOrder"]["order"]

        assert (await place(seller, "SELL"))["status"] == "NEW"
        spans.clear()
        log_lines.lines.clear()
        assert (await place(buyer, "BUY"))["status"] == "FILLED"  # a trade: market data is published

    finished = spans.get_finished_spans()
    server = [s for s in finished if s.kind is SpanKind.SERVER]
    assert (
        len(server) == 1
        and server[0].attributes["http.route" if "http.route" in server[0].attributes else "http.target"] == "/graphql"
    )
    trace_id = server[0].context.trace_id
    in_trace = [s for s in finished if s.context.trace_id == trace_id]
    sql = [s for s in in_trace if s.attributes.get("db.system") == "postgresql"]
    statements = " ".join(str(s.attributes.get("db.statement", "")) for s in sql)
    assert "INSERT INTO orders" in statements and "INSERT INTO trades" in statements, statements[:500]
    redis = [s for s in in_trace if s.attributes.get("db.system") == "redis"]
    # market data goes out as one EVALSHA of the publish script per round trip (a PUBLISH pipeline where scripts are
    # refused: resolvers/trading/market_data.py); this request uses no other script
    published = [
        s for s in redis if s.name in ("EVALSHA", "EVAL") or "PUBLISH" in str(s.attributes.get("db.statement"))
    ]
    assert published, [s.name for s in redis]
    # every span of the request hangs under the request's span (one tree, not orphans)
    ids = {s.context.span_id for s in in_trace}
    assert all(s.parent is not None and s.parent.span_id in ids for s in in_trace if s is not server[0])
    # every JSON log line written while serving it carries its trace id
    served = [line for line in log_lines.lines if line.get("request_id")]
    assert served and all(line["trace_id"] == _hex(trace_id) for line in served), served


def test_job_trace_linked_to_the_request_that_queued_it(spans, log_lines) -> None:  # type: ignore[no-untyped-def]
    broker = StubBroker()
    broker.add_middleware(tracing.dramatiq_middleware())
    broker.emit_after("process_boot")
    seen: list[str] = []

    @dramatiq.actor(broker=broker, queue_name="traced", max_retries=0)
    def settle(ref: str) -> None:
        logging.getLogger("rwa.jobs.test").info("settling %s", ref)
        seen.append(ref)

    tracer = trace.get_tracer("test", tracer_provider=tracing._provider)
    with tracer.start_as_current_span("POST /graphql", kind=SpanKind.SERVER) as request:
        settle.send("trade-1")
    worker = dramatiq.Worker(broker, worker_timeout=50)
    worker.start()
    try:
        broker.join("traced", fail_fast=True)
        worker.join()
    finally:
        worker.stop()
    assert seen == ["trade-1"]
    finished = spans.get_finished_spans()
    publish = next(s for s in finished if s.name == "publish settle")
    process = next(s for s in finished if s.name == "process settle")
    request_trace = request.get_span_context().trace_id
    assert publish.kind is SpanKind.PRODUCER and publish.context.trace_id == request_trace
    assert publish.parent.span_id == request.get_span_context().span_id
    # the job is a trace of its own, linked to the span that queued it
    assert process.kind is SpanKind.CONSUMER and process.parent is None and process.context.trace_id != request_trace
    assert [(link.context.trace_id, link.context.span_id) for link in process.links] == [
        (request_trace, publish.context.span_id)
    ]
    assert process.attributes["messaging.system"] == "dramatiq"
    job_lines = [line for line in log_lines.lines if line["logger"] == "rwa.jobs.test"]
    assert job_lines and job_lines[0]["trace_id"] == _hex(process.context.trace_id)


def test_no_endpoint_installs_nothing() -> None:
    """Untraced processes pay nothing: no instrumentation imported (redis imports
    the SDK for its own metrics), no call wrapped, no
    middleware, no wrapped call."""
    code = (
        "import sys; from core.settings import Settings; from core import tracing; from server.app import create_app;"
        "s = Settings(RWA_ENV='test', DATABASE_URL='postgresql+asyncpg://u@127.0.0.1:1/x', REDIS_URL='redis://127.0.0.1:1');"
        "app = create_app(s); import jobs.broker;"
        "assert not tracing.enabled();"
        "loaded = [m for m in sys.modules if m.startswith('opentelemetry.instrumentation')];"
        "assert not loaded, loaded[:5];"
        "import asyncpg.connection, redis.asyncio, httpx;"
        "assert not any(hasattr(f, '__wrapped__') for f in (asyncpg.connection.Connection.fetch,"
        " redis.asyncio.Redis.execute_command, httpx.AsyncClient.send));"
        "assert 'OpenTelemetry' not in repr(app.user_middleware); print('ok')"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


async def test_outgoing_rpc_call_is_a_client_span_and_carries_the_trace(spans) -> None:  # type: ignore[no-untyped-def]
    """httpx calls (JSON-RPC to the nodes, webhook deliveries) are spans of the caller's trace, and the node
    receives the trace context (W3C traceparent)."""
    import http.server
    import threading

    from chains.rpc import RpcClient

    received: list[str | None] = []

    class Node(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            received.append(self.headers.get("traceparent"))
            reply = json.dumps({"jsonrpc": "2.0", "id": body["id"], "result": "0x2a"}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Node)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        client = RpcClient([f"http://127.0.0.1:{server.server_address[1]}"], max_retries=0)
        tracer = trace.get_tracer("test", tracer_provider=tracing._provider)
        with tracer.start_as_current_span("index step") as parent:
            assert await client.call("eth_blockNumber") == "0x2a"
        await client.aclose()
    finally:
        server.shutdown()
        server.server_close()
    calls = [s for s in spans.get_finished_spans() if s.kind is SpanKind.CLIENT and s.name.startswith("POST")]
    assert len(calls) == 1 and calls[0].context.trace_id == parent.get_span_context().trace_id
    trace_hex = _hex(parent.get_span_context().trace_id)
    assert received and received[0] is not None and received[0].split("-")[1] == trace_hex
