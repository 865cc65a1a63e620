"""The view's own path for POST application/json (server/graphql_view.py: _run_json_post) answers exactly as
strawberry's generic `run` does, for good operations and for every kind of bad body; and the lean extension runner
(schema/extension_runner.py) runs hooks like strawberry's."""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import strawberry
from strawberry.extensions import SchemaExtension
from strawberry.extensions.runner import SchemaExtensionsRunner

from core.services import Services
from schema.extension_runner import LeanExtensionsRunner
from server.app import create_app

JSON = "application/json"
BODIES: dict[str, tuple[str, object]] = {
    "typename": (JSON, {"query": "{ __typename }"}),
    "charset": ("application/json; charset=utf-8", {"query": "{ __typename }"}),
    "upper case": ("Application/JSON", {"query": "{ __typename }"}),
    "nulls": (JSON, {"query": "{ __typename }", "variables": None, "operationName": None, "extensions": None}),
    "variables": (JSON, {"query": "query($n: Int) { __typename }", "variables": {"n": 1}}),
    "bad variable": (JSON, {"query": "query($n: Int!) { __typename }", "variables": {"n": "x"}}),
    "me anonymous": (JSON, {"query": "{ me { id } }"}),
    "invalid field": (JSON, {"query": "{ nope }"}),
    "syntax error": (JSON, {"query": "{"}),
    "no query": (JSON, {}),
    "query not a string": (JSON, {"query": 5}),
    "variables not an object": (JSON, {"query": "{ __typename }", "variables": [1]}),
    "extensions not an object": (JSON, {"query": "{ __typename }", "extensions": "x"}),
    "two operations, no name": (JSON, {"query": "query A { __typename } query B { __typename }"}),
    "unknown operation name": (JSON, {"query": "query A { __typename }", "operationName": "B"}),
    "subscription": (JSON, {"query": "subscription { __typename }"}),
    "batch": (JSON, [{"query": "{ __typename }"}]),
    "array": (JSON, [1]),
    "not json": (JSON, "{not json"),
    "unknown persisted query": (
        JSON,
        {"extensions": {"persistedQuery": {"version": 1, "sha256Hash": "0" * 64}}},
    ),
}


@pytest.fixture
async def app_and_client(services: Services) -> AsyncIterator[tuple[object, httpx.AsyncClient]]:
    app = create_app(services.settings, services)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield app, c


async def _answer(client: httpx.AsyncClient, content_type: str, body: object) -> tuple[int, object, dict[str, str]]:
    content = body if isinstance(body, str) else json.dumps(body)
    resp = await client.post("/graphql", content=content, headers={"content-type": content_type})
    headers = {k: v for k, v in resp.headers.items() if k not in ("x-request-id", "content-length")}
    return resp.status_code, resp.json(), headers


@pytest.mark.parametrize("case", list(BODIES))
async def test_same_answer_as_strawberrys_run(app_and_client, case: str) -> None:  # type: ignore[no-untyped-def]
    app, client = app_and_client
    view = app.state.graphql_view
    assert view._json_post_fast
    content_type, body = BODIES[case]
    fast = await _answer(client, content_type, body)
    view._json_post_fast = False
    try:
        generic = await _answer(client, content_type, body)
    finally:
        view._json_post_fast = True
    assert fast == generic


# --- Content-Encoding -----------------------------------------------------------------------------------------

# (header lines, the body as sent: a compressed body, or plain JSON under a coding it is not in)
ENCODED: dict[str, tuple[list[tuple[str, str]], bytes]] = {
    "gzip": ([("content-encoding", "gzip")], gzip.compress(b'{"query": "{ __typename }"}')),
    "gzip on plain json": ([("content-encoding", "gzip")], b'{"query": "{ __typename }"}'),
    "deflate": ([("content-encoding", "deflate")], zlib.compress(b'{"query": "{ __typename }"}')),
    "br": ([("content-encoding", "br")], b'{"query": "{ __typename }"}'),
    "upper case": ([("content-encoding", " GZIP ")], b'{"query": "{ __typename }"}'),
    "list": ([("content-encoding", "identity, gzip")], b'{"query": "{ __typename }"}'),
    "second header": (
        [("content-encoding", "identity"), ("content-encoding", "x-custom")],
        b'{"query": "{ __typename }"}',
    ),
}


async def _encoded(
    client: httpx.AsyncClient, content_type: str, headers: list[tuple[str, str]], body: bytes
) -> tuple[int, object, dict[str, str]]:
    resp = await client.post("/graphql", content=body, headers=[("content-type", content_type), *headers])
    kept = {k: v for k, v in resp.headers.items() if k not in ("x-request-id", "content-length")}
    return resp.status_code, resp.json(), kept


@pytest.mark.parametrize("content_type", [JSON, "application/json; charset=utf-8", "Application/JSON"])
@pytest.mark.parametrize("case", list(ENCODED))
async def test_a_content_encoding_is_refused_on_both_paths(app_and_client, case: str, content_type: str) -> None:  # type: ignore[no-untyped-def]
    """Nothing decodes a compressed body: a coding other than identity is 415 UNSUPPORTED_CONTENT_ENCODING, on the
    fast path and on strawberry's run alike (before, a plain JSON body under `gzip` ran, a gzip one was 400)."""
    app, client = app_and_client
    view = app.state.graphql_view
    headers, body = ENCODED[case]
    fast = await _encoded(client, content_type, headers, body)
    view._json_post_fast = False
    try:
        generic = await _encoded(client, content_type, headers, body)
    finally:
        view._json_post_fast = True
    assert fast == generic
    status, answer, response_headers = fast
    assert status == 415, answer
    assert answer["data"] is None  # type: ignore[index]
    [error] = answer["errors"]  # type: ignore[index]
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "reason": "UNSUPPORTED_CONTENT_ENCODING"}
    assert response_headers["accept-encoding"] == "identity"


