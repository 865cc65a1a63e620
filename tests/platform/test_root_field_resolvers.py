"""The root field path calls a field's resolver without Strawberry's wrapper (schema/direct_resolver.py) when that
wrapper does nothing else than check permission classes and convert arguments. Every answer here is compared with the
one the normal path gives (RwaSchema.root_field_path off, Strawberry's wrapper under graphql-core's executor): the same
status, headers and JSON, the same resolver arguments, the same `has_permission` calls (order, info, arguments), for
refused permissions (unauthenticated, wrong role, a refusing class with its message and extensions, an OAuth token
without the scope), typed and unexpected errors, null or absent optional arguments, enums and lists; fields whose
wrapper does more keep it."""

from __future__ import annotations

import enum
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import strawberry
from strawberry.extensions.field_extension import FieldExtension
from strawberry.permission import BasePermission, PermissionExtension

import schema as schema_package
from core.errors import NotFound
from core.services import Services
from models.identity import Role
from schema import root_field
from schema.direct_resolver import direct_resolver
from schema.permissions import authenticated, requires
from tests.platform.extra_roots import extra_root_client, post_compared

CALLS: list[Any] = []  # what each resolver and permission was called with, in order


@strawberry.enum
class RootResKind(enum.Enum):
    PLAIN = "PLAIN"
    FANCY = "FANCY"


@strawberry.input
class RootResInput:
    label: str
    kind: RootResKind = RootResKind.PLAIN
    weights: list[int] | None = None


@strawberry.type
class RootResEcho:
    summary: str


def _echo(name: str, **kwargs: Any) -> RootResEcho:
    CALLS.append((name, kwargs))
    return RootResEcho(summary=repr(sorted(kwargs.items(), key=lambda kv: kv[0])))


class Recording(BasePermission):
    def has_permission(self, source: Any, info: Any, **kwargs: Any) -> bool:
        CALLS.append(("Recording", type(info).__name__, info._raw_info.path.as_list(), sorted(kwargs.items())))
        return True


class RecordingToo(BasePermission):
    async def has_permission(self, source: Any, info: Any, **kwargs: Any) -> bool:
        CALLS.append(("RecordingToo", info.field_name, sorted(kwargs)))
        return True


class Refusing(BasePermission):
    message = "refused by the probe"
    error_extensions = {"code": "FORBIDDEN", "reason": "PROBE"}  # noqa: RUF012 - strawberry's class attribute

    async def has_permission(self, source: Any, info: Any, **kwargs: Any) -> bool:
        CALLS.append(("Refusing", sorted(kwargs)))
        return False


class NotBoolean(BasePermission):
    def has_permission(self, source: Any, info: Any, **kwargs: Any) -> bool:
        return "yes"  # type: ignore[return-value]  # strawberry refuses it


class Passing(FieldExtension):  # any other field extension: the field keeps its wrapper
    async def resolve_async(self, next_: Any, source: Any, info: Any, **kwargs: Any) -> Any:
        CALLS.append(("Passing", sorted(kwargs)))
        return await next_(source, info, **kwargs)


@strawberry.type
class RootResQuery:
    @strawberry.field(extensions=[PermissionExtension([Recording(), RecordingToo()])])
    async def root_res_args(
        self,
        info: strawberry.Info,
        kind: RootResKind,
        kinds: list[RootResKind] | None = None,
        ids: list[uuid.UUID] | None = None,
        note: str | None = None,
        input: RootResInput | None = None,
        inputs: list[RootResInput] | None = None,
    ) -> RootResEcho:
        assert type(info).__name__ == "Info" and info.field_name == "rootResArgs"
        return _echo("args", kind=kind, kinds=kinds, ids=ids, note=note, input=input, inputs=inputs)

    @strawberry.field(extensions=authenticated())
    async def root_res_private(self, kind: RootResKind) -> RootResEcho:
        return _echo("private", kind=kind)

    @strawberry.field(extensions=requires(Role.ADMIN))
    async def root_res_admin(self, info: strawberry.Info, kind: RootResKind) -> RootResEcho:
        return _echo("admin", kind=kind)

    @strawberry.field(
        extensions=[PermissionExtension([RecordingToo()]), PermissionExtension([Recording(), Refusing()])]
    )
    async def root_res_refused(self, kind: RootResKind) -> RootResEcho:
        return _echo("refused", kind=kind)

    @strawberry.field(extensions=[PermissionExtension([NotBoolean()])])
    async def root_res_not_boolean(self, kind: RootResKind) -> RootResEcho:
        return _echo("not boolean", kind=kind)

    @strawberry.field(extensions=authenticated())
    async def root_res_missing(self, kind: RootResKind) -> RootResEcho:
        CALLS.append(("missing", kind))
        raise NotFound("no such probe")

    @strawberry.field
    async def root_res_crash(self, kind: RootResKind) -> RootResEcho | None:
        CALLS.append(("crash", kind))
        raise RuntimeError("connection to db-secret-host:5432 failed")

    @strawberry.field
    def root_res_sync(self, kind: RootResKind) -> RootResEcho:  # a sync resolver: Strawberry's wrapper
        return _echo("sync", kind=kind)

    @strawberry.field(extensions=[Passing(), PermissionExtension([Recording()])])
    async def root_res_extended(self, kind: RootResKind) -> RootResEcho:
        return _echo("extended", kind=kind)


