"""Every root field of the schema is in the authorization matrix (tests/authz), and behaves as it says.

Each entry is called as anonymous, as a user of each role and with a read-only API key:
- anonymous on a protected field -> UNAUTHENTICATED;
- a role the entry does not allow -> FORBIDDEN;
- an allowed caller -> anything but UNAUTHENTICATED/FORBIDDEN (NOT_FOUND, BAD_USER_INPUT... are fine); on a
  public field UNAUTHENTICATED is the field's own answer to bad credentials (login, refreshToken), so only
  FORBIDDEN counts as a denial there;
- an API key -> FORBIDDEN for every mutation and subscription, and for queries the entry marks `api_key=False`;
- an OAuth client token (for an owner holding every role) -> FORBIDDEN unless it holds one of the entry's `scopes`;
  with them, allowed.
Queries and mutations go over HTTP through the real ASGI app; subscriptions through `schema.subscribe` with the
viewer built exactly as graphql-transport-ws builds it from `connection_init`.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

import pytest
from graphql import GraphQLError
from starlette.websockets import WebSocket

from core.errors import AppError
from core.oauth_scopes import ALL_SCOPES
from core.opaque_tokens import digest, new_secret
from core.settings import Environment, Settings
from models.identity import ApiKey
from resolvers.viewer import viewer_from_headers
from schema import build_schema
from schema.scopes import FIELD_SCOPES
from server.context import Context
from tests.authz import ROLES, Rule, all_entries

DENIED = {"UNAUTHENTICATED", "FORBIDDEN"}
# A subscription that passed authorization waits for events; this long without an error means "allowed". Ending
# one sooner may cancel its first reads mid-statement, which breaks the test's shared connection (a loaded machine
# took over 1 s for them once).
SUBSCRIPTION_WAIT_S = 2.0


def schema_root_fields() -> list[str]:
    schema = build_schema(Settings(RWA_ENV=Environment.TEST))  # type: ignore[call-arg]
    gql_schema = schema._schema
    names = []
    for root in (gql_schema.query_type, gql_schema.mutation_type, gql_schema.subscription_type):
        if root is not None:
            names += [f"{root.name}.{field}" for field in root.fields]
    return names


SCHEMA_FIELDS = schema_root_fields()
ENTRIES = all_entries()
ALL_NAMES = sorted(set(SCHEMA_FIELDS) | set(ENTRIES))


def test_matrix_lists_exactly_the_schema_fields() -> None:
    missing = sorted(set(SCHEMA_FIELDS) - set(ENTRIES))
    stale = sorted(set(ENTRIES) - set(SCHEMA_FIELDS))
    assert not missing, f"root fields without an entry in tests/authz/<domain>.py: {missing}"
    assert not stale, f"tests/authz entries for fields the schema does not have: {stale}"


def test_entries_are_consistent() -> None:
    for name, rule in ENTRIES.items():
        assert rule.roles <= set(ROLES), f"{name}: unknown roles {set(rule.roles) - set(ROLES)}"
        assert rule.public or rule.roles, f"{name}: a protected field must allow at least one role"
        field = name.partition(".")[2]
        assert field in rule.document, f"{name}: its document does not call {field}"
        assert rule.scopes <= ALL_SCOPES, f"{name}: unknown scopes {set(rule.scopes) - ALL_SCOPES}"
        declared = FIELD_SCOPES.get(name, frozenset())
        assert rule.scopes == declared, (
            f"{name}: the matrix says scopes {sorted(rule.scopes)}, the schema "
            f"(core/oauth_scopes.py) {sorted(declared)}"
        )


def codes_of(errors: list[dict[str, Any]] | None) -> list[str]:
    return [(e.get("extensions") or {}).get("code", "<no code>") for e in errors or []]


async def make_api_key(session_factory, user_id: uuid.UUID) -> str:  # type: ignore[no-untyped-def]
    secret = new_secret("rwak")
    async with session_factory() as s:
        s.add(ApiKey(id=uuid.uuid4(), user_id=user_id, name="matrix", prefix=secret[:12], key_hash=digest(secret)))
        await s.commit()
    return secret


class Caller:
    """One identity calling one entry; `call` returns the error codes of the response."""

    def __init__(self, label: str, authorization: str | None) -> None:
        self.label = label
        self.authorization = authorization


async def call_http(gql, rule: Rule, caller: Caller) -> list[str]:  # type: ignore[no-untyped-def]
    headers = {"Authorization": caller.authorization} if caller.authorization else {}
    result = await gql(rule.document, rule.variables, headers=headers)
    assert "errors" in result or "data" in result, f"{caller.label}: not a GraphQL response: {result}"
    for error in result.get("errors") or []:
        assert "code" in (error.get("extensions") or {}), f"{caller.label}: error without a code: {error}"
    return codes_of(result.get("errors"))


def _error_code(error: GraphQLError) -> str:
    """What a graphql-transport-ws client sees: extensions.code (a missing code shows in the failure)."""
    return (error.extensions or {}).get("code") or "<no code>"


async def call_subscription(schema, services, rule: Rule, caller: Caller) -> list[str]:  # type: ignore[no-untyped-def]
    """Like graphql-transport-ws: the viewer comes from the connection_init `authorization` payload."""
    socket = WebSocket(
        {"type": "websocket", "path": "/graphql", "headers": [], "client": ("127.0.0.1", 50000)},
        receive=_never,
        send=_never,
    )
    if caller.authorization:
        try:
            viewer = await viewer_from_headers(services, caller.authorization, None, "127.0.0.1")
        except AppError as exc:  # the socket would be rejected at connection_init
            return [exc.code.value]
    else:
        from resolvers.viewer import Viewer

        viewer = Viewer(client_ip="127.0.0.1")
    context = Context(services, socket, socket, viewer)
    result = await schema.subscribe(rule.document, variable_values=rule.variables, context_value=context)
    try:
        if not hasattr(result, "__anext__"):  # rejected before execution (parse/validation)
            return [_error_code(e) for e in result.errors or []]
        try:
            first = await asyncio.wait_for(result.__anext__(), SUBSCRIPTION_WAIT_S)
        except (TimeoutError, StopAsyncIteration):
            return []
        return [_error_code(e) for e in first.errors or []]
    finally:
        if hasattr(result, "aclose"):
            await result.aclose()
        await context.close()


async def hold_subscription(schema, services, rule: Rule, caller: Caller):  # type: ignore[no-untyped-def]
    """Start a subscription and keep it waiting for events; returns an async function that ends it."""
    viewer = await viewer_from_headers(services, caller.authorization, None, "127.0.0.1")
    socket = WebSocket(
        {"type": "websocket", "path": "/graphql", "headers": [], "client": ("127.0.0.1", 50001)},
        receive=_never,
        send=_never,
    )
    context = Context(services, socket, socket, viewer)
    result = await schema.subscribe(rule.document, variable_values=rule.variables, context_value=context)
    waiting = asyncio.ensure_future(result.__anext__()) if hasattr(result, "__anext__") else None
    if waiting is not None:
        # until its first event (its own reads done) or, for one that only waits for events, the same window as a
        # caller's: the callers' statements go through the same test connection, which takes one at a time
        await asyncio.wait({waiting}, timeout=SUBSCRIPTION_WAIT_S)

    async def release() -> None:
        if waiting is not None:
            waiting.cancel()
            with contextlib.suppress(BaseException):
                await waiting
        if hasattr(result, "aclose"):
            with contextlib.suppress(Exception):
                await result.aclose()
        await context.close()

    return release


async def _never(*args: Any) -> Any:
    raise RuntimeError("not a real socket")


@pytest.mark.parametrize("name", ALL_NAMES)
async def test_field_authorization(name: str, gql, make_user, services, session_factory) -> None:  # type: ignore[no-untyped-def]
    assert name in SCHEMA_FIELDS, f"{name} is in tests/authz but not in the schema"
    assert name in ENTRIES, f"{name} has no entry in tests/authz/<domain>.py"
    rule = ENTRIES[name]
    root = name.partition(".")[0]
    read_only_denied = root != "Query" or not rule.api_key

    callers: list[tuple[Caller, bool]] = [(Caller("anonymous", None), rule.public)]
    for role in ROLES:
        user = await make_user(roles=[role])
        callers.append((Caller(role, f"Bearer {user.token}"), rule.public or role in rule.roles))
    # the key's owner holds every role, so only the read-only rule can deny it
    owner = await make_user(roles=list(ROLES))
    api_key = await make_api_key(session_factory, owner.id)
    callers.append((Caller("api-key", f"Bearer {api_key}"), not read_only_denied))

    # OAuth client tokens acting for that owner: every scope but the field's is refused; the field's own is let in
    others = sorted(ALL_SCOPES - rule.scopes)
    token, _ = services.keyring.issue(owner.id, list(ROLES), scopes=others, client_id="rwac_matrix")
    callers.append((Caller("client-without-scope", f"Bearer {token}"), False))
    if rule.scopes:
        token, _ = services.keyring.issue(owner.id, list(ROLES), scopes=sorted(rule.scopes), client_id="rwac_matrix")
        callers.append((Caller("client-with-scope", f"Bearer {token}"), True))

    schema = build_schema(services.settings) if root == "Subscription" else None
    holder = None
    if schema is not None:
        # Subscriptions with equal documents share one execution (schema/shared_subscriptions.py): keep one open
        # for a user holding every role, so a caller who must be denied cannot ride on it.
        holder = await hold_subscription(schema, services, rule, Caller("holder", f"Bearer {owner.token}"))
    problems = []
    try:
        for caller, allowed in callers:
            if schema is not None:
                codes = await call_subscription(schema, services, rule, caller)
            else:
                codes = await call_http(gql, rule, caller)
            if allowed:
                if (DENIED if not rule.public else {"FORBIDDEN"}) & set(codes):
                    problems.append(f"{caller.label} should be allowed, got {codes}")
            else:
                expected = "UNAUTHENTICATED" if caller.label == "anonymous" else "FORBIDDEN"
                if expected not in codes:
                    problems.append(f"{caller.label} should get {expected}, got {codes or 'no error'}")
    finally:
        if holder is not None:
            await holder()
    assert not problems, f"{name}: " + "; ".join(problems)
