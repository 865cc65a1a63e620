"""An operation of one root field whose arguments are variables (a mutation like `placeOrder(input: $i)`, or a query)
runs without graphql-core's executor (schema/root_field.py: variables coerced by compiled coercers, the resolver
called with graphql-core's arguments). Every answer here is compared with the one the normal path gives for the same
request on the same app (RwaSchema.root_field_path off): the same status, headers and JSON (data, errors with their
messages, codes, locations and paths) for valid variables and for every kind of invalid one, which the fast path
declines before anything runs (graphql-core's path reports them)."""

from __future__ import annotations

import datetime
import enum
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
import strawberry

import schema as schema_package
from core.services import Services
from schema import root_field
from tests.platform.extra_roots import extra_root_client, post_compared


@strawberry.enum
class RootVarKind(enum.Enum):
    PLAIN = "PLAIN"
    FANCY = "FANCY"


@strawberry.input
class RootVarNested:
    label: str
    weights: list[int] | None = None


@strawberry.input
class RootVarInput:
    name: str
    count: int
    kind: RootVarKind
    amount: Decimal
    ref: uuid.UUID
    tags: list[str] | None = None
    strict_tags: list[str] | None = None
    nested: RootVarNested | None = None
    when: datetime.datetime | None = None
    level: int = 7


@strawberry.type
class RootVarEcho:
    name: str
    count: int
    kind: RootVarKind
    amount: Decimal
    ref: uuid.UUID
    tags: list[str] | None
    nested_label: str | None
    weights: list[int] | None
    when: datetime.datetime | None
    level: int
    note: str | None


CALLS: list[dict[str, Any]] = []  # the arguments each probe resolver was called with


def _echo(input: RootVarInput, note: str | None) -> RootVarEcho:
    CALLS.append({"input": input, "note": note})
    return RootVarEcho(
        name=input.name,
        count=input.count,
        kind=input.kind,
        amount=input.amount,
        ref=input.ref,
        tags=input.tags,
        nested_label=input.nested.label if input.nested else None,
        weights=input.nested.weights if input.nested else None,
        when=input.when,
        level=input.level,
        note=note,
    )


@strawberry.type
class RootVarQuery:
    @strawberry.field
    async def root_var_echo(self, input: RootVarInput, note: str | None = None) -> RootVarEcho:
        return _echo(input, note)

    @strawberry.field
    async def root_var_list(
        self, ids: list[uuid.UUID], kinds: list[RootVarKind] | None = None, level: int = 4
    ) -> RootVarEcho:
        CALLS.append({"ids": ids, "kinds": kinds})
        return RootVarEcho(
            name=",".join(map(str, ids)),
            count=len(ids),
            kind=(kinds or [RootVarKind.PLAIN])[0],
            amount=Decimal("0"),
            ref=ids[0] if ids else uuid.UUID(int=0),
            tags=None,
            nested_label=None,
            weights=None,
            when=None,
            level=level,
            note=None,
        )


@strawberry.type
class RootVarMutation:
    @strawberry.mutation
    async def root_var_store(self, input: RootVarInput, note: str | None = None) -> RootVarEcho:
        return _echo(input, note)

    @strawberry.mutation
    async def root_var_fail(self, input: RootVarInput) -> RootVarEcho:
        raise ValueError("secret-detail must not leak")


