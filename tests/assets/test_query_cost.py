"""The query-cost rule: connections multiply their children by first/last; over budget is refused before
execution with QUERY_TOO_COMPLEX; accepted operations report their cost."""

from __future__ import annotations

from graphql import parse

from core.settings import Settings
from schema import build_schema
from schema.cost import operation_cost

BIG = (
    "{ assets(first: 100) { edges { node { tokens { holdings(first: 100) { edges { node { holder } } } "
    "transfers(first: 100) { edges { node { txHash } } } } } } } }"
)


def cost(query: str, variables: dict | None = None, operation: str | None = None) -> int:  # type: ignore[type-arg]
    schema = build_schema(Settings())
    return operation_cost(schema._schema, parse(query), operation, variables)


def test_fields_cost_one_and_connections_multiply() -> None:
    assert cost("{ me { id email } }") == 3
    # assets 1 + 10 * (edges 1 + node 1 + name 1 + issuer (1 + email 1))
    assert cost("{ assets(first: 10) { edges { node { name issuer { email } } } } }") == 1 + 10 * 5
    # nested: holdings page of 100 inside a page of 100 assets
    inner = 1 + 100 * 3  # holdings(first: 100) { edges { node { holder } } }
    assert cost(
        "{ assets(first: 100) { edges { node { tokens { holdings(first: 100) { edges { node { holder } } } } } } } }"
    ) == 1 + 100 * (1 + 1 + 1 + inner)
    assert cost(BIG) == 1 + 100 * (1 + 1 + 1 + 2 * (1 + 100 * 3))


def test_variables_default_page_and_fragments() -> None:
    q = "query($n: Int) { assets(first: $n) { edges { node { ...F } } } } fragment F on Asset { id name }"
    assert cost(q, {"n": 50}) == 1 + 50 * 4
    assert cost(q, {}) == 1 + 20 * 4  # no first/last: the default page size
    assert cost("{ assets(last: 3) { edges { node { ... on Asset { id } } } } }") == 1 + 3 * 3
    two = "query A { me { id } } query B { assets(first: 2) { edges { cursor } } }"
    assert cost(two, operation="A") == 2 and cost(two, operation="B") == 1 + 2 * 2


async def test_over_budget_is_refused_before_execution(gql, make_user, settings) -> None:
    user = await make_user(roles=["ADMIN"])
    assert cost(BIG) > settings.max_query_cost
    r = await gql(BIG, token=user.token)
    assert r["data"] is None
    error = r["errors"][0]
    assert error["extensions"] == {"code": "QUERY_TOO_COMPLEX", "cost": cost(BIG), "maxCost": settings.max_query_cost}
    # a mutation over budget changes nothing: its selection is priced before it runs
    heavy = (
        'mutation { createAsset(input: {name: "x", type: OTHER, jurisdiction: "DE", currency: "EUR"}) '
        "{ asset { id tokens { holdings(first: 100) { edges { node { holder balance frozen } } } "
        "transfers(first: 100) { edges { node { txHash value blockNumber fromAddress toAddress } } } } "
        "transitions(first: 100) { edges { node { action reason at actorId fromStatus toStatus } } } } } }"
    )
    issuer = await make_user(roles=["ISSUER", "ADMIN"])
    r = await gql(heavy.replace("100", "9000"), token=issuer.token)
    assert gql.error_code(r) == "QUERY_TOO_COMPLEX"
    r = await gql("{ assets { edges { node { id } } } }", token=issuer.token)
    assert r["data"]["assets"]["edges"] == []


async def test_accepted_queries_report_their_cost(gql, make_user) -> None:
    user = await make_user()
    q = "query($n: Int) { assets(first: $n) { edges { node { id name } } } }"
    r = await gql(q, {"n": 7}, token=user.token)
    assert r["extensions"]["cost"] == 1 + 7 * 4
    r = await gql(q, {"n": 70}, token=user.token)  # same document, other page size: not a stale cached cost
    assert r["extensions"]["cost"] == 1 + 70 * 4


async def test_introspection_is_priced_so_aliased_copies_are_refused(gql, settings) -> None:
    from graphql import get_introspection_query

    from schema.cost import INTROSPECTION_SCHEMA_COST

    full = get_introspection_query()  # what GraphiQL sends: fits the default budget
    assert cost(full) >= INTROSPECTION_SCHEMA_COST
    r = await gql(full)
    assert "errors" not in r and r["data"]["__schema"]["queryType"]["name"] == "Query"
    copies = "{ " + " ".join(f"s{i}: __schema {{ types {{ name fields {{ name }} }} }}" for i in range(5)) + " }"
    r = await gql(copies)
    assert gql.error_code(r) == "QUERY_TOO_COMPLEX" and r["data"] is None
    assert cost("{ __typename me { id } }") == 3  # __typename stays a plain field
