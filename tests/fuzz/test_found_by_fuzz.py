"""Defects the fuzz gate found, each pinned as a deterministic case so it cannot hide behind a random draw."""

from __future__ import annotations

import json

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
        (None, "0.01", "1", "1.0000000000000000001", "minNotional"),  # NUMERIC(38, 18) rounded the 19th decimal
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


UPDATE_ASSET = (
    "mutation($id: UUID!, $i: UpdateAssetInput!) { updateAsset(id: $id, input: $i) "
    "{ asset { name type jurisdiction currency } errors { code field } } }"
)


async def test_update_asset_refuses_null_for_what_an_asset_always_has(
    fuzz_client: httpx.AsyncClient, world: World
) -> None:
    """Found by the outside sweep (hostile variables against `rwa serve`): `updateAsset(input: {name: null})` (and
    type, jurisdiction, currency) reached `.strip()` / the metadata schemas with None and came back INTERNAL."""
    issuer = {"Authorization": f"Bearer {world.token('ISSUER')}"}
    created = await fuzz_client.post(
        "/graphql",
        headers=issuer,
        json={
            "query": 'mutation { createAsset(input: {name: "Null probe", type: OTHER, jurisdiction: "DE", '
            'currency: "EUR"}) { asset { id } errors { code } } }'
        },
    )
    asset_id = created.json()["data"]["createAsset"]["asset"]["id"]
    before = {"name": "Null probe", "type": "OTHER", "jurisdiction": "DE", "currency": "EUR"}
    for field in before:
        resp = await fuzz_client.post(
            "/graphql", headers=issuer, json={"query": UPDATE_ASSET, "variables": {"id": asset_id, "i": {field: None}}}
        )
        assert resp.json()["data"]["updateAsset"] == {
            "asset": None,
            "errors": [{"code": "BAD_USER_INPUT", "field": ["input", field]}],
        }, resp.text
    unchanged = await fuzz_client.post(
        "/graphql", headers=issuer, json={"query": UPDATE_ASSET, "variables": {"id": asset_id, "i": {}}}
    )
    assert unchanged.json()["data"]["updateAsset"]["asset"] == before, unchanged.text


async def test_market_maker_report_to_on_the_first_day_of_the_calendar(
    fuzz_client: httpx.AsyncClient, world: World
) -> None:
    """Found by the outside sweep: `marketMakerReport(to: "0001-01-01T00:00:00Z")` without `from` computed
    `to - 1 day`, which leaves datetime's range (OverflowError -> INTERNAL)."""
    query = "query($m: UUID!, $t: DateTime) { marketMakerReport(marketId: $m, to: $t) { __typename } }"
    admin = {"Authorization": f"Bearer {world.token('ADMIN')}"}
    for to in ("0001-01-01T00:00:00Z", "0001-01-01T23:59:59.999999+00:00"):
        resp = await fuzz_client.post(
            "/graphql", headers=admin, json={"query": query, "variables": {"m": world.named["marketId"][0], "t": to}}
        )
        [error] = resp.json()["errors"]
        assert (error["extensions"]["code"], error["extensions"]["field"]) == ("BAD_USER_INPUT", "to"), resp.text
    ok = await fuzz_client.post(
        "/graphql",
        headers=admin,
        json={"query": query, "variables": {"m": world.named["marketId"][0], "t": "0001-01-02T00:00:00Z"}},
    )
    assert ok.json().get("errors") is None, ok.text


async def test_nan_and_infinity_in_a_json_scalar_are_malformed_json(
    fuzz_client: httpx.AsyncClient, world: World
) -> None:
    """Found by the outside sweep: Python's json decoded NaN, Infinity and 1e999 (inf) in a request body; inside
    `createAsset(metadata:)` they reached Postgres' jsonb and came back INTERNAL. They are not JSON: HTTP 400."""
    query = (
        'mutation($m: JSON!) { createAsset(input: {name: "NaN", type: OTHER, jurisdiction: "DE", currency: "EUR", '
        "metadata: $m}) { asset { id } errors { code } } }"
    )
    for token in ("NaN", "Infinity", "-Infinity", "1e999"):
        resp = await fuzz_client.post(
            "/graphql",
            content=json.dumps({"query": query}).encode()[:-1]
            + b', "variables": {"m": {"a": '
            + token.encode()
            + b"}}}",
            headers={"Authorization": f"Bearer {world.token('ISSUER')}", "content-type": "application/json"},
        )
        assert resp.status_code == 400, (token, resp.text)
        assert resp.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", resp.text


async def test_an_out_of_range_float_literal_in_a_json_scalar_is_refused(
    fuzz_client: httpx.AsyncClient, world: World
) -> None:
    """Found by the outside sweep: the literal `metadata: {a: 1e999}` became inf in graphql-core and jsonb refused
    it (INTERNAL); nothing is written."""
    issuer = {"Authorization": f"Bearer {world.token('ISSUER')}"}
    for literal in ("{a: 1e999}", "{a: [1, -1e400]}", "-1e999"):
        name = f"float literal {literal}"
        resp = await fuzz_client.post(
            "/graphql",
            headers=issuer,
            json={
                "query": f'mutation {{ createAsset(input: {{name: "{name}", type: OTHER, jurisdiction: "DE", '
                f'currency: "EUR", metadata: {literal}}}) {{ asset {{ id }} errors {{ code }} }} }}'
            },
        )
        [error] = resp.json()["errors"]
        assert error["extensions"]["code"] == "BAD_USER_INPUT", resp.text
        listed = await fuzz_client.post(
            "/graphql",
            headers=issuer,
            json={
                "query": "query($s: String) { assets(filter: {search: $s}) { edges { node { id } } } }",
                "variables": {"s": name},
            },
        )
        assert listed.json()["data"]["assets"]["edges"] == [], listed.text
