"""A small, real world for the fuzz gate to walk into: users with every role (signed in through `login`), an OPEN
market on an ACTIVE asset's token with resting orders and a trade, assets in DRAFT/UNDER_REVIEW/APPROVED, a document,
a valuation, an FX rate, bank and stablecoin payments (one confirmed), an API key, a KYC case waiting for review and a
webhook endpoint. Built mostly through the API itself, so the seeded rows are the rows the API makes.

`World.ids` and `World.strings` seed the argument pools of tests/fuzz/scalars.py: generated arguments then name rows
that exist, so resolvers get past "not found" into their state machines, ledgers and matching."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy import select, update

from core.passwords import hash_password
from core.services import Services
from models.identity import User
from models.tokens import Token, TokenKind
from tests.trading.factories import make_market, make_trader

PASSWORD = "correct-horse-9-battery"
CALLERS = ("ADMIN", "INVESTOR")  # the signed-in callers of the gate (beside the anonymous one)
PDF = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer\n%%EOF\n"


@dataclass
class Account:
    id: uuid.UUID
    email: str
    roles: list[str]
    access_token: str = ""
    refresh_token: str = ""


@dataclass
class World:
    accounts: dict[str, Account]
    ids: list[str] = field(default_factory=list)  # UUIDs of seeded rows
    strings: list[str] = field(default_factory=list)  # addresses, currencies, symbols, emails, urls
    named: dict[str, list[str]] = field(default_factory=dict)  # ids by kind ("marketId") and addresses, currencies

    def add(self, kind: str, *values: str) -> None:
        self.named.setdefault(kind, []).extend(values)
        (self.strings if kind in ("address", "currency", "country") else self.ids).extend(values)

    def token(self, role: str) -> str | None:
        return self.accounts[role].access_token if role in self.accounts else None


class SeedFailed(AssertionError):
    pass


async def call(
    client: httpx.AsyncClient, query: str, variables: dict[str, Any] | None = None, token: str | None = None
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    resp = await client.post("/graphql", json={"query": query, "variables": variables or {}}, headers=headers)
    body = resp.json()
    if resp.status_code >= 400 or body.get("errors"):
        raise SeedFailed(f"seeding the fuzz world failed: {query[:80]!r} -> {resp.status_code} {resp.text[:500]}")
    return body["data"]


def payload(data: dict[str, Any], mutation: str, field: str) -> Any:
    """`data.<mutation>.<field>` of a seeding mutation that must have succeeded (its payload has no errors)."""
    body = data[mutation]
    if body.get("errors"):
        raise SeedFailed(f"seeding the fuzz world failed: {mutation} -> {body['errors']}")
    return body[field]


async def login(client: httpx.AsyncClient, account: Account) -> None:
    data = await call(
        client,
        "mutation($e: String!, $p: String!) { login(input: {email: $e, password: $p}) "
        "{ session { accessToken refreshToken } errors { code message } } }",
        {"e": account.email, "p": PASSWORD},
    )
    session = payload(data, "login", "session")
    account.access_token = session["accessToken"]
    account.refresh_token = session["refreshToken"]


async def restore(client: httpx.AsyncClient, services: Services, world: World, account: Account) -> None:
    """Undo what a generated operation did to the callers' accounts (`logout` ended a session, `revokeRole` took a
    role, of the caller or of the other one): their roles as seeded, and a new session for `account`."""
    async with services.session_factory() as s:
        for role in CALLERS:
            seeded = world.accounts[role]
            await s.execute(update(User).where(User.id == seeded.id).values(roles=seeded.roles))
        await s.commit()
    await login(client, account)


async def seed_world(client: httpx.AsyncClient, services: Services) -> World:
    sf = services.session_factory
    password_hash = hash_password(PASSWORD)
    accounts: dict[str, Account] = {}
    async with sf() as s:
        # "VICTIM" is never signed in by the gate: generated logins may lock it, and it owns a KYC case
        for role, roles in (
            ("ADMIN", ["ADMIN"]),
            ("INVESTOR", ["INVESTOR"]),
            ("ISSUER", ["ISSUER"]),
            ("COMPLIANCE", ["COMPLIANCE"]),
            ("VICTIM", ["INVESTOR"]),
        ):
            account = Account(uuid.uuid4(), f"fuzz-{role.lower()}-{uuid.uuid4().hex[:6]}@example.com", roles)
            s.add(User(id=account.id, email=account.email, password_hash=password_hash, roles=roles))
            accounts[role] = account
        await s.commit()
    world = World(accounts)
    for role, account in accounts.items():
        world.add("userId", str(account.id))
        if role not in CALLERS:  # a generated `login` with a wrong password must not lock a caller out
            world.strings.append(account.email)
        if account.roles != ["INVESTOR"] or account is accounts["INVESTOR"]:
            await login(client, account)
    admin, investor = accounts["ADMIN"].access_token, accounts["INVESTOR"].access_token
    issuer = accounts["ISSUER"].access_token

    # trading: an OPEN market on chain 1 (its ACTIVE asset, security token and stablecoin), the investor with KYC, a
    # registered wallet, tokens and cash, a counterparty, two resting orders and one trade
    market = await make_market(sf, chain_id=1, tick="0.01", lot="1")
    trader = await make_trader(sf, market, cash="100000", tokens="1000", user_id=accounts["INVESTOR"].id)
    counterparty = await make_trader(sf, market, cash="100000", tokens="1000")
    counter_token, _ = services.keyring.issue(counterparty.user_id, ["INVESTOR"])
    world.add("marketId", str(market.market_id))
    world.add("tokenId", str(market.token_id))
    world.add("userId", str(counterparty.user_id))
    world.add("address", market.token_address, market.registry, trader.wallet, counterparty.wallet)
    world.add("currency", market.quote, "USD", "EUR")
    world.add("country", "DE", "FR", "US", "GB", "CH")
    place = "mutation($i: PlaceOrderInput!) { placeOrder(input: $i) { order { id status } errors { code message } } }"
    for who, side, price in (
        (investor, "BUY", "1.00"),
        (investor, "SELL", "5.00"),
        (counter_token, "SELL", "1.00"),
        (counter_token, "BUY", "0.50"),
    ):
        order = await call(
            client,
            place,
            {"i": {"marketId": str(market.market_id), "side": side, "type": "LIMIT", "quantity": "2", "price": price}},
            who,
        )
        world.add("orderId", payload(order, "placeOrder", "order")["id"])
    markets = await call(client, "{ markets { id symbol } }", token=investor)
    world.strings += [m["symbol"] for m in markets["markets"]]

    # assets: DRAFT (with a document), UNDER_REVIEW, APPROVED (tokenizeAsset can deploy it on anvil)
    create = "mutation($i: CreateAssetInput!) { createAsset(input: $i) { asset { id } errors { code message } } }"
    asset_ids = []
    for name in ("Fuzz Draft Tower", "Fuzz Review Bond", "Fuzz Approved Fund"):
        data = await call(
            client,
            create,
            {
                "i": {
                    "name": name,
                    "type": "REAL_ESTATE",
                    "jurisdiction": "DE",
                    "currency": "EUR",
                    "metadata": {"address": "Hauptstr. 1, Berlin", "areaSqm": "1200.5", "propertyType": "office"},
                }
            },
            issuer,
        )
        asset_ids.append(payload(data, "createAsset", "asset")["id"])
    for asset_id in asset_ids[1:]:
        submitted = await call(
            client,
            "mutation($a: UUID!) { submitAsset(id: $a) { asset { id } errors { code message } } }",
            {"a": asset_id},
            issuer,
        )
        payload(submitted, "submitAsset", "asset")
    approved = await call(
        client,
        "mutation($a: UUID!) { approveAsset(id: $a) { asset { id } errors { code message } } }",
        {"a": asset_ids[2]},
        accounts["COMPLIANCE"].access_token,
    )
    payload(approved, "approveAsset", "asset")
    world.add("assetId", *asset_ids)
    ops = {
        "query": "mutation($input: UploadAssetDocumentInput!) { uploadAssetDocument(input: $input) "
        "{ document { id } errors { code message } } }",
        "variables": {"input": {"assetId": asset_ids[0], "kind": "PROSPECTUS", "file": None}},
    }
    resp = await client.post(
        "/graphql",
        data={"operations": json.dumps(ops), "map": json.dumps({"0": ["variables.input.file"]})},
        files={"0": ("prospectus.pdf", PDF, "application/pdf")},
        headers={"Authorization": f"Bearer {issuer}", "Apollo-Require-Preflight": "true"},
    )
    if resp.status_code != 200 or resp.json().get("errors"):
        raise SeedFailed(f"seeding the fuzz world failed: upload -> {resp.status_code} {resp.text[:500]}")
    world.add("assetDocumentId", payload(resp.json()["data"], "uploadAssetDocument", "document")["id"])
    market_asset = await call(
        client, "query($t: UUID!) { token(id: $t) { assetId } }", {"t": str(market.token_id)}, admin
    )
    valuation = await call(
        client,
        "mutation($i: AddValuationInput!) { addValuation(input: $i) { valuation { id } errors { code message } } }",
        {
            "i": {
                "assetId": market_asset["token"]["assetId"],
                "amount": "1250000.50",
                "currency": "EUR",
                "method": "NAV",
                "asOf": "2026-01-01",
                "source": "fuzz",
            }
        },
        admin,
    )
    world.add("assetId", market_asset["token"]["assetId"])
    world.add("valuationId", payload(valuation, "addValuation", "valuation")["id"])
    rate = await call(
        client,
        'mutation { setFxRate(input: {base: "USD", quote: "EUR", asOf: "2026-01-01", rate: "0.92"}) '
        "{ fxRate { rate } errors { code message } } }",
        token=admin,
    )
    payload(rate, "setFxRate", "fxRate")

    # payments: bank transfers (one confirmed, so refunds have something to refund) and a stablecoin intent
    async with sf() as s:
        stablecoin = (
            await s.execute(
                select(Token.address).where(Token.kind == TokenKind.STABLECOIN, Token.symbol == market.quote)
            )
        ).scalar_one()
    world.add("address", stablecoin)
    pay = "mutation($i: CreatePaymentInput!) { createPayment(input: $i) { payment { id } errors { code message } } }"
    payment_ids = []
    for key, extra in (
        ("fuzz-bank-1", {}),
        ("fuzz-bank-2", {}),
        ("fuzz-coin-1", {"method": "STABLECOIN", "currency": market.quote, "chainId": 1, "token": stablecoin}),
    ):
        data = await call(
            client,
            pay,
            {"i": {"amount": "100", "currency": "USD", "method": "BANK_TRANSFER", "idempotencyKey": key, **extra}},
            investor,
        )
        payment_ids.append(payload(data, "createPayment", "payment")["id"])
    confirmed = await call(
        client,
        'mutation($p: UUID!) { confirmBankTransfer(input: {paymentId: $p, bankReference: "FZ-1"}) '
        "{ payment { id } errors { code message } } }",
        {"p": payment_ids[0]},
        admin,
    )
    payload(confirmed, "confirmBankTransfer", "payment")
    world.add("paymentId", *payment_ids)
    world.strings += ["fuzz-bank-1", "FZ-1"]

    # identity: an API key, a KYC case waiting for review (the victim's), a webhook endpoint
    key = await call(
        client,
        'mutation { createApiKey(input: {name: "fuzz"}) { createdApiKey { apiKey { id } } errors { code message } } }',
        token=investor,
    )
    world.add("apiKeyId", payload(key, "createApiKey", "createdApiKey")["apiKey"]["id"])
    victim = services.keyring.issue(accounts["VICTIM"].id, ["INVESTOR"])[0]
    kyc = await call(
        client,
        "mutation($i: KycInput!) { submitKyc(input: $i) { kycCase { id } errors { code message } } }",
        {
            "i": {
                "fullName": "Vic Tim",
                "dateOfBirth": "1990-05-01",
                "country": "DE",
                "documentType": "PASSPORT",
                "documentNumber": "C01X00T47",
                "address": "Hauptstr. 1",
            }
        },
        victim,
    )
    world.add("kycCaseId", payload(kyc, "submitKyc", "kycCase")["id"])
    # loopback resolves without a network (production refuses it; deliveries are not run here)
    hook = await call(
        client,
        'mutation { createWebhookEndpoint(input: {url: "https://localhost:9/hooks/rwa"}) '
        "{ webhookEndpoint { id url } errors { code message } } }",
        token=admin,
    )
    endpoint = payload(hook, "createWebhookEndpoint", "webhookEndpoint")
    world.add("webhookEndpointId", endpoint["id"])
    world.strings += [endpoint["url"], "https://example.com/hooks/rwa"]
    return world