@pytest.mark.parametrize("value", ["identity", "Identity", ""])
async def test_identity_is_no_encoding(app_and_client, value: str) -> None:  # type: ignore[no-untyped-def]
    _, client = app_and_client
    status, answer, _ = await _encoded(client, JSON, [("content-encoding", value)], b'{"query": "{ __typename }"}')
    assert status == 200, answer
    assert answer["data"] == {"__typename": "Query"}, answer  # type: ignore[index]


# --- the extension runner -----------------------------------------------------------------------------------


def _schema_with(events: list[str], fail_in_execute: bool = False) -> strawberry.Schema:
    class Outer(SchemaExtension):
        async def on_operation(self) -> AsyncIterator[None]:
            events.append("outer operation start")
            try:
                yield
            finally:
                events.append("outer operation end")

        def on_execute(self) -> Iterator[None]:
            events.append("outer execute start")
            yield
            events.append("outer execute end")

    class Inner(SchemaExtension):
        async def on_operation(self) -> AsyncIterator[None]:
            events.append("inner operation start")
            yield
            events.append("inner operation end")

        def on_parse(self) -> None:  # a plain function: strawberry's own wrapping
            events.append("inner parse")

        async def on_validate(self) -> AsyncIterator[None]:
            events.append("inner validate start")
            yield
            events.append("inner validate end")

    @strawberry.type
    class Query:
        @strawberry.field
        def ok(self) -> bool:
            if fail_in_execute:
                raise ValueError("boom")
            return True

    return strawberry.Schema(query=Query, extensions=[Outer, Inner])


@pytest.mark.parametrize("fail", [False, True])
async def test_lean_runner_runs_hooks_like_strawberrys(monkeypatch: pytest.MonkeyPatch, fail: bool) -> None:
    answers, logs = [], []
    for runner in (SchemaExtensionsRunner, LeanExtensionsRunner):
        events: list[str] = []
        schema = _schema_with(events, fail)
        monkeypatch.setattr(schema, "create_extensions_runner", lambda ctx, exts, r=runner: r(ctx, exts))
        result = await schema.execute("{ ok }")
        answers.append((result.data, [e.message for e in result.errors or []]))
        logs.append(events)
    assert answers[0] == answers[1]
    assert logs[0] == logs[1]
    assert "outer execute end" in logs[0] and "inner parse" in logs[0]


def _one_hook_schema(events: list[str], fail: str) -> strawberry.Schema:
    """One extension per stage: the lean runner drives its generators itself (schema/extension_runner._OneHook)."""

    def step(name: str) -> None:
        events.append(name)
        if fail == name:
            raise ValueError(f"failed at {name}")

    class Only(SchemaExtension):
        async def on_operation(self) -> AsyncIterator[None]:
            step("operation start")
            try:
                yield
            except ValueError as exc:
                events.append(f"operation saw {exc}")
                raise
            finally:
                events.append("operation finally")
            step("operation end")
            if fail == "operation yields twice":
                yield

        def on_execute(self) -> Iterator[None]:
            step("execute start")
            if fail == "execute never yields":
                return
            try:
                yield
            finally:
                events.append("execute finally")
            step("execute end")

    @strawberry.type
    class Query:
        @strawberry.field
        def ok(self) -> bool:
            step("resolver")
            return True

    return strawberry.Schema(query=Query, extensions=[Only])


@pytest.mark.parametrize(
    "fail",
    [
        "nothing",
        "operation start",
        "operation end",
        "operation yields twice",
        "execute start",
        "execute end",
        "execute never yields",
        "resolver",
    ],
)
async def test_one_hook_stages_run_like_strawberrys(monkeypatch: pytest.MonkeyPatch, fail: str) -> None:
    """Entering, leaving cleanly, and an exception leaving a stage (from the hook itself or from the stage inside
    it), and a generator that does not yield or yields twice: the same events, answer or exception as strawberry's
    runner."""
    outcomes, logs = [], []
    for runner in (SchemaExtensionsRunner, LeanExtensionsRunner):
        events: list[str] = []
        schema = _one_hook_schema(events, fail)
        monkeypatch.setattr(schema, "create_extensions_runner", lambda ctx, exts, r=runner: r(ctx, exts))
        try:
            result = await schema.execute("{ ok }")
            outcomes.append(("answer", result.data, [e.message for e in result.errors or []]))
        except Exception as exc:  # noqa: BLE001 - what escapes is part of the comparison
            outcomes.append(("raised", type(exc).__name__, str(exc)))
        logs.append(events)
    assert outcomes[0] == outcomes[1]
    assert logs[0] == logs[1]
    if fail != "nothing":
        assert fail in logs[0] or fail.startswith(("operation yields", "execute never")), logs[0]
