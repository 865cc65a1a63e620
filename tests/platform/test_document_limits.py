"""No exponential pre-execution work: every walk over a document (depth, aliases, field merging, cost) is linear in
its size, and a document that expands into too much work is refused with QUERY_TOO_COMPLEX in milliseconds.

The exact counts below (2^k aliases, a cost of 2^k) cannot be computed by expanding each spread: they prove the
walks summarise each fragment once, whatever the clock says."""

from __future__ import annotations

import gc
import time

import pytest
from graphql import get_introspection_query, parse

from core.settings import Environment, Settings
from schema import build_schema
from schema.cost import operation_cost
from schema.document_limits import limit_errors
from tests.platform.responses import codes

# 942-byte class of the outside test: F_i spreads F_(i-1) twice, 22 levels
LEVELS = 22
# CPU seconds of this thread (the app runs on its event loop): the exponential walk took 17-24 s for 22 levels and
# the quadratic field-merging rule 1-1.4 s; the linear walks take milliseconds. CPU, not wall time: on a loaded 2-core
# machine one request's wall time reached 3.1 s while it waited for a core. This thread only, not the process: the
# fixtures' background DROP DATABASE threads run in this process too (0.51-0.54 s of process time was measured).
CPU_BOUND_S = 0.5


def chain(levels: int, base: str, step: str, on: str = "Query") -> str:
    """`fragment F0 on <on> { base }` and F_i whose body is `step` with {p} = F_(i-1)."""
    parts = [f"fragment F0 on {on} {{ {base} }}"]
    parts += [f"fragment F{i} on {on} {{ {step.format(p=f'F{i - 1}')} }}" for i in range(1, levels + 1)]
    return "\n".join(parts)


def bombs(levels: int) -> dict[str, str]:
    top = f"F{levels}"
    return {
        "two spreads": f"{{ ...{top} }}\n" + chain(levels, "__typename", "...{p} ...{p}"),
        "aliases inside": f"{{ ...{top} }}\n" + chain(levels, "x: __typename", "a: __typename ...{p} ...{p}"),
        "inline fragments": f"{{ ...{top} }}\n"
        + chain(levels, "__typename", "... on Query {{ ...{p} }} ... {{ ...{p} }}"),
        "on another type": f"{{ me {{ ...{top} }} }}\n" + chain(levels, "id email", "...{p} ...{p}", on="User"),
        "fields between": f"{{ ...{top} }}\n" + chain(levels, "__typename", "me {{ id }} ...{p} ...{p}"),
        "five spreads": f"{{ ...{top} }}\n"
        + chain(min(levels, 12), "__typename", "...{p} ...{p} ...{p} ...{p} ...{p}").replace(
            f"...{top} }}", f"...F{min(levels, 12)} }}", 1
        ),
        "named operation": f"query Bomb {{ ...{top} }}\n" + chain(levels, "__typename", "...{p} ...{p}"),
    }


async def post(client, query: str, variables: dict | None = None) -> tuple[dict, float]:  # type: ignore[no-untyped-def,type-arg]
    # the collector off while timing: a full collection of this worker's heap (hundreds of tests' objects) landed in
    # one request once and counted 0.6 s of this thread's CPU; it is not the document's work
    gc.collect()
    gc.disable()
    try:
        started = time.thread_time()
        resp = await client.post("/graphql", json={"query": query, "variables": variables or {}})
        elapsed = time.thread_time() - started
    finally:
        gc.enable()
    assert resp.status_code < 500, resp.text
    return resp.json(), elapsed


@pytest.mark.parametrize("kind", list(bombs(LEVELS)))
async def test_fragment_bombs_are_refused_in_milliseconds(client, kind: str) -> None:  # type: ignore[no-untyped-def]
    query = bombs(LEVELS)[kind]
    body, elapsed = await post(client, query)
    assert codes(body) and set(codes(body)) == {"QUERY_TOO_COMPLEX"}, body
    assert body.get("data") is None
    assert elapsed < CPU_BOUND_S, f"{kind}: {elapsed:.2f} s"
    # the same document again (now from the cache) and once more with fresh text: still refused, still fast
    for again in (query, query + " "):
        body, elapsed = await post(client, again)
        assert set(codes(body)) == {"QUERY_TOO_COMPLEX"} and elapsed < CPU_BOUND_S


async def test_the_outside_document_is_942_bytes_and_refused(client) -> None:  # type: ignore[no-untyped-def]
    query = "{ ...F22 }\n" + chain(22, "__typename", "...{p} ...{p}")
    assert 850 < len(query) < 1000
    body, elapsed = await post(client, query)
    assert codes(body) == ["QUERY_TOO_COMPLEX"] and elapsed < CPU_BOUND_S


