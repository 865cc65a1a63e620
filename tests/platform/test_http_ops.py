"""What platform operators rely on: request ids (header and every JSON log line), /healthz, /readyz naming the
failing dependency, /metrics content, and typed JSON errors (never a 500 or a stack trace) for malformed requests."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import logging
import re
import socket
import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from core.db import create_engine, create_session_factory
from core.logging import JsonFormatter
from core.redis import create_redis
from core.services import Services
from server.app import create_app
from tests.platform.served import serving, websocket


def closed_port() -> int:
    """A port nothing listens on (bound then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class JsonLogs:
    def __init__(self) -> None:
        self.stream = io.StringIO()
        self.handler = logging.StreamHandler(self.stream)
        self.handler.setFormatter(JsonFormatter())

    def lines(self) -> list[dict]:  # type: ignore[type-arg]
        # every line must be one JSON object: json.loads fails the test otherwise
        return [json.loads(line) for line in self.stream.getvalue().splitlines()]


@pytest.fixture
def json_logs() -> Iterator[JsonLogs]:
    logs = JsonLogs()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(logs.handler)
    root.setLevel(logging.INFO)
    try:
        yield logs
    finally:
        root.removeHandler(logs.handler)
        root.setLevel(old_level)


# --- request ids ----------------------------------------------------------------------------------------------


async def test_request_id_is_echoed(client) -> None:  # type: ignore[no-untyped-def]
    resp = await client.get("/healthz", headers={"X-Request-ID": "abc-123.DEF:9_x"})
    assert resp.headers["x-request-id"] == "abc-123.DEF:9_x"


async def test_request_id_is_generated(client) -> None:  # type: ignore[no-untyped-def]
    first = (await client.get("/healthz")).headers["x-request-id"]
    second = (await client.post("/graphql", json={"query": "{ __typename }"})).headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", first) and re.fullmatch(r"[0-9a-f]{32}", second)
    assert first != second


@pytest.mark.parametrize("junk", ["x" * 65, "bad id with spaces", "<script>", "id\tTAB", "ünïcode", "a;b=c"])
async def test_junk_request_id_is_replaced(client, junk: str) -> None:  # type: ignore[no-untyped-def]
    resp = await client.get("/healthz", headers={"X-Request-ID": junk.encode("utf-8")})
    rid = resp.headers["x-request-id"]
    assert rid != junk and re.fullmatch(r"[0-9a-f]{32}", rid)


async def test_request_id_on_every_log_line_of_the_request(app_client, probe_schema, json_logs) -> None:  # type: ignore[no-untyped-def]
    query = "query($t: String!) { probeLog(tag: $t) }"
    async with app_client() as c:
        # two requests interleaved on one event loop: each line must carry its own request's id
        responses = await asyncio.gather(
            *(
                c.post(
                    "/graphql", json={"query": query, "variables": {"t": tag}}, headers={"X-Request-ID": f"rid-{tag}"}
                )
                for tag in ("one", "two")
            )
        )
    assert [r.json()["data"]["probeLog"] for r in responses] == ["one", "two"]
    lines = json_logs.lines()
    for tag in ("one", "two"):
        probe_lines = [line for line in lines if line.get("tag") == tag]
        assert [line["msg"] for line in probe_lines] == ["probe before", "probe after"]
        assert all(line["request_id"] == f"rid-{tag}" for line in probe_lines), probe_lines
        access = [line for line in lines if line.get("msg") == "request" and line.get("request_id") == f"rid-{tag}"]
        assert len(access) == 1 and access[0]["status"] == 200 and access[0]["path"] == "/graphql"
    for line in lines:
        assert {"ts", "level", "logger", "msg"} <= line.keys()


async def test_masked_error_log_line_carries_the_request_id(app_client, probe_schema, json_logs) -> None:  # type: ignore[no-untyped-def]
    async with app_client() as c:
        resp = await c.post("/graphql", json={"query": "{ probeCrash }"}, headers={"X-Request-ID": "crash-1"})
    assert resp.json()["errors"][0]["extensions"]["code"] == "INTERNAL"
    errors = [line for line in json_logs.lines() if line["level"] == "ERROR"]
    assert errors and all(line["request_id"] == "crash-1" for line in errors)
    assert any("hunter2" in line.get("exc", "") for line in errors), "the traceback goes to the log, not the client"


# --- health and readiness -------------------------------------------------------------------------------------


async def test_healthz(client) -> None:  # type: ignore[no-untyped-def]
    resp = await client.get("/healthz")
    assert resp.status_code == 200 and resp.json() == {"status": "ok"}


async def ready(services: Services) -> httpx.Response:
    app = create_app(services.settings, services)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        return await c.get("/readyz")


async def test_readyz_ok(services) -> None:  # type: ignore[no-untyped-def]
    resp = await ready(services)
    assert resp.status_code == 200 and resp.json()["status"] == "ready"


async def test_readyz_names_redis(services) -> None:  # type: ignore[no-untyped-def]
    dead_redis = create_redis(f"redis://127.0.0.1:{closed_port()}/0")
    try:
        resp = await ready(dataclasses.replace(services, redis=dead_redis))
    finally:
        await dead_redis.aclose()
    assert resp.status_code == 503
    assert resp.json()["failing"] == ["redis"]


async def test_readyz_names_postgres(services) -> None:  # type: ignore[no-untyped-def]
    engine = create_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{closed_port()}/postgres", pool_size=1)
    dead = create_session_factory(engine)
    try:
        resp = await ready(dataclasses.replace(services, session_factory=dead, read_session_factory=dead))
    finally:
        await engine.dispose()
    assert resp.status_code == 503
    assert resp.json()["failing"] == ["postgres"]


async def test_readyz_names_both(services) -> None:  # type: ignore[no-untyped-def]
    engine = create_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{closed_port()}/postgres", pool_size=1)
    dead_db = create_session_factory(engine)
    dead_redis = create_redis(f"redis://127.0.0.1:{closed_port()}/0")
    try:
        resp = await ready(
            dataclasses.replace(services, session_factory=dead_db, read_session_factory=dead_db, redis=dead_redis)
        )
    finally:
        await dead_redis.aclose()
        await engine.dispose()
    assert resp.status_code == 503
    assert sorted(resp.json()["failing"]) == ["postgres", "redis"]


# --- metrics --------------------------------------------------------------------------------------------------


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def test_metrics(services, database_url: str) -> None:  # type: ignore[no-untyped-def]
    engine = create_engine(database_url, pool_size=3)
    settings = services.settings.model_copy(update={"metrics_on_api_port": True})
    svc = dataclasses.replace(services, engine=engine, settings=settings)
    app = create_app(settings, svc)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as c:
            before = samples((await c.get("/metrics")).text)
            for _ in range(3):
                await c.post("/graphql", json={"query": "query MetricsProbe { __typename }"})
            await c.post("/graphql", json={"query": "query MetricsProbeBad { nope }"})
            resp = await c.get("/metrics")
    finally:
        await engine.dispose()
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain")
    after = samples(resp.text)

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert delta("rwa_graphql_requests_total", operation="MetricsProbe", operation_type="query") == 3
    assert delta("rwa_graphql_errors_total", code="BAD_USER_INPUT") >= 1
    assert delta("rwa_graphql_request_seconds_count", operation="MetricsProbe") == 3
    assert delta("rwa_graphql_request_seconds_bucket", operation="MetricsProbe", le="+Inf") == 3
    assert after[("rwa_db_pool_size", ())] == 3
    assert ("rwa_db_pool_connections_in_use", ()) in after
    assert delta("rwa_http_requests_total", method="POST", path="/graphql", status="200") == 4


async def test_metrics_are_not_on_the_api_port_by_default(client) -> None:  # type: ignore[no-untyped-def]
    resp = await client.get("/metrics")
    assert resp.status_code == 404 and "rwa_graphql" not in resp.text


async def test_operation_name_labels_are_bounded(client, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from core.ops_server import metrics_payload
    from schema.extensions import OperationLifecycle as OperationMetrics

    monkeypatch.setattr(OperationMetrics, "_known_names", set(OperationMetrics._known_names))
    monkeypatch.setattr(OperationMetrics, "max_operation_names", len(OperationMetrics._known_names) + 2)
    tag = uuid.uuid4().hex[:8]
    await client.post("/graphql", json={"query": f"query Invalid{tag} {{ nope }}"})
    for i in range(5):
        await client.post("/graphql", json={"query": f"query Name{tag}x{i} {{ __typename }}"})
    text = metrics_payload()[0].decode()  # what the ops port serves (core/ops_server.py)
    assert f"Invalid{tag}" not in text, "a document that failed validation must not create a label"
    recorded = [i for i in range(5) if f'operation="Name{tag}x{i}"' in text]
    assert recorded == [0, 1]
    assert 'rwa_graphql_requests_total{operation="other",operation_type="query"}' in text


# --- malformed requests ---------------------------------------------------------------------------------------


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    """A body without Content-Length (sent chunked)."""
    for part in parts:
        yield part


MALFORMED = {
    "invalid json": dict(
        method="POST", content=b'{"query": "{ __typename }"', headers={"content-type": "application/json"}
    ),
    "json array": dict(method="POST", content=b"[1, 2]", headers={"content-type": "application/json"}),
    "json null": dict(method="POST", content=b"null", headers={"content-type": "application/json"}),
    "json string": dict(method="POST", content=b'"{ __typename }"', headers={"content-type": "application/json"}),
    "missing query": dict(method="POST", json={"variables": {}}),
    "query not a string": dict(method="POST", json={"query": 42}),
    "variables not an object": dict(method="POST", json={"query": "{ __typename }", "variables": [1]}),
    "unknown operation name": dict(method="POST", json={"query": "query A { __typename }", "operationName": "B"}),
    "several operations, no operation name": dict(method="POST", json={"query": "query A { me { id } } query B { x }"}),
    "fragments only": dict(method="POST", json={"query": "fragment F on Query { __typename }"}),
    "wrong content type": dict(method="POST", content=b"{ __typename }", headers={"content-type": "text/plain"}),
    "no content type": dict(method="POST", content=b'{"query": "{ __typename }"}'),
    "form body": dict(method="POST", data={"query": "{ __typename }"}),
    "bad multipart": dict(
        method="POST", files={"operations": (None, "not json")}, headers={"apollo-require-preflight": "true"}
    ),
    "not utf-8": dict(method="POST", content=b'{"query": "\xff\xfe"}', headers={"content-type": "application/json"}),
    "GET with query params": dict(method="GET", params={"query": "{ __typename }"}),
    "GET mutation": dict(method="GET", params={"query": "mutation { logout { ok } }"}),
    "PUT": dict(method="PUT", json={"query": "{ __typename }"}),
    "huge variables": dict(
        method="POST",
        json={
            "query": "query($s: String) { __typename }",
            "variables": {"s": "x" * 3_000_000, "n": list(range(100_000))},
        },
    ),
    "huge chunked body": dict(
        method="POST",
        content=lambda: chunks(b'{"query": "{ __typename }", "variables": {"s": "', *[b"x" * 100_000] * 30, b'"}}'),
        headers={"content-type": "application/json"},
    ),
    "deeply nested variables": dict(
        method="POST",
        content=b'{"query": "{ __typename }", "variables": {"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}",
        headers={"content-type": "application/json"},
    ),
    # json.loads refuses integers of more than 4300 digits with a ValueError that is not a JSONDecodeError: 500
    "integer of 5000 digits": dict(
        method="POST",
        content=b'{"query": "{ __typename }", "variables": {"n": ' + b"9" * 5000 + b"}}",
        headers={"content-type": "application/json"},
    ),
    "GET integer of 5000 digits": dict(
        method="GET",
        params={
            "extensions": '{"persistedQuery": {"version": 1, "sha256Hash": "' + "a" * 64 + '"}}',
            "variables": "9" * 5000,
        },
    ),
    "multipart integer of 5000 digits": dict(
        method="POST",
        files={
            "operations": (None, '{"query": "{ __typename }", "variables": {"n": ' + "9" * 5000 + "}}"),
            "map": (None, "{}"),
        },
        headers={"apollo-require-preflight": "true"},
    ),
    "subscription over http": dict(method="POST", json={"query": "subscription { __typename }"}),
    # Python's json took these (not JSON): inside a JSON scalar they reached jsonb and came back INTERNAL
    **{
        f"{token} in variables": dict(
            method="POST",
            content=b'{"query": "{ __typename }", "variables": {"m": {"a": ' + token.encode() + b"}}}",
            headers={"content-type": "application/json"},
        )
        for token in ("NaN", "Infinity", "-Infinity", "1e999", "-1E400")
    },
    "GET NaN in variables": dict(
        method="GET",
        params={
            "extensions": '{"persistedQuery": {"version": 1, "sha256Hash": "' + "a" * 64 + '"}}',
            "variables": '{"a": NaN}',
        },
    ),
    # request.form() refused these with Starlette's plain-text 400
    "multipart without boundary": dict(
        method="POST",
        content=b"xx",
        headers={"content-type": "multipart/form-data", "apollo-require-preflight": "true"},
    ),
    "garbage multipart": dict(
        method="POST",
        content=b"garbage",
        headers={"content-type": "multipart/form-data; boundary=abc", "apollo-require-preflight": "true"},
    ),
    "OPTIONS": dict(method="OPTIONS"),  # the route did not list it: plain-text 405
    # strawberry walks each multipart `map` path into the operations catching only KeyError: these were HTTP 500
    **{
        f"multipart map {name}": dict(
            method="POST",
            files={
                "operations": (None, json.dumps({"query": "{ __typename }", "variables": variables})),
                "map": (None, json.dumps({"0": [path]})),
                "0": ("a.pdf", b"%PDF-1.7"),
            },
            headers={"apollo-require-preflight": "true"},
        )
        for name, variables, path in (
            ("index past a list's end", {"files": []}, "variables.files.5"),
            ("path through a string", {"a": "s"}, "variables.a.b"),
            ("path through a number", {"a": 1}, "variables.a.b.c"),
            ("non-numeric list index", {"files": [None]}, "variables.files.x"),
            ("path not a string", {"a": None}, 7),
        )
    },
}


async def test_body_limit_is_a_setting(app_client) -> None:  # type: ignore[no-untyped-def]
    body = {"query": "query($s: String) { __typename }", "variables": {"s": "x" * 2000}}
    async with app_client(MAX_REQUEST_BYTES=1000) as c:
        small = await c.post("/graphql", json={"query": "{ __typename }"})
        big = await c.post("/graphql", json=body)
    assert small.json()["data"] == {"__typename": "Query"}
    assert big.status_code == 413
    assert big.json()["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "maxBytes": 1000}


async def test_moderate_nesting_is_accepted(client) -> None:  # type: ignore[no-untyped-def]
    nested: object = "leaf"
    for _ in range(30):
        nested = [nested, {"k": "]]]}}}"}]  # brackets inside strings do not count
    resp = await client.post("/graphql", json={"query": "{ __typename }", "variables": {"w": nested}})
    assert resp.json()["data"] == {"__typename": "Query"}, resp.json()


@pytest.mark.parametrize("case", list(MALFORMED))
async def test_malformed_requests_get_typed_json_errors(client, case: str) -> None:  # type: ignore[no-untyped-def]
    kwargs = dict(MALFORMED[case])
    method = kwargs.pop("method")
    if callable(kwargs.get("content")):  # a fresh generator per run
        kwargs["content"] = kwargs["content"]()
    resp = await client.request(method, "/graphql", **kwargs)
    assert resp.status_code < 500, (resp.status_code, resp.text[:500])
    assert "Traceback" not in resp.text and 'File "' not in resp.text
    assert resp.headers["content-type"].startswith("application/json"), resp.headers["content-type"]
    body = resp.json()
    errors = body.get("errors")
    assert errors, body
    for error in errors:
        assert error["extensions"]["code"] in {"BAD_USER_INPUT", "QUERY_TOO_COMPLEX", "NOT_FOUND"}, error


async def test_several_operations_need_an_operation_name(client) -> None:  # type: ignore[no-untyped-def]
    """GraphQL spec, GetOperation: without operationName a document must hold exactly one operation. The first one
    used to run: "mutation Out { logout } query Me { me }" logged the caller out."""
    registered = await client.post(
        "/graphql",
        json={
            "query": 'mutation($e: String!) { register(input: {email: $e, password: "s3cure-passphrase"}) '
            "{ session { accessToken } } }",
            "variables": {"e": f"ops-{uuid.uuid4().hex[:10]}@example.com"},
        },
    )
    auth = {"authorization": "Bearer " + registered.json()["data"]["register"]["session"]["accessToken"]}
    both = "mutation Out { logout { ok } } query Me { me { id } }"
    refused = await client.post("/graphql", json={"query": both}, headers=auth)
    assert refused.status_code == 400, refused.text
    [error] = refused.json()["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT" and "operationName" in error["message"], error
    me = await client.post("/graphql", json={"query": both, "operationName": "Me"}, headers=auth)
    assert me.status_code == 200 and me.json()["data"]["me"]["id"], me.text  # still signed in
    alone = await client.post("/graphql", json={"query": "query Me { me { id } }"}, headers=auth)
    assert alone.json()["data"]["me"]["id"] == me.json()["data"]["me"]["id"]  # one operation: no name needed


async def test_several_operations_over_websocket_need_an_operation_name(services) -> None:  # type: ignore[no-untyped-def]
    app = create_app(services.settings, services)
    async with serving(app) as url, websocket(url) as ws:
        await ws.send_json({"type": "connection_init"})
        assert (await ws.receive_json())["type"] == "connection_ack"
        query = "mutation Out { logout { ok } } query Me { __typename }"
        await ws.send_json({"id": "1", "type": "subscribe", "payload": {"query": query}})
        frame = await ws.receive_json()
        assert frame["id"] == "1" and frame["type"] in {"next", "error"}, frame
        errors = frame["payload"]["errors"] if frame["type"] == "next" else frame["payload"]
        assert [e["extensions"]["code"] for e in errors] == ["BAD_USER_INPUT"], frame
        assert "operationName" in errors[0]["message"], frame
        await ws.send_json({"id": "2", "type": "subscribe", "payload": {"query": query, "operationName": "Me"}})
        frame = await ws.receive_json()
        assert frame["type"] == "next" and frame["payload"]["data"] == {"__typename": "Query"}, frame


async def test_websocket_rejects_bad_messages_without_crashing(services) -> None:  # type: ignore[no-untyped-def]
    """graphql-transport-ws decodes messages with the view's decode_json: bad ones close the socket with 4400."""
    app = create_app(services.settings, services)
    nested = '{"type": "ping", "payload": {"a": ' + "[" * 100_000 + "]" * 100_000 + "}}"
    shapes = (
        "[1, 2]",
        '"ping"',
        '{"id": "1", "type": "subscribe", "payload": "x"}',  # crashed the handler
        '{"id": "1", "type": "subscribe", "payload": {"query": 5}}',
        '{"id": "1", "type": "subscribe", "payload": {"query": "subscription { __typename }", "variables": [1]}}',
        '{"type": "ping", "payload": {"a": "\\ud800"}}',
        '{"type": "ping", "payload": {"n": ' + "9" * 5000 + "}}",  # closed 1011, a traceback in the log
    )
    async with serving(app) as url:
        for bad in (nested, "not json", *shapes):
            async with websocket(url) as ws:
                await ws.send_json({"type": "connection_init"})
                assert (await ws.receive_json())["type"] == "connection_ack"
                await ws.send_json({"type": "ping"})
                assert (await ws.receive_json())["type"] == "pong"
                await ws.send_text(bad)
                assert await ws.close_code() == 4400, bad[:80]


async def test_queries_over_websocket_get_codes_and_masking(services, probe_schema) -> None:  # type: ignore[no-untyped-def]
    """A query or mutation sent over graphql-transport-ws is streamed: its errors had no extensions.code, and an
    unexpected exception's message reached the client unmasked."""
    app = create_app(services.settings, services)
    async with serving(app) as url, websocket(url) as ws:
        await ws.send_json({"type": "connection_init"})
        assert (await ws.receive_json())["type"] == "connection_ack"
        for op_id, query, code in (
            ("1", "{ me { id } }", "UNAUTHENTICATED"),
            ("2", "mutation { logout { ok } }", "UNAUTHENTICATED"),
            ("3", "{ probeCrash }", "INTERNAL"),
        ):
            await ws.send_json({"id": op_id, "type": "subscribe", "payload": {"query": query}})
            frame = await ws.receive_json()
            assert frame["id"] == op_id and frame["type"] == "next", frame
            assert [e["extensions"]["code"] for e in frame["payload"]["errors"]] == [code], frame
            assert await ws.receive_json() == {"id": op_id, "type": "complete"}
        assert "hunter2" not in str(frame) and frame["payload"]["errors"][0]["message"] == "Internal server error"


async def test_websocket_handler_crash_closes_with_1011() -> None:
    """An exception escaping a websocket handler closes the socket with 1011 instead of leaving the client waiting."""
    from starlette.applications import Starlette
    from starlette.routing import WebSocketRoute
    from starlette.websockets import WebSocket

    from server.middleware import RequestContextMiddleware

    async def crashing(ws: WebSocket) -> None:
        await ws.accept()
        await ws.receive_text()
        raise RuntimeError("handler bug")

    app = RequestContextMiddleware(Starlette(routes=[WebSocketRoute("/ws", crashing)]))
    async with serving(app) as url, websocket(url, "/ws", graphql=False) as ws:
        await ws.send_text("hello")
        assert await ws.close_code() == 1011


async def test_operation_limit_per_socket_is_a_typed_error(live_server, services) -> None:  # type: ignore[no-untyped-def]
    """The 51st concurrent operation on one socket is refused with an `error` frame carrying RATE_LIMITED; the socket
    and the 50 running subscriptions stay up."""
    import websockets

    token, _ = services.keyring.issue(uuid.uuid4(), ["INVESTOR"])  # the live server's key (TEST_JWT_KEY)
    ws_url = live_server.url.replace("http://", "ws://") + "/graphql"
    async with websockets.connect(ws_url, subprotocols=["graphql-transport-ws"], open_timeout=10) as ws:  # type: ignore[list-item]
        await ws.send(json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "connection_ack"
        for i in range(51):
            await ws.send(
                json.dumps(
                    {"id": str(i), "type": "subscribe", "payload": {"query": "subscription { myOrders { id } }"}}
                )
            )
        frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert frame["id"] == "50" and frame["type"] == "error", frame
        assert [e["extensions"]["code"] for e in frame["payload"]] == ["RATE_LIMITED"]
        await ws.send(json.dumps({"type": "ping"}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "pong"
