"""The asset list: keyset pages stable under inserts, filters, orderings, visibility, and the N+1 guard."""

from __future__ import annotations

from decimal import Decimal

import pytest
from eth_utils import to_checksum_address
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from models.assets import AssetStatus as S
from models.assets import AssetType as T
from models.tokens import Holding, Token

LIST = (
    "query($f: AssetFilter, $o: AssetOrder!, $first: Int, $after: String, $last: Int, $before: String) "
    "{ assets(filter: $f, orderBy: $o, first: $first, after: $after, last: $last, before: $before) "
    "{ edges { cursor node { id name status latestValuation { amount } } } "
    "pageInfo { hasNextPage hasPreviousPage endCursor startCursor } } }"
)


async def page(gql, token, order="CREATED_DESC", f=None, **window):  # type: ignore[no-untyped-def]
    r = await gql(LIST, {"o": order, "f": f, **window}, token=token)
    assert "errors" not in r, r
    return r["data"]["assets"]


async def walk(gql, token, order, size, f=None, between=None):  # type: ignore[no-untyped-def]
    seen, after = [], None
    while True:
        p = await page(gql, token, order, f, first=size, after=after)
        seen += [e["node"]["id"] for e in p["edges"]]
        if not p["pageInfo"]["hasNextPage"]:
            return seen
        after = p["pageInfo"]["endCursor"]
        if between:
            await between()


@pytest.mark.parametrize("order", ["CREATED_DESC", "NAME_ASC", "VALUATION_DESC", "VALUATION_ASC"])
async def test_pages_are_stable_while_rows_are_inserted(order, make_user, make_asset, gql) -> None:
    issuer, admin = await make_user(roles=["ISSUER"]), await make_user(roles=["ADMIN"])
    original = {
        str(await make_asset(issuer.id, name=f"Asset {i:03}", valuation=Decimal(i * 10 % 70))) for i in range(23)
    }
    inserted: list[str] = []
    counter = iter(range(1000))

    async def insert_some() -> None:
        for _ in range(3):  # new rows land before, inside and after the current position
            n = next(counter)
            inserted.append(str(await make_asset(issuer.id, name=f"Asset {n % 30:03}b", valuation=Decimal(n * 7 % 70))))

    seen = await walk(gql, admin.token, order, 4, between=insert_some)
    assert len(seen) == len(set(seen)), "a row was returned twice"
    assert original <= set(seen), "a row present from the start was skipped"
    assert set(seen) <= original | set(inserted)


async def test_backwards_paging_and_window_limits(make_user, make_asset, gql) -> None:
    issuer = await make_user(roles=["ISSUER"])
    for i in range(7):
        await make_asset(issuer.id, name=f"N{i}")
    forward = await walk(gql, issuer.token, "NAME_ASC", 3)
    last = await page(gql, issuer.token, "NAME_ASC", last=3)
    assert [e["node"]["id"] for e in last["edges"]] == forward[-3:]
    assert last["pageInfo"]["hasPreviousPage"] is True
    before = await page(gql, issuer.token, "NAME_ASC", last=3, before=last["pageInfo"]["startCursor"])
    assert [e["node"]["id"] for e in before["edges"]] == forward[-6:-3]
    for window in ({"first": 101}, {"last": 101}, {"first": -1}, {"first": 1, "last": 1}):
        r = await gql(LIST, {"o": "NAME_ASC", **window}, token=issuer.token)
        assert gql.error_code(r) == "BAD_USER_INPUT", window
    created = await page(gql, issuer.token, "CREATED_DESC", first=1)
    r = await gql(LIST, {"o": "NAME_ASC", "first": 1, "after": created["pageInfo"]["endCursor"]}, token=issuer.token)
    assert gql.error_code(r) == "BAD_USER_INPUT"  # a cursor of another ordering
    r = await gql(LIST, {"o": "NAME_ASC", "first": 1, "after": "garbage!"}, token=issuer.token)
    assert gql.error_code(r) == "BAD_USER_INPUT"


async def test_filters_orderings_and_visibility(make_user, make_asset, gql) -> None:
    issuer, other = await make_user(roles=["ISSUER"]), await make_user(roles=["ISSUER"])
    investor, admin = await make_user(roles=["INVESTOR"]), await make_user(roles=["ADMIN"])
    a = await make_asset(
        issuer.id,
        status=S.ACTIVE,
        type=T.BOND,
        name="Alpha 100% Bond",
        valuation=Decimal(5),
        jurisdiction="LU",
        tokens=1,
        chain_id=137,
    )
    b = await make_asset(
        issuer.id, status=S.ACTIVE, type=T.FUND, name="Beta Fund", valuation=Decimal(50), tokens=1, chain_id=1
    )
    c = await make_asset(issuer.id, status=S.DRAFT, type=T.BOND, name="Gamma draft")
    d = await make_asset(other.id, status=S.UNDER_REVIEW, type=T.BOND, name="Delta review")

    async def ids(token, order="NAME_ASC", **f):  # type: ignore[no-untyped-def]
        return [e["node"]["id"] for e in (await page(gql, token, order, f or None, first=100))["edges"]]

    assert await ids(admin.token) == [str(x) for x in (a, b, d, c)]
    assert await ids(investor.token) == [str(a), str(b)]  # public states only
    assert await ids(issuer.token) == [str(a), str(b), str(c)]  # plus their own drafts
    assert await ids(other.token) == [str(a), str(b), str(d)]
    assert await ids(admin.token, status="ACTIVE", type="BOND") == [str(a)]
    assert await ids(admin.token, issuerId=str(other.id)) == [str(d)]
    assert await ids(admin.token, chainId=137) == [str(a)]
    assert await ids(admin.token, jurisdiction="lu") == [str(a)]
    assert await ids(admin.token, search="ETA") == [str(b)]
    assert await ids(admin.token, search="100%") == [str(a)]  # % is a literal, not a wildcard
    assert await ids(admin.token, search="_") == []
    assert await ids(admin.token, "VALUATION_DESC", status="ACTIVE") == [str(b), str(a)]
    assert await ids(admin.token, "NAME_DESC") == [str(x) for x in (c, d, b, a)]