@pytest.fixture
async def var_client(services: Services, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[httpx.AsyncClient]:
    async with extra_root_client(services, monkeypatch, (RootVarQuery,), (RootVarMutation,)) as client:
        yield client


@pytest.fixture
def fast_runs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The root fields the fast path executed (not declined)."""
    ran: list[str] = []
    original = schema_package.execute_root_field

    async def counting(root: Any, *args: Any) -> Any:
        result = await original(root, *args)
        if result is not root_field.DECLINED:
            ran.append(root.field_name)
        return result

    monkeypatch.setattr(schema_package, "execute_root_field", counting)
    return ran


async def _both(client: httpx.AsyncClient, body: dict[str, Any]) -> tuple[Any, Any, list[Any]]:
    """(fast path's answer, normal path's answer, the resolver calls of each)."""
    schema = client.app.state.graphql_view.schema  # type: ignore[attr-defined]
    CALLS.clear()
    fast = await post_compared(client, body)
    fast_calls = list(CALLS)
    CALLS.clear()
    schema.root_field_path = False
    try:
        normal = await post_compared(client, body)
    finally:
        schema.root_field_path = True
    normal_calls = list(CALLS)
    assert fast_calls == normal_calls  # the resolver got the same arguments (input objects compare by value)
    return fast, normal, fast_calls


SELECTION = "{ name count kind amount ref tags nestedLabel weights when level note }"
ECHO = "query($i: RootVarInput!, $n: String) { rootVarEcho(input: $i, note: $n) %s }" % SELECTION
STORE = "mutation Store($i: RootVarInput!, $n: String) { rootVarStore(input: $i, note: $n) %s }" % SELECTION
REF = "6f1c1f0e-8a7e-4c59-9b8a-0d4c4c3e2a11"
GOOD = {"name": "a", "count": 3, "kind": "FANCY", "amount": "12.50", "ref": REF}

VALID = {
    "minimal": {"i": GOOD},
    "with note": {"i": GOOD, "n": "hello"},
    "null note": {"i": GOOD, "n": None},
    "every field": {
        "i": {
            **GOOD,
            "tags": ["x", "y"],
            "strictTags": [],
            "nested": {"label": "L", "weights": [1, 2]},
            "when": "2024-01-02T03:04:05Z",
            "level": 9,
        }
    },
    "a single value for a list": {"i": {**GOOD, "tags": "solo", "nested": {"label": "L", "weights": 4}}},
    "nulls in nullable fields": {"i": {**GOOD, "tags": None, "nested": None, "when": None}},
    "unused extra variable": {"i": GOOD, "other": 1},
}

INVALID = {
    "no variables": None,
    "missing required variable": {"n": "x"},
    "null for a non-null variable": {"i": None},
    "input not an object": {"i": "text"},
    "input as a list": {"i": [GOOD]},
    "missing required field": {"i": {k: v for k, v in GOOD.items() if k != "count"}},
    "null in a non-null field": {"i": {**GOOD, "name": None}},
    "unknown field": {"i": {**GOOD, "colour": "red"}},
    "wrong enum": {"i": {**GOOD, "kind": "NOPE"}},
    "enum as a number": {"i": {**GOOD, "kind": 1}},
    "string for an Int": {"i": {**GOOD, "count": "3"}},
    "Int beyond 32 bits": {"i": {**GOOD, "count": 2**40}},
    "float for an Int": {"i": {**GOOD, "count": 1.5}},
    "bad decimal": {"i": {**GOOD, "amount": "12,5"}},
    "bad uuid": {"i": {**GOOD, "ref": "not-a-uuid"}},
    "bad datetime": {"i": {**GOOD, "when": "yesterday"}},
    "number for a String": {"i": {**GOOD, "name": 5}},
    "nested list item of the wrong type": {"i": {**GOOD, "tags": ["x", 1]}},
    "null in a list of non-null": {"i": {**GOOD, "tags": ["x", None]}},
    "nested input not an object": {"i": {**GOOD, "nested": 5}},
    "nested input missing its required field": {"i": {**GOOD, "nested": {"weights": [1]}}},
    "nested list of the wrong type": {"i": {**GOOD, "nested": {"label": "L", "weights": ["a"]}}},
    "nested list in a list": {"i": {**GOOD, "tags": [["x"]]}},
    "wrong type for a nullable variable": {"i": GOOD, "n": 5},
}


@pytest.mark.parametrize("document", ["query", "mutation"])
@pytest.mark.parametrize("case", list(VALID))
async def test_valid_variables_answer_as_the_normal_path(var_client, fast_runs, document: str, case: str) -> None:  # type: ignore[no-untyped-def]
    query = ECHO if document == "query" else STORE
    fast, normal, calls = await _both(var_client, {"query": query, "variables": VALID[case]})
    assert fast == normal
    status, body, _ = fast
    assert status == 200 and "errors" not in body, body
    field = "rootVarEcho" if document == "query" else "rootVarStore"
    assert body["data"][field]["name"] == "a" and body["data"][field]["ref"] == REF
    assert len(calls) == 1
    assert fast_runs == [field]


@pytest.mark.parametrize("document", ["query", "mutation"])
@pytest.mark.parametrize("case", list(INVALID))
async def test_invalid_variables_answer_as_the_normal_path(var_client, fast_runs, document: str, case: str) -> None:  # type: ignore[no-untyped-def]
    query = ECHO if document == "query" else STORE
    body: dict[str, Any] = {"query": query}
    if INVALID[case] is not None:
        body["variables"] = INVALID[case]
    fast, normal, calls = await _both(var_client, body)
    assert fast == normal
    status, answer, _ = fast
    assert status == 200 and answer.get("data") is None and calls == []
    assert [e["extensions"]["code"] for e in answer["errors"]] == ["BAD_USER_INPUT"] * len(answer["errors"])
    assert answer["errors"][0]["message"].startswith("Variable '$")
    assert fast_runs == []


async def test_a_document_first_seen_with_bad_variables_is_prepared_later(var_client, fast_runs) -> None:  # type: ignore[no-untyped-def]
    query = "mutation Later($i: RootVarInput!) { rootVarStore(input: $i) { name level } }"
    bad, normal, _ = await _both(var_client, {"query": query, "variables": {"i": {**GOOD, "count": "x"}}})
    assert bad == normal and bad[1]["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    good, normal, _ = await _both(var_client, {"query": query, "variables": {"i": GOOD}})
    assert good == normal and good[1]["data"] == {"rootVarStore": {"name": "a", "level": 7}}
    assert fast_runs == ["rootVarStore"]


async def test_lists_of_scalars_and_enums(var_client, fast_runs) -> None:  # type: ignore[no-untyped-def]
    query = "query($ids: [UUID!]!, $k: [RootVarKind!]) { rootVarList(ids: $ids, kinds: $k) { name count kind } }"
    cases = [
        ({"ids": [REF, REF], "k": ["FANCY"]}, True),
        ({"ids": REF}, True),  # one value for a list; a nullable variable not provided
        ({"ids": [], "k": None}, True),
        ({"ids": [REF, "nope"]}, False),
        ({"ids": [REF], "k": ["FANCY", "NOPE"]}, False),
        ({"ids": None}, False),
    ]
    for variables, valid in cases:
        fast, normal, _ = await _both(var_client, {"query": query, "variables": variables})
        assert fast == normal, variables
        assert ("errors" not in fast[1]) is valid, fast
    assert fast_runs == ["rootVarList"] * 3


async def test_argument_defaults(var_client, fast_runs) -> None:  # type: ignore[no-untyped-def]
    """An argument not given, or given a nullable variable that is not provided, takes its default; a null for a
    non-null argument with a default is refused (the fast path declines it, graphql-core's path reports it)."""
    query = "query($ids: [UUID!]!, $l: Int) { rootVarList(ids: $ids, level: $l) { level } }"
    for variables, level in (({"ids": [REF]}, 4), ({"ids": [REF], "l": 9}, 9), ({"ids": [REF], "l": None}, None)):
        fast, normal, _ = await _both(var_client, {"query": query, "variables": variables})
        assert fast == normal, variables
        if level is None:  # graphql-core's argument error (reported as INTERNAL by both paths, as before)
            assert fast[1]["data"] is None and fast[1]["errors"][0]["path"] == ["rootVarList"], fast
        else:
            assert fast[1]["data"] == {"rootVarList": {"level": level}}
    fast, normal, _ = await _both(var_client, {"query": "{ rootVarList(ids: []) { level } }"})
    assert fast == normal  # a literal argument: the normal path
    assert fast_runs == ["rootVarList"] * 2  # not the null for `level`, not the literal


async def test_a_failing_mutation_answers_as_the_normal_path(var_client, fast_runs) -> None:  # type: ignore[no-untyped-def]
    query = "mutation($i: RootVarInput!) { rootVarFail(input: $i) { name } }"
    fast, normal, _ = await _both(var_client, {"query": query, "variables": {"i": GOOD}})
    assert fast == normal
    errors = fast[1]["errors"]
    assert fast[1]["data"] is None and [e["extensions"]["code"] for e in errors] == ["INTERNAL"]
    assert errors[0]["path"] == ["rootVarFail"] and "secret" not in str(fast[1])
    assert fast_runs == ["rootVarFail"]


@pytest.mark.parametrize(
    "query",
    [
        'query($i: RootVarInput!) { rootVarEcho(input: $i, note: "lit") { name } }',  # a literal argument
        'query($i: RootVarInput! = {name: "a", count: 1, kind: PLAIN, amount: "1", ref: "%s"}) '
        "{ rootVarEcho(input: $i, note: null) { name } }" % REF,  # a variable's default
        "query($i: RootVarInput!, $x: Boolean!) { rootVarEcho(input: $i, note: null) { name @include(if: $x) } }",
        "mutation($i: RootVarInput!) { a: rootVarStore(input: $i, note: null) { name } "
        "b: rootVarStore(input: $i, note: null) { name } }",  # two root fields
    ],
)
async def test_other_documents_take_the_normal_path(var_client, fast_runs, query: str) -> None:  # type: ignore[no-untyped-def]
    fast, normal, _ = await _both(var_client, {"query": query, "variables": {"i": GOOD, "x": True}})
    assert fast == normal and fast[0] == 200 and "errors" not in fast[1], fast
    assert fast_runs == []
