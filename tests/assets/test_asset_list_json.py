"""The asset list rendered by Postgres (resolvers/assets/page_json.py) against the objects' path: the same answer,
key order included, for generated selections, filters, orderings, windows and viewers; what it does not render
(fields with resolvers of their own, websockets, other root fields) goes the objects' way."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from eth_utils import to_checksum_address
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.websockets import WebSocket

from models.assets import Asset, AssetStatus, AssetType, Valuation, ValuationMethod
from models.tokens import Token, TokenKind
from resolvers.assets import asset_page, page_json
from resolvers.viewer import viewer_from_headers
from schema import build_schema
from server.context import Context

NAMES = [
    "Plain bond",
    'Quote "this" \\ back\\slash',
    "Ünïcødé 資產 🏦 name",
    "tab\tnew\nline",
    "100% _under_score",
    "Zeta",
    "alpha",
    "Ωmega",
]
AMOUNTS = [
    None,
    Decimal("0"),
    Decimal("0.000000001"),
    Decimal("0.000001"),
    Decimal("1000"),
    Decimal("123.450"),
    Decimal("-5.5"),
    Decimal("99999999999999999999.123456789012345678"),
    Decimal("1000"),
]


@dataclass
class World:
    tokens: dict[str, str | None]  # label -> Authorization header value (None: anonymous)
    issuer_ids: list[str]


async def seed(session_factory: async_sessionmaker[AsyncSession], make_user) -> World:  # type: ignore[no-untyped-def]
    issuer_a = await make_user(roles=["ISSUER"], email="issuer-a@example.com")
    issuer_b = await make_user(roles=["ISSUER", "INVESTOR"], email="ïssuer-b+tag@example.com")
    admin = await make_user(roles=["ADMIN"])
    compliance = await make_user(roles=["COMPLIANCE"])
    investor = await make_user(roles=["INVESTOR"])
    statuses = list(AssetStatus)
    types = [AssetType.BOND, AssetType.FUND, AssetType.OTHER]
    async with session_factory() as s:
        for i in range(26):
            asset_id = uuid.uuid4()
            amount = AMOUNTS[i % len(AMOUNTS)]
            created = datetime(2026, 1, 1 + i % 20, 9, i, 0, 0 if i % 3 else 250000 + i, tzinfo=UTC)
            s.add(
                Asset(
                    id=asset_id,
                    issuer_id=(issuer_a if i % 2 else issuer_b).id,
                    name=NAMES[i % len(NAMES)] + ("" if i < len(NAMES) else f" {i}"),
                    type=types[i % len(types)],
                    status=statuses[i % len(statuses)],
                    description="" if i % 4 else "Described ✓",
                    jurisdiction=["DE", "FR", "US"][i % 3],
                    currency="EUR",
                    attributes={"n": i},
                    review_reason=None if i % 5 else 'needs "more" docs',
                    created_at=created,
                    updated_at=created,
                )
            )
            await s.flush()
            if amount is not None:
                v = Valuation(
                    id=uuid.uuid4(),
                    asset_id=asset_id,
                    amount=amount,
                    currency="USD" if i % 2 else "EUR",
                    method=list(ValuationMethod)[i % len(ValuationMethod)],
                    as_of=date(2025, 12, 1 + i % 28),
                    source="appraiser ☃",
                    created_at=created,
                )
                s.add(v)
                await s.flush()
                a = await s.get(Asset, asset_id)
                assert a is not None
                a.latest_valuation_id, a.latest_valuation_amount = v.id, amount
                a.latest_valuation_currency, a.latest_valuation_as_of = v.currency, v.as_of
            for k in range(i % 4):
                s.add(
                    Token(
                        id=uuid.uuid4(),
                        chain_id=[1, 137, 56][k % 3],
                        address=to_checksum_address("0x" + uuid.uuid4().hex + uuid.uuid4().hex[:8]),
                        kind=TokenKind.SECURITY,
                        asset_id=asset_id,
                        name=f"Token {k} ✨",
                        symbol=f"T{k}",
                        decimals=[18, 6, 0][k % 3],
                        total_supply=10**30 + k if k % 2 else 0,
                        paused=bool(k % 2),
                        identity_registry=None if k % 2 else to_checksum_address("0x" + "ab" * 20),
                        start_block=k,
                        created_at=created,  # equal: ordered by id next
                    )
                )
        await s.commit()
    users = {"issuer_a": issuer_a, "issuer_b": issuer_b, "admin": admin, "compliance": compliance, "investor": investor}
    return World(
        tokens={**{label: f"Bearer {u.token}" for label, u in users.items()}, "anonymous": None},
        issuer_ids=[str(issuer_a.id), str(issuer_b.id)],
    )


# --- generated selections --------------------------------------------------------------------------------------

ASSET_SCALARS = [
    "id",
    "name",
    "type",
    "status",
    "description",
    "jurisdiction",
    "currency",
    "reviewReason",
    "createdAt",
    "updatedAt",
    "issuerId",
    "__typename",
]
OBJECTS = {
    "latestValuation": ["id", "assetId", "amount", "currency", "method", "asOf", "source", "createdAt", "__typename"],
    "issuer": ["id", "email", "__typename"],
    "tokens": [
        "id",
        "assetId",
        "chainId",
        "address",
        "kind",
        "name",
        "symbol",
        "decimals",
        "totalSupply",
        "paused",
        "identityRegistry",
        "__typename",
    ],
}
# fields the JSON path does not render (resolvers of their own): the answer must still be the same
UNSUPPORTED = ["metadata", "valuations(first: 1) { edges { node { amount } } }"]
UNSUPPORTED_INNER = {"latestValuation": 'amountIn(currency: "EUR")', "tokens": "chainName", "issuer": None}

directives = st.sampled_from(
    ["", "", "", " @skip(if: $no)", " @include(if: $yes)", " @skip(if: true)", " @include(if: false)"]
)
aliases = st.sampled_from(["", "", "", "x1: ", "x2: ", "y_: "])


@st.composite
def leaf_fields(draw, names: list[str]) -> str:  # type: ignore[no-untyped-def]
    picked = draw(st.lists(st.sampled_from(names), min_size=1, max_size=6))
    out = []
    for n, name in enumerate(picked):
        alias = draw(aliases)
        alias = f"{alias[:-2]}_{n}: " if alias else ""  # distinct aliases: no conflicting merges
        out.append(f"{alias}{name}{draw(directives)}")
    return " ".join(out)


@st.composite
def node_selection(draw, allow_unsupported: bool) -> str:  # type: ignore[no-untyped-def]
    parts = [draw(leaf_fields(ASSET_SCALARS))]
    for name, inner in OBJECTS.items():
        if draw(st.booleans()):
            body = draw(leaf_fields(inner))
            extra = UNSUPPORTED_INNER[name]
            if allow_unsupported and extra and draw(st.integers(0, 5)) == 0:
                body += " " + extra
            if draw(st.booleans()):
                body = f"... on {'Valuation' if name == 'latestValuation' else 'Token' if name == 'tokens' else 'Issuer'} {{ {body} }}"
            alias = draw(aliases)
            alias = f"{alias[:-2]}{name}: " if alias else ""  # distinct per field: no conflicting merges
            parts.append(f"{alias}{name}{draw(directives)} {{ {body} }}")
    if allow_unsupported and draw(st.integers(0, 4)) == 0:
        parts.append(draw(st.sampled_from(UNSUPPORTED)))
    wrap = draw(st.sampled_from(["plain", "plain", "inline", "node", "include", "fragment"]))
    if wrap == "inline":
        parts = [f"... on Asset {{ {parts[0]} }}", *parts[1:]]
    elif wrap == "node":
        parts.append("... on Node { id __typename }")
    elif wrap == "include":
        parts = [f"... @include(if: $yes) {{ {parts[0]} }}", *parts[1:]]
    elif wrap == "fragment":
        parts.append("...Bits")
    draw(st.randoms()).shuffle(parts)
    if draw(st.booleans()):  # the same field twice: merged
        parts.append("id name")
    return " ".join(parts)


@st.composite
def cases(draw) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    members = []
    if draw(st.integers(0, 4)):
        edge = [
            "cursor" + draw(directives),
            f"node {{ {draw(node_selection(allow_unsupported=draw(st.booleans())))} }}",
        ]
        if draw(st.booleans()):
            edge.append("__typename")
        draw(st.randoms()).shuffle(edge)
        members.append(f"{draw(aliases)}edges {{ {' '.join(edge)} }}")
    if draw(st.booleans()):
        members.append("edges { cursor }")  # merged with the first, unaliased
    if draw(st.booleans()):
        members.append(
            f"pageInfo {{ {draw(leaf_fields(['hasNextPage', 'hasPreviousPage', 'startCursor', 'endCursor', '__typename']))} }}"
        )
    if draw(st.booleans()):
        members.append("totalCount")
    if draw(st.booleans()):
        members.append("__typename")
    if not members:
        members.append("totalCount")
    draw(st.randoms()).shuffle(members)
    values = {
        "status": st.sampled_from([s.value for s in AssetStatus]),
        "type": st.sampled_from(["BOND", "FUND", "OTHER"]),
        "jurisdiction": st.sampled_from(["DE", "fr", "US"]),
        "search": st.sampled_from(["a", "%", "_", "ü", "資", '"', "\\", "Zeta"]),
        "chainId": st.sampled_from([1, 137]),
        "issuer": st.integers(0, 1),
    }
    keys = draw(
        st.lists(st.sampled_from(sorted(values)), max_size=2, unique=True).filter(lambda k: len(k) < 2 or "type" in k)
    )
    flt = {k: draw(values[k]) for k in keys}  # few filters at once: most pages are not empty
    return {
        "members": " ".join(members),
        "filter": flt,
        "order": draw(
            st.sampled_from(["CREATED_ASC", "CREATED_DESC", "NAME_ASC", "NAME_DESC", "VALUATION_ASC", "VALUATION_DESC"])
        ),
        "window": draw(st.sampled_from(["first", "last", "none"])),
        "size": draw(st.sampled_from([0, 1, 2, 3, 4, 6, 6, 6])),
        "cursor": draw(st.sampled_from([None, None, None, "after", "after", "before", "bad"])),
        "cursor_at": draw(st.integers(0, 30)),
        "viewer": draw(
            st.sampled_from(
                ["issuer_a", "issuer_b", "admin", "compliance", "investor", "investor", "issuer_a", "anonymous"]
            )
        ),
        "yes": draw(st.booleans()),
        "no": draw(st.booleans()),
        "literal_args": draw(st.booleans()),
    }


def generated(n: int) -> list[dict[str, Any]]:
    """n cases drawn by hypothesis (derandomized: the same cases every run)."""
    out: list[dict[str, Any]] = []

    @settings(max_examples=n, derandomize=True, database=None, suppress_health_check=list(HealthCheck), deadline=None)
    @given(cases())
    def collect(case: dict[str, Any]) -> None:
        out.append(case)

    collect()
    return out


def ordered(text: str) -> Any:
    """The JSON with every object as its list of (key, value) pairs: key order compared too."""
    return json.loads(text, object_pairs_hook=list)


def build(case: dict[str, Any], world: World, cursors: list[str]) -> tuple[str, dict[str, Any]]:
    flt = dict(case["filter"])
    if "issuer" in flt:
        flt["issuerId"] = world.issuer_ids[flt.pop("issuer")]
    args: dict[str, Any] = {"filter": flt, "orderBy": case["order"]}
    if case["window"] != "none":
        args[case["window"]] = case["size"]
    if case["cursor"] == "bad":
        args["after"] = "garbage!"
    elif case["cursor"] and cursors:
        args[case["cursor"]] = cursors[case["cursor_at"] % len(cursors)]
    fragment = "fragment Bits on Asset { status latestValuation { amount } tokens { symbol } }"
    body = f"assets(%s) {{ {case['members']} }}"
    uses = body + case["members"]
    variables: dict[str, Any] = {}
    declared = []
    for name in ("yes", "no"):
        if f"${name}" in uses:
            declared.append(f"${name}: Boolean!")
            variables[name] = case[name]
    if case["literal_args"]:
        rendered = ", ".join(f"{k}: {_literal(k, v)}" for k, v in args.items())
    else:
        types = {
            "filter": "AssetFilter",
            "orderBy": "AssetOrder!",
            "first": "Int",
            "last": "Int",
            "after": "String",
            "before": "String",
        }
        declared += [f"${k}: {types[k]}" for k in args]
        variables.update(args)
        rendered = ", ".join(f"{k}: ${k}" for k in args)
    head = f"query({', '.join(declared)})" if declared else "query"
    query = f"{head} {{ {body % rendered} }}"
    if "...Bits" in query:
        query += " " + fragment
    return query, variables


def _literal(key: str, value: Any) -> str:
    if key == "filter":
        inner = []
        for k, v in value.items():
            inner.append(f"{k}: {v}" if k in ("status", "type") else f"{k}: {json.dumps(v)}")
        return "{" + ", ".join(inner) + "}"
    if key == "orderBy":
        return value
    return json.dumps(value)


async def post(client, query: str, variables: dict[str, Any], authorization: str | None) -> str:  # type: ignore[no-untyped-def]
    headers = {"Authorization": authorization} if authorization else {}
    resp = await client.post("/graphql", json={"query": query, "variables": variables}, headers=headers)
    assert resp.status_code == 200, resp.text
    return resp.text


@pytest.fixture
def json_pages(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the pages the JSON path rendered (asset_page.fetch_json_page calls)."""
    calls: list[int] = []
    real = asset_page.fetch_json_page

    async def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return await real(*args, **kwargs)

    monkeypatch.setattr(asset_page, "fetch_json_page", counted)
    return calls