def test_walks_summarise_each_fragment_once() -> None:
    """200 levels: 2^200 expanded fields. Only a walk that summarises each fragment once returns at all."""
    levels = 200
    document = parse(f"{{ ...F{levels} }}\n" + chain(levels, "x: __typename", "...{p} ...{p}"))
    errors = limit_errors(document, max_depth=12, max_aliases=30)
    assert [e.message for e in errors] == [f"{2**levels} aliases found. Allowed: 30"]
    schema = build_schema(Settings(RWA_ENV=Environment.TEST))
    assert operation_cost(schema._schema, document, None, {}) == 2**levels
    # depth through a chain of 300 fragments (one spread each): no recursion through the interpreter's stack
    deep = parse(
        "{ ...D300 }\n"
        + "\n".join(
            ["fragment D0 on Query { me { id } }"]
            + [f"fragment D{i} on Query {{ ...D{i - 1} }}" for i in range(1, 301)]
        )
    )
    assert limit_errors(deep, max_depth=12, max_aliases=30) == []
    assert operation_cost(schema._schema, deep, None, {}) == 2


@pytest.mark.parametrize("env", [Environment.TEST, Environment.PRODUCTION])
def test_limits_hold_in_every_environment(env: Environment) -> None:
    schema = build_schema(Settings(RWA_ENV=env))
    for kind, query in bombs(LEVELS).items():
        started = time.thread_time()
        errors = schema.documents.get(query).errors  # type: ignore[union-attr]
        assert errors and all(
            e.original_error is not None and e.original_error.code.value == "QUERY_TOO_COMPLEX" for e in errors
        ), kind
        assert time.thread_time() - started < CPU_BOUND_S


async def test_depth_through_fragments_and_inline_fragments(app_client, probe_schema) -> None:  # type: ignore[no-untyped-def]
    shallow = "{ probeNode { ...A } } fragment A on ProbeNode { ... on ProbeNode { child { ...B } } } fragment B on ProbeNode { value }"
    deep = (
        "{ probeNode { ...A } } fragment A on ProbeNode { ... on ProbeNode { child { ...B } } } "
        "fragment B on ProbeNode { child { child { value } } }"
    )
    async with app_client(MAX_QUERY_DEPTH=3) as c:
        body, _ = await post(c, shallow)
        assert codes(body) == [] and body["data"]["probeNode"]["child"]["value"] == 1
        body, _ = await post(c, deep)
        assert codes(body) == ["QUERY_TOO_COMPLEX"]
        # the children of introspection fields do not count towards depth (as before)
        body, _ = await post(c, '{ __type(name: "Query") { fields { type { ofType { ofType { name } } } } } }')
        assert codes(body) == []


async def test_aliases_count_as_executed(app_client) -> None:  # type: ignore[no-untyped-def]
    async with app_client(MAX_ALIASES=3) as c:
        body, _ = await post(
            c, "{ ...A ...B } fragment A on Query { a: __typename } fragment B on Query { ...A b: __typename }"
        )
        assert codes(body) == []
        body, _ = await post(
            c, "{ ...A ...A ...B } fragment A on Query { a: __typename } fragment B on Query { ...A b: __typename }"
        )
        assert codes(body) == ["QUERY_TOO_COMPLEX"] and "4 aliases found" in body["errors"][0]["message"]


async def test_repeated_fields_are_refused_before_the_quadratic_rule(app_client, probe_schema) -> None:  # type: ignore[no-untyped-def]
    """graphql-core compares every pair of fields that share a response name: 490 copies of one field took 1.4 s,
    a binary tree of `child` fields (1,800 tokens) 1 s."""

    def tree(depth: int) -> str:
        return "value" if depth == 0 else f"child {{ {tree(depth - 1)} }} child {{ {tree(depth - 1)} }}"

    async with app_client() as c:
        for query in ("{ " + "probeNode { value } " * 490 + "}", "{ probeNode { " + tree(8) + " } }"):
            body, elapsed = await post(c, query)
            assert codes(body) == ["QUERY_TOO_COMPLEX"], body
            assert elapsed < CPU_BOUND_S
        # ordinary repetition still validates and runs
        body, _ = await post(
            c,
            "{ probeNode { value child { value } } probeNode { value } ...P ...P } "
            "fragment P on Query { probeNode { child { value } } }",
        )
        assert codes(body) == [] and body["data"]["probeNode"]["child"]["value"] == 1


