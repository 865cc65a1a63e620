"""Defects the fuzz gate found, each pinned as a deterministic case so it cannot hide behind a random draw."""

from __future__ import annotations

import httpx
import pytest

from tests.fuzz.world import World

# a root field whose non-null child fails (a malformed cursor: BAD_USER_INPUT) while a sibling child still has a
# statement in flight on the same session
FAILING_CHILD = (
    "query($a: UUID!) { asset(id: $a) { name tokens { holderCount } "
    'transitions(after: "USDAA0847") { edges { cursor } } } }'
)
PLAIN = "query($a: UUID!) { asset(id: $a) { name } }"


async def test_a_failed_child_field_leaves_no_closed_connection_in_the_pool(
    fuzz_client: httpx.AsyncClient, world: World
) -> None:
    """Found by the gate (issue 12): the root field's session was closed while a sibling resolver's statement was
    still running; the closed connection went back to the pool and the next request on it answered INTERNAL
    ("cannot call PreparedStatement.fetch(): the underlying connection is closed")."""
    headers = {"Authorization": f"Bearer {world.token('ADMIN')}"}
    for asset_id in world.named["assetId"]:
        failing = await fuzz_client.post(
            "/graphql", json={"query": FAILING_CHILD, "variables": {"a": asset_id}}, headers=headers
        )
        assert failing.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", failing.text
        for _ in range(12):  # more than the pool's connections: every one of them is used again
            plain = await fuzz_client.post(
                "/graphql", json={"query": PLAIN, "variables": {"a": asset_id}}, headers=headers
            )
            assert plain.json().get("errors") is None, plain.text


OPEN_MARKET = (
    "mutation($t: UUID!, $q: String!, $tick: Decimal!, $lot: Decimal!, $min: Decimal!, $s: String) "
    "{ openMarket(input: {tokenId: $t, quoteCurrency: $q, tickSize: $tick, lotSize: $lot, minNotional: $min, "
    "symbol: $s}) { market { id } errors { code field } } }"
)


@pytest.mark.parametrize(
    "symbol, tick, lot, minimum, field",
    [
        (
            "W1sidiIsICJBc3NldCAwMjc4OWMiXSwgWyJ1IiwgIjAyNzg5YzEwLTRlMjktNDk0NC05NTFlLTQzN2JiNWUyNjUyOSJdXQ",
            "1",
            "1",
            "0",
            "symbol",
        ),  # found by the gate: 51+ characters overflowed markets.symbol VARCHAR(50) -> INTERNAL
        ("   ", "1", "1", "0", "symbol"),
        ("RWA\x07/USD", "1", "1", "0", "symbol"),
        (None, "1E+25", "1", "0", "tickSize"),  # NUMERIC(38, 18) holds 20 digits before the point
        (None, "0.01", "100000000000000000000", "0", "lotSize"),
        (None, "0.01", "1", "1E+21", "minNotional"),
    ],
)
async def test_open_market_refuses_what_its_columns_cannot_hold(
    fuzz_client: httpx.AsyncClient, world: World, symbol, tick, lot, minimum, field
) -> None:  # type: ignore[no-untyped-def]
    variables = {
        "t": world.named["tokenId"][0],
        "q": world.named["currency"][0],
        "tick": tick,
        "lot": lot,
        "min": minimum,
        "s": symbol,
    }
    resp = await fuzz_client.post(
        "/graphql",
        json={"query": OPEN_MARKET, "variables": variables},
        headers={"Authorization": f"Bearer {world.token('ADMIN')}"},
    )
    [error] = resp.json()["data"]["openMarket"]["errors"]
    assert (error["code"], error["field"]) == ("BAD_USER_INPUT", ["input", field]), resp.text


async def test_values_longer_or_larger_than_their_columns_are_refused(
    fuzz_client: httpx.AsyncClient, world: World
) -> None:
    """Found while sweeping the class the gate found in openMarket: a 300-character bankReference (VARCHAR(120)) and
    a creditCash of 1E+25 (ledger NUMERIC(38, 18)) reached the database and came back INTERNAL."""
    admin = {"Authorization": f"Bearer {world.token('ADMIN')}"}
    cases = [
        (
            "mutation($p: UUID!, $r: String!) { confirmBankTransfer(input: {paymentId: $p, bankReference: $r}) "
            "{ payment { id } errors { code field } } }",
            {"p": world.named["paymentId"][1], "r": "R" * 121},
            "bankReference",
        ),
        (
            'mutation($u: UUID!, $a: Decimal!) { creditCash(input: {userId: $u, amount: $a, currency: "USD", '
            'reference: "big"}) { cashBalances { available } errors { code field } } }',
            {"u": str(world.accounts["INVESTOR"].id), "a": "1E+25"},
            "amount",
        ),
    ]
    for query, variables, field in cases:
        resp = await fuzz_client.post("/graphql", json={"query": query, "variables": variables}, headers=admin)
        body = resp.json()
        if body.get("errors"):
            error = body["errors"][0]
            code, at = error["extensions"]["code"], error["extensions"].get("field")
        else:  # an expected failure is payload data: its field is the input path
            [error] = next(iter(body["data"].values()))["errors"]
            code, at = error["code"], error["field"][-1]
        assert (code, at) == ("BAD_USER_INPUT", field), resp.text
    ok = await fuzz_client.post(
        "/graphql",
        headers=admin,
        json={
            "query": "mutation($p: UUID!, $r: String!) { confirmBankTransfer(input: {paymentId: $p, bankReference: $r}) "
            "{ payment { bankReference } } }",
            "variables": {"p": world.named["paymentId"][1], "r": "R" * 120},
        },
    )
    assert ok.json()["data"]["confirmBankTransfer"]["payment"]["bankReference"] == "R" * 120, ok.text