async def test_a_page_of_100_runs_a_fixed_number_of_statements(
    make_user, make_asset, gql, engine: AsyncEngine, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    """Issuer, latest valuation, tokens and their holder counts for 100 assets: one statement each, not 100."""
    issuers = [await make_user(roles=["ISSUER"]) for _ in range(5)]
    admin = await make_user(roles=["ADMIN"])
    for i in range(100):
        await make_asset(issuers[i % 5].id, status=S.ACTIVE, valuation=Decimal(i), tokens=2)
    async with session_factory() as s:
        tokens = (await s.execute(Token.__table__.select())).all()
        for t in tokens[:50]:
            for h in range(3):
                s.add(
                    Holding(
                        chain_id=t.chain_id,
                        token_address=t.address,
                        holder=to_checksum_address(f"0x{h + 1:040x}"),
                        balance=10 + h,
                        updated_block=1,
                    )
                )
        await s.commit()
    query = (
        "query($n: Int!) { assets(first: $n, orderBy: VALUATION_DESC) { edges { node { id name "
        "issuer { id email } latestValuation { amount currency asOf } "
        "tokens { address symbol holderCount } } } } }"
    )
    statements: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        statements.append(statement)

    counts = {}
    event.listen(engine.sync_engine, "before_cursor_execute", count)
    try:
        for n in (10, 100):
            statements.clear()
            r = await gql(query, {"n": n}, token=admin.token)
            assert "errors" not in r, r
            edges = r["data"]["assets"]["edges"]
            assert len(edges) == n
            counts[n] = [
                s for s in statements if not s.lstrip().upper().startswith(("SAVEPOINT", "RELEASE", "ROLLBACK"))
            ]
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", count)
    # the page with issuer, latest valuation and tokens in one statement, then the holder counts' loader
    assert len(counts[100]) == len(counts[10]) == 2, counts[100]
    top = edges[0]["node"]
    assert top["latestValuation"]["amount"] == "99" and top["issuer"]["email"].endswith("@example.com")
    assert len(top["tokens"]) == 2
    assert sum(t["holderCount"] for e in edges for t in e["node"]["tokens"]) == 150


NODE_FIELDS = (
    "id name type status description jurisdiction currency metadata reviewReason createdAt updatedAt issuerId "
    "issuer { id email } latestValuation { id assetId amount currency method asOf source createdAt } "
    "tokens { id assetId chainId chainName address kind name symbol decimals totalSupply paused startBlock "
    "identityRegistry holderCount }"
)


@pytest.mark.parametrize(
    "fields",
    [
        NODE_FIELDS,
        "id issuer { email }",
        "latestValuation { amount } id",
        "tokens { symbol } name",
        "...F",  # a fragment, and the relations under aliases
        "a: issuer { e: email } v: latestValuation { amount method } t: tokens { address decimals } id",
    ],
)
async def test_relations_loaded_with_the_page_equal_the_loaders(fields, make_user, make_asset, gql) -> None:
    """The list loads issuer / latestValuation / tokens in its own statement; `node(id:)` resolves the same fields
    through the DataLoaders. Both must answer the same for every selection and caller (assets without valuation,
    without tokens, with several tokens, another issuer's drafts hidden)."""
    issuers = [await make_user(roles=["ISSUER"]) for _ in range(2)]
    admin, compliance = await make_user(roles=["ADMIN"]), await make_user(roles=["COMPLIANCE"])
    plain = await make_user(roles=[])
    for i in range(9):
        await make_asset(
            issuers[i % 2].id,
            status=(S.ACTIVE, S.DRAFT, S.SUSPENDED)[i % 3],
            valuation=Decimal(i * 3 % 7) if i % 4 else None,
            tokens=i % 3,
            chain_id=(1, 137)[i % 2],
        )
    fragment = "fragment F on Asset { " + NODE_FIELDS + " }"
    list_query = "query($o: AssetOrder!) { assets(first: 50, orderBy: $o) { edges { node { " + fields + " } } } }"
    node_query = "query($id: ID!) { node(id: $id) { ... on Asset { " + fields + " } } }"
    if fields == "...F":
        list_query, node_query = list_query + " " + fragment, node_query + " " + fragment
    for user in (*issuers, admin, compliance, plain):
        for order in ("CREATED_DESC", "VALUATION_ASC", "NAME_DESC"):
            r = await gql(list_query, {"o": order}, token=user.token)
            assert "errors" not in r, r
            listed = [e["node"] for e in r["data"]["assets"]["edges"]]
            ids = (
                await gql(
                    "query($o: AssetOrder!) { assets(first: 50, orderBy: $o) { edges { node { id } } } }",
                    {"o": order},
                    token=user.token,
                )
            )["data"]["assets"]["edges"]
            assert listed, "every caller sees some assets"
            for node, edge in zip(listed, ids, strict=True):
                one = await gql(node_query, {"id": edge["node"]["id"]}, token=user.token)
                assert "errors" not in one, one
                assert one["data"]["node"] == node