async def test_fragment_cycles_are_bad_input_quickly(client) -> None:  # type: ignore[no-untyped-def]
    cyclic = "{ ...F22 }\n" + chain(22, "...F22", "...{p} ...{p}")
    body, elapsed = await post(client, cyclic)
    assert codes(body) and set(codes(body)) == {"BAD_USER_INPUT"} and elapsed < CPU_BOUND_S
    body, elapsed = await post(client, "{ ...A } fragment A on Query { ...B ...B } fragment B on Query { ...A ...A }")
    assert set(codes(body)) == {"BAD_USER_INPUT"} and elapsed < CPU_BOUND_S


async def test_nesting_beyond_the_parser_is_too_complex(client) -> None:  # type: ignore[no-untyped-def]
    body, _ = await post(client, "{ " + "me { " * 400 + "id" + " }" * 400 + " }")
    assert codes(body) == ["QUERY_TOO_COMPLEX"]


async def test_graphiql_introspection_still_fits(client) -> None:  # type: ignore[no-untyped-def]
    body, _ = await post(client, get_introspection_query(descriptions=True))
    assert codes(body) == [] and body["data"]["__schema"]["queryType"]["name"] == "Query"


@pytest.mark.parametrize("depth", [10, 60, 300, 700])
async def test_nested_json_literals_and_variables_are_typed(gql, make_user, depth: int) -> None:  # type: ignore[no-untyped-def]
    """A JSON scalar nests as deep as its input allows: in the document (bounded by the parser) or in variables
    (bounded by the body's nesting guard). Either way a typed answer, never INTERNAL or a crash."""
    issuer = await make_user(roles=["ISSUER"])
    literal = "{a: " * depth + "1" + "}" * depth
    create = (
        'mutation { createAsset(input: {name: "Nested", type: OTHER, jurisdiction: "DE", currency: "EUR", '
        f"metadata: {literal}}}) {{ asset {{ id }} errors {{ code }} }} }}"
    )
    result = await gql(create, token=issuer.token)
    assert {e["extensions"]["code"] for e in result.get("errors") or []} <= {"BAD_USER_INPUT", "QUERY_TOO_COMPLEX"}, (
        result
    )
    nested: object = 1
    for _ in range(depth):
        nested = {"a": nested}
    variables = {"i": {"name": "Nested", "type": "OTHER", "jurisdiction": "DE", "currency": "EUR", "metadata": nested}}
    resp = await gql.client.post(
        "/graphql",
        json={
            "query": "mutation($i: CreateAssetInput!) { createAsset(input: $i) { asset { id } errors { code } } }",
            "variables": variables,
        },
        headers={"Authorization": f"Bearer {issuer.token}"},
    )
    assert resp.status_code < 500
    body = resp.json()
    assert {e["extensions"]["code"] for e in body.get("errors") or []} <= {"BAD_USER_INPUT", "QUERY_TOO_COMPLEX"}, body


@pytest.mark.parametrize(
    "padding",
    [
        "{ __typename }\n#" + "x" * 900_000,  # one comment: one token, so MAX_QUERY_TOKENS never stopped it
        "{ __typename " + " " * 900_000 + "}",
        '{ asset(id: "' + "a" * 900_000 + '") { id } }',
        "{ __typename \n#" + "x" * 900_000,  # a syntax error at the end: it was lexed twice (ours, strawberry's)
    ],
    ids=["comment", "whitespace", "string literal", "syntax error"],
)
async def test_documents_longer_than_max_query_chars_are_refused_unread(client, padding: str) -> None:  # type: ignore[no-untyped-def]
    """graphql-core lexes a character at a time: a 900 kB comment (within MAX_REQUEST_BYTES) held the event loop
    0.6-0.9 s per request, signed in or not, answered as if it were `{ __typename }`. Now refused with
    QUERY_TOO_COMPLEX before the lexer runs, whatever the padding is made of."""
    body, elapsed = await post(client, padding)
    assert codes(body) == ["QUERY_TOO_COMPLEX"], body
    assert "65536 code points" in body["errors"][0]["message"]
    assert elapsed < CPU_BOUND_S


async def test_max_query_chars_is_the_bound_on_the_document_text(app_client) -> None:  # type: ignore[no-untyped-def]
    async with app_client(MAX_QUERY_CHARS=1000) as c:
        fits = "{ __typename }\n#" + "x" * (1000 - 16)
        assert len(fits) == 1000
        body, _ = await post(c, fits)
        assert codes(body) == [] and body["data"] == {"__typename": "Query"}
        body, _ = await post(c, fits + "x")
        assert codes(body) == ["QUERY_TOO_COMPLEX"]
        assert body["errors"][0]["message"].startswith("Syntax Error: Source contains more than 1000 code points.")