@strawberry.type
class RootResMutation:
    @strawberry.mutation(extensions=[PermissionExtension([Recording()])])
    async def root_res_store(self, info: strawberry.Info, input: RootResInput, note: str | None = None) -> RootResEcho:
        return _echo("store", input=input, note=note)


@pytest.fixture
async def res_client(services: Services, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[httpx.AsyncClient]:
    async with extra_root_client(services, monkeypatch, (RootResQuery,), (RootResMutation,)) as client:
        yield client


@pytest.fixture
def fast_runs(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, bool]]:
    """The root fields the fast path executed (not declined), with whether their resolver was called directly."""
    ran: list[tuple[str, bool]] = []
    original = schema_package.execute_root_field

    async def counting(root: Any, *args: Any) -> Any:
        result = await original(root, *args)
        if result is not root_field.DECLINED:
            ran.append((root.field_name, root.direct is not None))
        return result

    monkeypatch.setattr(schema_package, "execute_root_field", counting)
    return ran


async def _both(client: httpx.AsyncClient, query: str, variables: Any, token: str | None = None) -> tuple[Any, Any]:
    """(fast path's answer, the calls made); asserts the normal path answers and calls the same."""
    schema = client.app.state.graphql_view.schema  # type: ignore[attr-defined]
    body = {"query": query, "variables": variables}
    CALLS.clear()
    fast = await post_compared(client, body, token)
    fast_calls = list(CALLS)
    CALLS.clear()
    schema.root_field_path = False
    try:
        normal = await post_compared(client, body, token)
    finally:
        schema.root_field_path = True
    assert fast == normal
    assert fast_calls == CALLS
    return fast, fast_calls


ARGS = (
    "query($k: RootResKind!, $ks: [RootResKind!], $ids: [UUID!], $n: String, $i: RootResInput, $is: [RootResInput!])"
    " { rootResArgs(kind: $k, kinds: $ks, ids: $ids, note: $n, input: $i, inputs: $is) { summary } }"
)
REF = "6f1c1f0e-8a7e-4c59-9b8a-0d4c4c3e2a11"

ARG_CASES = {
    "absent optionals": {"k": "FANCY"},
    "null optionals": {"k": "PLAIN", "ks": None, "ids": None, "n": None, "i": None, "is": None},
    "enum list": {"k": "PLAIN", "ks": ["FANCY", "PLAIN"]},
    "one enum for a list": {"k": "PLAIN", "ks": "FANCY"},
    "uuid list": {"k": "PLAIN", "ids": [REF, REF]},
    "empty lists": {"k": "PLAIN", "ks": [], "ids": [], "is": []},
    "input with defaults": {"k": "PLAIN", "i": {"label": "L"}},
    "input given fully": {"k": "PLAIN", "i": {"label": "L", "kind": "FANCY", "weights": [1, 2]}, "n": "x"},
    "list of inputs": {"k": "FANCY", "is": [{"label": "a"}, {"label": "b", "weights": None}]},
}


@pytest.mark.parametrize("case", list(ARG_CASES))
async def test_arguments_reach_permissions_and_resolver_as_on_the_normal_path(res_client, fast_runs, case: str) -> None:  # type: ignore[no-untyped-def]
    (status, body, _), calls = await _both(res_client, ARGS, ARG_CASES[case])
    assert status == 200 and "errors" not in body, body
    # the permissions in order, with the converted arguments, then the resolver
    assert [c[0] for c in calls] == ["Recording", "RecordingToo", "args"]
    assert calls[0][1:3] == ("Info", ["rootResArgs"])
    resolved = calls[2][1]
    assert isinstance(resolved["kind"], RootResKind)
    if resolved["input"] is not None:
        assert isinstance(resolved["input"], RootResInput) and isinstance(resolved["input"].kind, RootResKind)
    assert fast_runs == [("rootResArgs", True)]


async def test_a_mutation_with_an_input_object(res_client, fast_runs) -> None:  # type: ignore[no-untyped-def]
    query = "mutation($i: RootResInput!, $n: String) { rootResStore(input: $i, note: $n) { summary } }"
    (status, body, _), calls = await _both(res_client, query, {"i": {"label": "L", "weights": 3}})
    assert status == 200 and "errors" not in body, body
    assert calls[1][1]["input"] == RootResInput(label="L", kind=RootResKind.PLAIN, weights=[3])
    assert fast_runs == [("rootResStore", True)]


