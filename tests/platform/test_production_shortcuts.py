"""Production refuses development shortcuts: `creditCash` (money out of nothing) is not in the production schema,
and with introspection off no error names schema elements ("Did you mean ...?"), over HTTP and websockets."""

from __future__ import annotations

import dataclasses
import secrets
from typing import Any

import pytest
from sqlalchemy import func, select

from core.settings import Settings
from models.ledger import LedgerTransaction
from server.app import create_app
from tests.platform.conftest import _as_env
from tests.platform.served import serving, websocket

CREDIT = (
    'mutation($u: UUID!) { creditCash(input: {userId: $u, amount: "1000000", currency: "USD", reference: "free"}) '
    "{ cashBalances { available } errors { code } } }"
)


def production(**overrides: object) -> dict[str, object]:
    """What a production deployment must set on top of the test settings (check_production passes)."""
    return {
        "RWA_ENV": "production",
        "HD_WALLET_MNEMONIC": " ".join(secrets.token_hex(4) for _ in range(12)),
        "WEBHOOK_SECRET": secrets.token_hex(32),
        "SIWE_DOMAIN": "app.stablerwa.test",
        **overrides,
    }


async def test_credit_cash_is_not_in_the_production_schema(app_client, make_user, session) -> None:  # type: ignore[no-untyped-def]
    admin = await make_user(roles=["ADMIN"])
    before = await session.scalar(select(func.count()).select_from(LedgerTransaction))
    async with app_client(**production()) as c:
        reply = (
            await c.post(
                "/graphql",
                json={"query": CREDIT, "variables": {"u": str(admin.id)}},
                headers={"Authorization": f"Bearer {admin.token}"},
            )
        ).json()
    assert reply.get("data") is None and [e["extensions"]["code"] for e in reply["errors"]] == ["BAD_USER_INPUT"]
    assert reply["errors"][0]["message"] == "Cannot query field 'creditCash' on type 'Mutation'.", reply
    assert await session.scalar(select(func.count()).select_from(LedgerTransaction)) == before
    # outside production it is still there (development and tests fund accounts with it)
    async with app_client() as c:
        reply = (
            await c.post(
                "/graphql",
                json={"query": CREDIT, "variables": {"u": str(admin.id)}},
                headers={"Authorization": f"Bearer {admin.token}"},
            )
        ).json()
    assert reply["data"]["creditCash"] == {"cashBalances": [{"available": "1000000"}], "errors": []}, reply


# (document, variables): each made graphql-core suggest schema names: a field, an argument, an enum value in a
# literal and in a variable, a type in a variable definition and in a fragment, an input field in a literal and in
# a variable, a field in a subscription
SUGGESTING: dict[str, tuple[str, dict[str, Any]]] = {
    "field": ("{ marketz { id } }", {}),
    "argument": ("{ markets(statuz: OPEN) { id } }", {}),
    "enum literal": ("{ markets(status: OPNE) { id } }", {}),
    "enum variable": ("query($s: MarketStatus) { markets(status: $s) { id } }", {"s": "OPNE"}),
    "variable type": ("query($s: MarketStatuss) { markets(status: $s) { id } }", {}),
    "fragment type": ("{ markets { ... on Markett { id } } }", {}),
    "input field literal": ("{ assets(filter: {statuss: DRAFT}) { __typename } }", {}),
    "input field variable": (
        "query($f: AssetFilter) { assets(filter: $f) { __typename } }",
        {"f": {"statuss": "DRAFT"}},
    ),
    "subscription field": ('subscription { tradez(marketId: "00000000-0000-0000-0000-000000000000") { id } }', {}),
}


# HTTP runs no subscriptions (refused before validation with 400, schema/__init__.py): the subscription case is
# checked over the websocket below, with the others
OVER_HTTP = [case for case in SUGGESTING if not case.startswith("subscription")]


def _messages(reply: dict[str, Any]) -> list[str]:
    return [e["message"] for e in reply.get("errors") or []]


@pytest.mark.parametrize("case", OVER_HTTP)
async def test_no_suggestions_over_http_when_introspection_is_off(app_client, case: str) -> None:  # type: ignore[no-untyped-def]
    query, variables = SUGGESTING[case]
    async with app_client() as c:  # introspection on (development, test): suggestions help developers
        hinted = (await c.post("/graphql", json={"query": query, "variables": variables})).json()
    assert any("Did you mean" in m for m in _messages(hinted)), hinted
    for overrides in (production(), {"INTROSPECTION_ENABLED": "false"}):
        async with app_client(**overrides) as c:
            reply = (await c.post("/graphql", json={"query": query, "variables": variables})).json()
        assert reply["errors"] and all(e["extensions"]["code"] == "BAD_USER_INPUT" for e in reply["errors"]), reply
        assert not any("Did you mean" in m or "did you mean" in m for m in _messages(reply)), (overrides, reply)


async def test_no_suggestions_over_websocket_when_introspection_is_off(services) -> None:  # type: ignore[no-untyped-def]
    settings = Settings(**{**_as_env(services.settings), **production()})  # type: ignore[arg-type]
    app = create_app(settings, dataclasses.replace(services, settings=settings))
    async with serving(app) as url, websocket(url) as ws:
        await ws.send_json({"type": "connection_init"})
        assert (await ws.receive_json())["type"] == "connection_ack"
        # over a socket a subscription's variables are coerced too (its enum value would be suggested)
        candles = (
            'subscription($i: CandleInterval!) { candles(marketId: "00000000-0000-0000-0000-000000000000", '
            "interval: $i) { open } }",
            {"i": "ONE_MINUTEE"},
        )
        for n, (query, variables) in enumerate([*SUGGESTING.values(), candles]):
            await ws.send_json({"id": str(n), "type": "subscribe", "payload": {"query": query, "variables": variables}})
            frame = await ws.receive_json()
            assert frame["id"] == str(n) and frame["type"] in ("error", "next"), frame
            errors = frame["payload"] if frame["type"] == "error" else frame["payload"]["errors"]
            assert errors and not any("Did you mean" in e["message"] for e in errors), frame
            if frame["type"] == "next":
                assert await ws.receive_json() == {"id": str(n), "type": "complete"}
