"""A query of one root field without arguments (`{ me { id email roles } }`) runs without graphql-core's executor
(schema/root_field.py: prepare_root_field, execute_root_field). Every answer here is compared with the one the
normal path gives for the same request on the same app (RwaSchema.root_field_path off): the same status, headers and
JSON (data, errors with their codes and paths, extensions), for values the plan completes and for each kind of value
or error it hands back to graphql-core; documents it does not prepare take the normal path."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import strawberry
from prometheus_client import REGISTRY
from sqlalchemy import delete
from strawberry.permission import PermissionExtension

import schema as schema_package
from core.errors import NotFound
from core.services import Services
from models.identity import User
from schema.permissions import IsAuthenticated
from tests.platform.extra_roots import extra_root_client, post_compared


@strawberry.interface
class RootProbeNamed:
    name: str


@strawberry.type
class RootProbeThing(RootProbeNamed):  # implements an interface: Strawberry gives it is_type_of, like Node types
    count: int
    tags: list[str]


@strawberry.type
class RootProbeOther:
    name: str
    count: int
    tags: list[str]


@strawberry.type
class RootProbePlain:  # no interface: no is_type_of, any object with the attributes completes
    name: str
    count: int
    tags: list[str]


class _Raising:
    count = 1
    tags = ["x"]

    @property
    def name(self) -> str:
        raise ValueError("a property that fails while the plan reads it")


def _thing(count: Any = 1) -> RootProbeThing:
    return RootProbeThing(name="a", count=count, tags=["x", "y"])


@strawberry.type
class RootProbeQuery:
    @strawberry.field
    async def root_probe_thing(self) -> RootProbeThing:
        return _thing()

    @strawberry.field
    def root_probe_sync_thing(self) -> RootProbeThing:
        return _thing()

    @strawberry.field
    async def root_probe_null_thing(self) -> RootProbeThing:
        return None  # type: ignore[return-value]  # a null in a non-null field: graphql-core's error nulls the data

    @strawberry.field
    async def root_probe_maybe_thing(self) -> RootProbeThing | None:
        return None

    @strawberry.field
    async def root_probe_big_thing(self) -> RootProbeThing | None:
        return _thing(2**40)  # an Int beyond 32 bits: the plan refuses it, graphql-core reports it

    @strawberry.field
    async def root_probe_wrong_thing(self) -> RootProbeThing | None:
        return RootProbeOther(name="b", count=2, tags=[])  # type: ignore[return-value]  # fails is_type_of

    @strawberry.field
    async def root_probe_raising_thing(self) -> RootProbePlain | None:
        return _Raising()  # type: ignore[return-value]  # duck-typed: read attribute by attribute

    @strawberry.field
    async def root_probe_missing_thing(self) -> RootProbeThing:
        raise NotFound("no such thing")

    @strawberry.field
    async def root_probe_crashing_thing(self) -> RootProbeThing | None:
        raise RuntimeError("connection to db-secret-host:5432 failed")

    @strawberry.field(extensions=[PermissionExtension([IsAuthenticated()])])
    async def root_probe_private_thing(self) -> RootProbeThing:
        return _thing()

    @strawberry.field
    async def root_probe_argument_thing(self, count: int = 3) -> RootProbeThing:
        return _thing(count)

    @strawberry.field
    async def root_probe_info_thing(self, info: strawberry.Info) -> RootProbeThing:
        INFOS.append(info._raw_info)
        return _thing()


INFOS: list[Any] = []  # the graphql-core infos root_probe_info_thing was called with


@pytest.fixture
async def probe_client(
    services: Services, monkeypatch: pytest.MonkeyPatch, probe_schema: None
) -> AsyncIterator[httpx.AsyncClient]:
    async with extra_root_client(services, monkeypatch, (RootProbeQuery,)) as client:
        yield client


@pytest.fixture
def fast_runs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The root fields the fast path executed (schema.execute_root_field called)."""
    ran: list[str] = []
    original = schema_package.execute_root_field

    async def counting(root: Any, *args: Any) -> Any:
        ran.append(root.field_name)
        return await original(root, *args)

    monkeypatch.setattr(schema_package, "execute_root_field", counting)
    return ran


async def _both(client: httpx.AsyncClient, body: dict[str, Any], token: str | None = None) -> tuple[Any, Any]:
    """(fast path's answer, normal path's answer) to the same request."""
    schema = client.app.state.graphql_view.schema  # type: ignore[attr-defined]
    fast = await post_compared(client, body, token)
    schema.root_field_path = False
    try:
        normal = await post_compared(client, body, token)
    finally:
        schema.root_field_path = True
    return fast, normal


async def test_me_answers_as_the_normal_path(probe_client, make_user, fast_runs) -> None:  # type: ignore[no-untyped-def]
    user = await make_user(roles=["INVESTOR", "ISSUER"])
    for query in (
        "{ me { id email roles } }",
        "query Who { who: me { __typename ...F roles status } } fragment F on User { id email }",
        "{ me { id email roles kycStatus: status } }",
    ):
        fast, normal = await _both(probe_client, {"query": query}, user.token)
        assert fast == normal
        status, body, headers = fast
        assert status == 200 and "errors" not in body and body["extensions"]["cost"] >= 1
        me = body["data"].get("me") or body["data"]["who"]
        assert me["id"] == str(user.id) and me["roles"] == ["INVESTOR", "ISSUER"]
        assert "x-cache" not in headers  # `me` is never response-cached
    assert fast_runs == ["me", "me", "me"]


