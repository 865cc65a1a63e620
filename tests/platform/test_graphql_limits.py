"""GraphQL hygiene: depth/alias/token limits -> QUERY_TOO_COMPLEX, bad documents -> BAD_USER_INPUT, unexpected
exceptions -> INTERNAL with nothing of the internals, and bounded parser/validation caches."""

from __future__ import annotations

import logging

import pytest

from tests.platform.responses import codes, first_code


def nested_query(depth: int) -> str:
    """`{ probeNode { child { ... { value } } } }` with `depth` levels of fields below the root field."""
    inner = "value"
    for _ in range(depth - 1):
        inner = f"child {{ {inner} }}"
    return f"{{ probeNode {{ {inner} }} }}"


async def post(client, query: str, variables: dict | None = None) -> dict:  # type: ignore[no-untyped-def,type-arg]
    resp = await client.post("/graphql", json={"query": query, "variables": variables or {}})
    assert resp.status_code < 500, resp.text
    return resp.json()


async def test_depth_limit(app_client, probe_schema) -> None:  # type: ignore[no-untyped-def]
    async with app_client(MAX_QUERY_DEPTH=5) as c:
        assert codes(await post(c, nested_query(5))) == []
        body = await post(c, nested_query(6))
    assert codes(body) == ["QUERY_TOO_COMPLEX"]
    assert body.get("data") is None


async def test_depth_limit_with_defaults(app_client, probe_schema, settings) -> None:  # type: ignore[no-untyped-def]
    async with app_client() as c:
        assert codes(await post(c, nested_query(settings.max_query_depth))) == []
        assert first_code(await post(c, nested_query(settings.max_query_depth + 1))) == "QUERY_TOO_COMPLEX"


async def test_depth_through_fragments_counts(app_client, probe_schema) -> None:  # type: ignore[no-untyped-def]
    query = (
        "query { probeNode { ...A } } fragment A on ProbeNode { child { ...B } } "
        "fragment B on ProbeNode { child { child { value } } }"
    )
    async with app_client(MAX_QUERY_DEPTH=3) as c:
        assert first_code(await post(c, query)) == "QUERY_TOO_COMPLEX"


async def test_alias_limit(app_client) -> None:  # type: ignore[no-untyped-def]
    async with app_client(MAX_ALIASES=3) as c:
        ok = await post(c, "{ a: __typename b: __typename c: __typename }")
        assert ok["data"] == {"a": "Query", "b": "Query", "c": "Query"}
        body = await post(c, "{ a: __typename b: __typename c: __typename d: __typename }")
    assert codes(body) == ["QUERY_TOO_COMPLEX"]


async def test_token_limit(app_client) -> None:  # type: ignore[no-untyped-def]
    async with app_client(MAX_QUERY_TOKENS=50) as c:
        assert codes(await post(c, "{ " + "__typename " * 40 + "}")) == []
        body = await post(c, "{ " + "__typename " * 60 + "}")
    assert codes(body) == ["QUERY_TOO_COMPLEX"]


async def test_token_limit_with_defaults(client, settings) -> None:  # type: ignore[no-untyped-def]
    body = await post(client, "{ " + "__typename " * (settings.max_query_tokens + 10) + "}")
    assert codes(body) == ["QUERY_TOO_COMPLEX"]


@pytest.mark.parametrize(
    "query,variables",
    [
        ("{ nope }", None),
        ("{ me { nope } }", None),
        ("{", None),
        ("query { __typename } query { __typename }", None),
        ("query($n: Int!) { __typename }", {}),
        # words of the limit messages in an ordinary error must not make it QUERY_TOO_COMPLEX
        ("query($n: Int!) { __typename }", {"n": "more than 3 tokens, aliases found, exceeds maximum operation depth"}),
        ("{ tokens }", None),
        # variables that do not coerce (graphql-core sets original_error on these: they were masked as INTERNAL)
        ("query($id: UUID!) { asset(id: $id) { id } }", {}),
        ("query($id: UUID!) { asset(id: $id) { id } }", {"id": None}),
        ("query($id: UUID!) { asset(id: $id) { id } }", {"id": "not-a-uuid"}),
        ("query($id: UUID!) { asset(id: $id) { id } }", {"id": 5}),
        (
            'mutation($d: Date!) { setFxRate(input: {base: "USD", quote: "EUR", asOf: $d, rate: "1"}) '
            "{ fxRate { rate } } }",
            {"d": "2020-13-45"},
        ),
        (
            'mutation($r: Decimal!) { setFxRate(input: {base: "USD", quote: "EUR", asOf: "2024-01-01", rate: $r}) '
            "{ fxRate { rate } } }",
            {"r": "abc"},
        ),
        ("mutation($s: OrderSide!) { cancelAllOrders(input: {marketId: $s}) { orders { id } } }", {"s": "SIDEWAYS"}),
        ("{ moreThanTokens_depth: __typename aliases found }", None),
    ],
)
async def test_invalid_documents_are_bad_user_input(client, query: str, variables: dict | None) -> None:  # type: ignore[no-untyped-def,type-arg]
    body = await post(client, query, variables)
    assert codes(body) and set(codes(body)) == {"BAD_USER_INPUT"}, body


async def test_unexpected_exception_is_masked_as_internal(app_client, probe_schema, caplog) -> None:  # type: ignore[no-untyped-def]
    with caplog.at_level(logging.ERROR, logger="rwa.graphql"):
        async with app_client() as c:
            resp = await c.post("/graphql", json={"query": "{ probeCrash }"})
    assert resp.status_code == 200
    body = resp.json()
    assert codes(body) == ["INTERNAL"]
    assert body["errors"][0]["message"] == "Internal server error"
    for leaked in ("hunter2", "db-secret-host", "RuntimeError", "Traceback", "accounts.py"):
        assert leaked not in resp.text
    # the operator still gets the real error, with its traceback, in the logs
    logged = [r for r in caplog.records if r.exc_info and "hunter2" in str(r.exc_info[1])]
    assert logged, "the masked exception was not logged"


async def test_deadlock_victim_is_a_retryable_conflict(app_client, probe_schema) -> None:  # type: ignore[no-untyped-def]
    """A deadlock or serialization failure that escapes a resolver is CONFLICT (reason TRANSIENT_DB_CONFLICT): the
    transaction was rolled back and the client may send the operation again. Not INTERNAL, and no SQL leaks."""
    async with app_client() as c:
        resp = await c.post("/graphql", json={"query": "{ probeDeadlock }"})
    body = resp.json()
    assert codes(body) == ["CONFLICT"] and body["errors"][0]["extensions"]["reason"] == "TRANSIENT_DB_CONFLICT"
    assert "UPDATE users" not in resp.text and "deadlock detected" not in resp.text


async def test_parser_and_validation_caches_are_bounded(app_client) -> None:  # type: ignore[no-untyped-def]
    size = 7
    async with app_client(PARSER_CACHE_SIZE=size) as c:
        documents = c.app.state.schema.documents
        for i in range(size * 3):
            assert codes(await post(c, f"query Q{i} {{ __typename }}")) == []
        assert documents.max_entries == size
        assert len(documents) == size  # full, and no larger
        # a repeated document is served from the cache, parsed and validated
        hits = documents.hits
        await post(c, f"query Q{size * 3 - 1} {{ __typename }}")
        assert documents.hits == hits + 1