async def test_refused_permissions_answer_as_the_normal_path(res_client, fast_runs, make_user, services) -> None:  # type: ignore[no-untyped-def]
    investor = await make_user()
    admin = await make_user(roles=["ADMIN"])
    variables = {"k": "PLAIN"}
    private = "query($k: RootResKind!) { rootResPrivate(kind: $k) { summary } }"
    admin_only = "query($k: RootResKind!) { rootResAdmin(kind: $k) { summary } }"

    (_, body, _), calls = await _both(res_client, private, variables)
    assert body["data"] is None and body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED" and calls == []
    assert body["errors"][0]["path"] == ["rootResPrivate"]
    (_, body, _), calls = await _both(res_client, private, variables, investor.token)
    assert "errors" not in body and [c[0] for c in calls] == ["private"]

    (_, body, _), calls = await _both(res_client, admin_only, variables, investor.token)
    assert body["data"] is None and body["errors"][0]["extensions"]["code"] == "FORBIDDEN" and calls == []
    (_, body, _), calls = await _both(res_client, admin_only, variables, admin.token)
    assert "errors" not in body and [c[0] for c in calls] == ["admin"]

    # a refusing class: its message and extensions; the last extension's permissions are checked first
    refused = "query($k: RootResKind!) { rootResRefused(kind: $k) { summary } }"
    (_, body, _), calls = await _both(res_client, refused, variables)
    assert body["data"] is None and body["errors"][0]["message"] == "refused by the probe"
    assert body["errors"][0]["extensions"]["reason"] == "PROBE"
    assert [c[0] for c in calls] == ["Recording", "Refusing"]

    not_boolean = "query($k: RootResKind!) { rootResNotBoolean(kind: $k) { summary } }"
    (_, body, _), calls = await _both(res_client, not_boolean, variables)
    assert body["data"] is None and len(body["errors"]) == 1 and calls == []

    # an OAuth client's token without a scope for the field: refused before anything runs, on both paths
    scoped, _ = services.keyring.issue(investor.id, ["INVESTOR"], scopes=["market-data:read"], client_id="probe")
    (_, body, _), calls = await _both(res_client, private, variables, scoped)
    assert body["data"] is None and body["errors"][0]["extensions"]["reason"] == "INSUFFICIENT_SCOPE"
    assert calls == []
    ran = [name for name, _ in fast_runs]
    assert ran == ["rootResPrivate", "rootResPrivate", "rootResAdmin", "rootResAdmin", "rootResRefused"] + [
        "rootResNotBoolean"
    ]
    assert all(direct for _, direct in fast_runs)


async def test_errors_answer_as_the_normal_path_without_internals(res_client, fast_runs, make_user) -> None:  # type: ignore[no-untyped-def]
    user = await make_user()
    missing = "query($k: RootResKind!) { rootResMissing(kind: $k) { summary } }"
    (_, body, _), calls = await _both(res_client, missing, {"k": "FANCY"}, user.token)
    assert body["data"] is None and body["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    assert body["errors"][0]["path"] == ["rootResMissing"] and calls == [("missing", RootResKind.FANCY)]
    crash = "query($k: RootResKind!) { rootResCrash(kind: $k) { summary } }"
    (_, body, _), calls = await _both(res_client, crash, {"k": "PLAIN"})
    assert body["data"] == {"rootResCrash": None} and body["errors"][0]["extensions"]["code"] == "INTERNAL"
    assert "secret" not in str(body) and "Traceback" not in str(body)
    assert fast_runs == [("rootResMissing", True), ("rootResCrash", True)]


async def test_fields_whose_wrapper_does_more_keep_it(res_client, fast_runs) -> None:  # type: ignore[no-untyped-def]
    for name, expected in (("rootResSync", ["sync"]), ("rootResExtended", ["Recording", "Passing", "extended"])):
        query = "query($k: RootResKind!) { %s(kind: $k) { summary } }" % name
        (_, body, _), calls = await _both(res_client, query, {"k": "FANCY"})
        assert "errors" not in body and [c[0] for c in calls] == expected
    assert fast_runs == [("rootResSync", False), ("rootResExtended", False)]


async def test_place_order_is_called_directly(res_client) -> None:  # type: ignore[no-untyped-def]
    graphql_schema = res_client.app.state.graphql_view.schema._schema
    assert direct_resolver(graphql_schema, graphql_schema.mutation_type.fields["placeOrder"]) is not None
    assert direct_resolver(graphql_schema, graphql_schema.query_type.fields["rootResSync"]) is None