async def test_auth_denial_and_a_vanished_user_answer_as_the_normal_path(  # type: ignore[no-untyped-def]
    probe_client, make_user, session_factory, fast_runs
) -> None:
    user = await make_user()
    anonymous, normal = await _both(probe_client, {"query": "{ me { id } }"})
    assert anonymous == normal
    assert anonymous[1]["data"] is None and anonymous[1]["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert anonymous[1]["errors"][0]["path"] == ["me"]
    private, normal = await _both(probe_client, {"query": "{ rootProbePrivateThing { name } }"})
    assert private == normal and private[1]["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    async with session_factory() as s:  # the token stays valid, its user is gone: NOT_FOUND nulls the data
        await s.execute(delete(User).where(User.id == user.id))
        await s.commit()
    gone, normal = await _both(probe_client, {"query": "{ me { id email } }"}, user.token)
    assert gone == normal
    assert gone[1]["data"] is None and gone[1]["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    assert fast_runs == ["me", "rootProbePrivateThing", "me"]


CASES = {
    "rootProbeThing": ({"rootProbeThing": {"name": "a", "count": 1, "tags": ["x", "y"]}}, None),
    "rootProbeSyncThing": ({"rootProbeSyncThing": {"name": "a", "count": 1, "tags": ["x", "y"]}}, None),
    "rootProbeMaybeThing": ({"rootProbeMaybeThing": None}, None),
    "rootProbeNullThing": (None, "INTERNAL"),  # graphql-core's non-null error, masked
    "rootProbeBigThing": ({"rootProbeBigThing": None}, "INTERNAL"),  # graphql-core's Int error, masked
    "rootProbeWrongThing": ({"rootProbeWrongThing": None}, "INTERNAL"),  # is_type_of refused it
    "rootProbeRaisingThing": ({"rootProbeRaisingThing": None}, "INTERNAL"),  # the plan's read raised
    "rootProbeMissingThing": (None, "NOT_FOUND"),
    "rootProbeCrashingThing": ({"rootProbeCrashingThing": None}, "INTERNAL"),
}


@pytest.mark.parametrize("field", list(CASES))
async def test_values_and_errors_answer_as_the_normal_path(probe_client, fast_runs, field: str) -> None:  # type: ignore[no-untyped-def]
    fast, normal = await _both(probe_client, {"query": "{ %s { name count tags } }" % field})
    assert fast == normal
    data, code = CASES[field]
    body = fast[1]
    assert body["data"] == data
    if code is None:
        assert "errors" not in body
    else:
        assert [e["extensions"]["code"] for e in body["errors"]] == [code]
        assert body["errors"][0]["path"][0] == field
        assert "secret" not in str(body)
    assert fast_runs == [field]


@pytest.mark.parametrize(
    "query",
    [
        "{ me { id } rootProbeThing { name } }",  # two root fields
        "query($x: Boolean!) { me { id email @include(if: $x) } }",  # variables
        "{ rootProbeArgumentThing(count: 5) { count } }",  # arguments
        "{ me @skip(if: false) { id } }",  # a directive
        "{ probeNode { child { value } } }",  # a resolver below the root field: no plan
        "{ __typename }",
        "mutation { __typename }",
    ],
)
async def test_other_documents_take_the_normal_path(probe_client, make_user, fast_runs, query) -> None:  # type: ignore[no-untyped-def]
    user = await make_user()
    fast, normal = await _both(probe_client, {"query": query, "variables": {"x": True}}, user.token)
    assert fast == normal and fast[0] == 200
    assert fast_runs == []


async def test_the_operation_is_counted_and_timed(probe_client, make_user, fast_runs) -> None:  # type: ignore[no-untyped-def]
    user = await make_user()
    labels = {"operation": "Me", "operation_type": "query"}
    before = REGISTRY.get_sample_value("rwa_graphql_requests_total", labels) or 0.0
    timed = REGISTRY.get_sample_value("rwa_graphql_request_seconds_count", {"operation": "Me"}) or 0.0
    await _both(probe_client, {"query": "query Me { me { id } }", "operationName": "Me"}, user.token)
    assert REGISTRY.get_sample_value("rwa_graphql_requests_total", labels) == before + 2
    assert REGISTRY.get_sample_value("rwa_graphql_request_seconds_count", {"operation": "Me"}) == timed + 2
    assert fast_runs == ["me"]


async def test_the_resolver_gets_the_info_graphql_core_builds(probe_client, fast_runs) -> None:  # type: ignore[no-untyped-def]
    """Field by field (strawberry's info class, built positionally here), except the async helpers: graphql-core binds
    them to its executor, the fast path to functions doing the same."""
    INFOS.clear()
    body = {"query": "query I { thing: rootProbeInfoThing { name ...F } } fragment F on RootProbeThing { count }"}
    fast, normal = await _both(probe_client, {**body, "extensions": {"trace": "x"}})
    assert fast == normal and fast_runs == ["rootProbeInfoThing"]
    got, expected = INFOS
    assert type(got) is type(expected) and got._fields == expected._fields
    for name in expected._fields:
        mine, theirs = getattr(got, name), getattr(expected, name)
        if name == "path":
            assert (mine.as_list(), mine.typename) == (theirs.as_list(), theirs.typename) == (["thing"], "Query")
        elif name == "context":
            assert type(mine) is type(theirs) and mine is not theirs
        elif name == "async_helpers":
            assert type(mine) is type(theirs)
        else:
            assert mine == theirs, name
    assert got.operation_extensions == {"trace": "x"} and list(got.fragments) == ["F"]