async def both(client, monkeypatch, query, variables, authorization):  # type: ignore[no-untyped-def]
    monkeypatch.setattr(page_json, "ENABLED", True)
    fast = await post(client, query, variables, authorization)
    monkeypatch.setattr(page_json, "ENABLED", False)
    slow = await post(client, query, variables, authorization)
    monkeypatch.setattr(page_json, "ENABLED", True)
    return fast, slow


async def test_generated_selections_answer_as_the_objects_path(
    client, session_factory, make_user, monkeypatch, json_pages
) -> None:  # type: ignore[no-untyped-def]
    world = await seed(session_factory, make_user)
    admin = world.tokens["admin"]
    cursors: dict[str, list[str]] = {}
    for order in ("CREATED_ASC", "CREATED_DESC", "NAME_ASC", "NAME_DESC", "VALUATION_ASC", "VALUATION_DESC"):
        monkeypatch.setattr(page_json, "ENABLED", False)
        text = await post(client, f"{{ assets(first: 100, orderBy: {order}) {{ edges {{ cursor }} }} }}", {}, admin)
        cursors[order] = [e["cursor"] for e in json.loads(text)["data"]["assets"]["edges"]]
    rendered = 0
    for case in generated(200):
        query, variables = build(case, world, cursors[case["order"]])
        before = len(json_pages)
        fast, slow = await both(client, monkeypatch, query, variables, world.tokens[case["viewer"]])
        assert ordered(fast) == ordered(slow), (query, variables, case["viewer"], fast, slow)
        rendered += len(json_pages) - before
    assert rendered >= 100, f"only {rendered} pages went through the JSON path"


