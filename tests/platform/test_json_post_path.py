"""The view's own path for POST application/json (server/graphql_view.py: _run_json_post) answers exactly as
strawberry's generic `run` does, for good operations and for every kind of bad body; and the lean extension runner
(schema/extension_runner.py) runs hooks like strawberry's."""

from __future__ import annotations

import json
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