CANONICAL = (
    "{ assets(first: 50, filter: {status: ACTIVE, type: BOND}, orderBy: VALUATION_DESC) { edges { cursor node "
    "{ id name status type latestValuation { amount currency } issuer { id email } "
    "tokens { chainId address symbol decimals } } } pageInfo { hasNextPage endCursor } } }"
)


async def test_the_canonical_list_and_every_viewer_see_what_they_saw(
    client, session_factory, make_user, monkeypatch, json_pages
) -> None:  # type: ignore[no-untyped-def]
    world = await seed(session_factory, make_user)
    query = CANONICAL.replace("filter: {status: ACTIVE, type: BOND}, ", "")
    seen = {}
    for label, authorization in world.tokens.items():
        fast, slow = await both(client, monkeypatch, query, {}, authorization)
        assert ordered(fast) == ordered(slow), label
        seen[label] = json.loads(fast)
    assert len(json_pages) == 5  # every signed-in viewer; the anonymous caller is refused before the resolver
    assert seen["anonymous"]["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    count = {label: len(v["data"]["assets"]["edges"]) for label, v in seen.items() if label != "anonymous"}
    assert count["admin"] == count["compliance"] == 26
    statuses = {e["node"]["status"] for e in seen["investor"]["data"]["assets"]["edges"]}
    assert statuses == {"TOKENIZING", "ACTIVE", "SUSPENDED", "REDEEMING", "RETIRED"}
    drafts = {
        label: {e["node"]["issuer"]["email"] for e in v["data"]["assets"]["edges"] if e["node"]["status"] == "DRAFT"}
        for label, v in seen.items()
        if label != "anonymous"
    }
    assert drafts["issuer_a"] == {"issuer-a@example.com"}  # their own drafts only
    assert drafts["investor"] == set() and len(drafts["admin"]) == 2


async def test_what_it_does_not_render_goes_the_objects_way(
    client, session_factory, make_user, monkeypatch, json_pages
) -> None:  # type: ignore[no-untyped-def]
    world = await seed(session_factory, make_user)
    admin = world.tokens["admin"]
    declined = [
        "{ assets(first: 3) { edges { node { id metadata } } } }",
        "{ assets(first: 3) { edges { node { tokens { chainName } } } } }",
        "{ assets(first: 3) { edges { node { tokens { startBlock } } } } }",
        '{ assets(first: 3) { edges { node { latestValuation { amountIn(currency: "EUR") } } } } }',
        "{ assets(first: 3) { edges { node { valuations { edges { node { id } } } } } } }",
        '{ assets(first: 3) { edges { node { id } } } asset(id: "00000000-0000-0000-0000-000000000000") { id } }',
    ]
    for query in declined:
        fast, slow = await both(client, monkeypatch, query, {}, admin)
        assert ordered(fast) == ordered(slow), query  # amountIn's missing FX rates included
    assert json_pages == []
    await post(client, "{ a: assets(first: 2) { edges { node { id } } } b: assets(last: 1) { totalCount } }", {}, admin)
    assert len(json_pages) == 2
    # errors come from the same checks, in the same words
    for query in (
        '{ assets(first: 1, after: "garbage!") { edges { cursor } } }',
        "{ assets(first: 1, last: 1) { totalCount } }",
    ):
        fast, slow = await both(client, monkeypatch, query, {}, admin)
        assert ordered(fast) == ordered(slow) and "errors" in json.loads(fast)


async def test_a_websocket_operation_gets_objects(services, session_factory, make_user, json_pages) -> None:  # type: ignore[no-untyped-def]
    """graphql-transport-ws runs queries too, and encodes them with json.dumps: never a Fragment there."""
    world = await seed(session_factory, make_user)
    socket = WebSocket(
        {"type": "websocket", "path": "/graphql", "headers": [], "client": ("127.0.0.1", 50000)},
        receive=_never,
        send=_never,
    )
    viewer = await viewer_from_headers(services, world.tokens["admin"], None, "127.0.0.1")
    context = Context(services, socket, socket, viewer)
    schema = build_schema(services.settings)
    try:
        result = await schema.execute(CANONICAL.replace("status: ACTIVE, ", ""), context_value=context)
    finally:
        await context.close()
    assert result.errors is None
    assert isinstance(result.data["assets"], dict) and result.data["assets"]["edges"]
    assert json_pages == []


async def _never(*args: Any) -> Any:
    raise RuntimeError("not a real socket")


async def test_get_persisted_and_cached_answers_carry_the_rendered_page(
    client, session_factory, make_user, monkeypatch, json_pages
) -> None:  # type: ignore[no-untyped-def]
    """A GET persisted query and the response cache's stored answer are the bytes the JSON path rendered."""
    world = await seed(session_factory, make_user)
    headers = {"Authorization": world.tokens["investor"]}
    query = CANONICAL.replace(", type: BOND", "")
    digest = hashlib.sha256(query.encode()).hexdigest()
    persisted = {"persistedQuery": {"version": 1, "sha256Hash": digest}}
    # registered anonymously: refused (UNAUTHENTICATED, so not stored by the response cache), the query kept
    registered = await client.post("/graphql", json={"query": query, "extensions": persisted})
    assert registered.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED", registered.text
    got = await client.get("/graphql", params={"extensions": json.dumps(persisted)}, headers=headers)
    again = await client.get("/graphql", params={"extensions": json.dumps(persisted)}, headers=headers)
    assert got.status_code == again.status_code == 200
    assert got.headers["cache-control"] == "private, no-cache" and "etag" in got.headers
    assert (got.headers["x-cache"], again.headers["x-cache"]) == ("MISS", "HIT")
    assert again.content == got.content and json_pages == [1]  # executed once, by the JSON path; then stored
    monkeypatch.setattr(page_json, "ENABLED", False)
    objects = await post(client, "query Objects " + query, {}, headers["Authorization"])
    assert ordered(got.text) == ordered(objects)
    assert json.loads(got.text)["data"]["assets"]["edges"], got.text
