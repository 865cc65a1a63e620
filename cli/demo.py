"""`rwa demo`: the first session, scripted against a running `rwa dev` (README "A first session").

Every step goes through the public GraphQL API, as a front end would, except the first administrator (the CLI's
`rwa user create-admin` path) and the final `rwa index verify`:

  1. an ADMIN, a COMPLIANCE officer and an ISSUER; two investors (Alice, Bob) register, submit KYC, the officer
     approves; each links a new wallet (signed challenge);
  2. the issuer creates an asset, the officer approves it, the issuer tokenizes it on chain 1 (a new SecurityToken
     and IdentityRegistry); the agent registers both investors' wallets in that registry (KYC -> chain);
  3. the issuer issues 100 tokens to Alice (a mint by the agent); the ADMIN opens a market against USDC and credits
     Bob's cash (the development-only creditCash);
  4. Alice sells 10, Bob buys 10: one trade; its settlement goes PENDING -> (operation SIGNED, BROADCAST, MINED) ->
     SETTLED once the transfer is indexed at a finalized block;
  5. `rwa index verify` compares the indexed holdings of the token with balanceOf on the chain.

Each run uses fresh users (a random suffix), so it can be repeated on the same `rwa dev`.
"""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import sys
import time
from typing import Any

import httpx
import typer

from cli.runtime import err, fail

CHAIN = 1


class Api:
    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.Client(timeout=60.0)

    def __call__(self, query: str, variables: dict[str, Any] | None = None, token: str | None = None) -> Any:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        try:
            response = self.http.post(self.url, json={"query": query, "variables": variables or {}}, headers=headers)
            reply = response.json()
        except httpx.TransportError as exc:
            raise fail(
                f"cannot reach the API at {self.url} ({exc.__class__.__name__}: {exc}); is `rwa dev` running? "
                "(--api points elsewhere)",
                3,
            )
        except ValueError:
            raise fail(
                f"{self.url} answered HTTP {response.status_code} without a GraphQL JSON body; is it the "
                "StableRWA API?",
                3,
            )
        if reply.get("errors"):
            e = reply["errors"][0]
            raise fail(f"{e.get('message')} ({(e.get('extensions') or {}).get('code')}) in: {query.split('(')[0]}", 1)
        return reply["data"]

    def user(self, email: str, password: str) -> tuple[str, str]:
        registered = self(
            "mutation($e: String!, $p: String!) { register(input: {email: $e, password: $p}) { session { user { id } } "
            "errors { code message } } }",
            {"e": email, "p": password},
        )
        _payload(registered, "register", "session")
        return self.login(email, password)

    def login(self, email: str, password: str) -> tuple[str, str]:
        reply = self(
            "mutation($e: String!, $p: String!) { login(input: {email: $e, password: $p}) "
            "{ session { accessToken user { id } } errors { code message } } }",
            {"e": email, "p": password},
        )
        data = _payload(reply, "login", "session")
        return data["user"]["id"], data["accessToken"]


def step(text: str) -> None:
    err.print(f"[bold cyan]>[/] {text}", highlight=False)


def wait(what: str, check: Any, timeout: float, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise fail(
                f"timed out after {timeout:.0f} s waiting for {what} (are `rwa dev`'s agent, indexer and "
                "worker running?)",
                1,
            )
        time.sleep(interval)


def create_admin(email: str, password: str) -> None:
    from cli.runtime import runtime
    from core.db import create_engine, create_session_factory
    from resolvers.identity.accounts import create_admin as _create

    with runtime(quiet_logs=True) as settings:

        async def run() -> None:
            engine = create_engine(settings.database_url or "", pool_size=1)
            try:
                async with create_session_factory(engine)() as session:
                    await _create(session, email, password)
            finally:
                await engine.dispose()

        asyncio.run(run())


def _payload(data: Any, mutation: str, field: str) -> Any:
    """`data.<mutation>.<field>` of a mutation payload; an expected failure in its `errors` ends the demo."""
    body = data[mutation]
    if body["errors"]:
        e = body["errors"][0]
        raise fail(f"{e['message']} ({e['code']}) in: {mutation}", 1)
    return body[field]


def link_wallet(api: Api, token: str) -> str:
    """A fresh key (investors never pay gas: the agent moves their tokens), linked by a signed challenge."""
    from eth_account import Account
    from eth_account.messages import encode_defunct

    account = Account.create()
    challenge = api(
        "mutation($a: String!) { walletChallenge(input: {address: $a}) { challenge { message } "
        "errors { code message } } }",
        {"a": account.address},
        token,
    )
    message = _payload(challenge, "walletChallenge", "challenge")["message"]
    signature = "0x" + account.sign_message(encode_defunct(text=message)).signature.hex().removeprefix("0x")
    linked = api(
        "mutation($a: String!, $s: String!) { linkWallet(input: {address: $a, signature: $s}) { wallet { address } "
        "errors { code message } } }",
        {"a": account.address, "s": signature},
        token,
    )
    _payload(linked, "linkWallet", "wallet")
    return str(account.address)


KYC = """mutation($n: String!) { submitKyc(input: {fullName: $n, dateOfBirth: "1990-01-01", country: "DE",
  documentType: PASSPORT, documentNumber: "C01X00T47", address: "Unter den Linden 1, Berlin"}) { kycCase { id }
  errors { code message } } }"""
REVIEW_KYC = """mutation($c: UUID!) { reviewKyc(id: $c, input: {decision: APPROVE}) { kycCase { status }
  errors { code message } } }"""
MY_TRADES = """{ myTrades(first: 1) { edges { node { id settlement settlementOperationState settlementTxHash
  settlementBlock } } } }"""


def run(api_url: str, timeout: float) -> None:
    api = Api(api_url)
    api("{ __typename }")  # the API is up (else one line and exit 3) before the admin is written to the database
    tag = secrets.token_hex(3)
    password = f"demo-{secrets.token_hex(8)}-9"  # letters, digits and symbols
    step(f"users (suffix {tag}): admin, compliance officer, issuer, investors Alice and Bob")
    admin_email = f"admin-{tag}@demo.stablerwa.dev"
    create_admin(admin_email, password)
    _, admin = api.login(admin_email, password)
    grant = (
        "mutation($u: UUID!, $r: Role!) { grantRole(input: {userId: $u, role: $r}) { user { id } "
        "errors { code message } } }"
    )
    officer_id, _ = api.user(f"officer-{tag}@demo.stablerwa.dev", password)
    _payload(api(grant, {"u": officer_id, "r": "COMPLIANCE"}, admin), "grantRole", "user")
    _, officer = api.login(f"officer-{tag}@demo.stablerwa.dev", password)
    issuer_id, _ = api.user(f"issuer-{tag}@demo.stablerwa.dev", password)
    _payload(api(grant, {"u": issuer_id, "r": "ISSUER"}, admin), "grantRole", "user")
    _, issuer = api.login(f"issuer-{tag}@demo.stablerwa.dev", password)
    investors: dict[str, tuple[str, str, str]] = {}
    for name in ("Alice", "Bob"):
        user_id, token = api.user(f"{name.lower()}-{tag}@demo.stablerwa.dev", password)
        case = _payload(api(KYC, {"n": f"{name} Demo"}, token), "submitKyc", "kycCase")["id"]
        _payload(api(REVIEW_KYC, {"c": case}, officer), "reviewKyc", "kycCase")
        wallet = link_wallet(api, token)
        investors[name] = (user_id, token, wallet)
        step(f"{name}: KYC APPROVED, wallet {wallet} linked")

    step("the issuer tokenizes an asset on chain 1 (a new token and identity registry)")
    asset = _payload(
        api(
            """mutation($n: String!) { createAsset(input: {name: $n, type: REAL_ESTATE, jurisdiction: "DE",
                      currency: "EUR", metadata: {address: "Mainzer Landstrasse 1, Frankfurt", areaSqm: "1200",
                      propertyType: "office"}}) { asset { id } errors { code message } } }""",
            {"n": f"Demo Tower {tag}"},
            issuer,
        ),
        "createAsset",
        "asset",
    )["id"]
    for call, who in (("submitAsset", issuer), ("approveAsset", officer)):
        done = api(
            f"mutation($id: UUID!) {{ {call}(id: $id) {{ asset {{ status }} errors {{ code message }} }} }}",
            {"id": asset},
            who,
        )
        _payload(done, call, "asset")
    token = _payload(
        api(
            """mutation($a: UUID!, $s: String!) { tokenizeAsset(input: {assetId: $a, chainId: 1,
                      deploy: {name: "Demo Tower", symbol: $s, decimals: 18}}) {
                      tokenization { token { id address identityRegistry } } errors { code message } } }""",
            {"a": asset, "s": f"DT{tag[:4].upper()}"},
            issuer,
        ),
        "tokenizeAsset",
        "tokenization",
    )["token"]
    step(f"token {token['address']}, identity registry {token['identityRegistry']}")

    def registered() -> bool:
        for _, inv_token, _ in investors.values():
            wallets = api("{ myWallets { verifications { registry verified } } }", None, inv_token)["myWallets"]
            if not any(
                v["verified"] and v["registry"] == token["identityRegistry"]
                for w in wallets
                for v in w["verifications"]
            ):
                return False
        return True

    wait("the agent to register the investors' wallets in the new identity registry", registered, timeout)
    step("the agent registered both wallets in the registry (indexed IdentityRegistered events)")

    alice_id, alice, alice_wallet = investors["Alice"]
    bob_id, bob, _ = investors["Bob"]
    _payload(
        api(
            """mutation($t: UUID!, $u: UUID!) { issueTokens(input: {tokenId: $t, allocations: [{userId: $u,
              amount: "100"}]}) { tokenIssuance { state } errors { code message } } }""",
            {"t": token["id"], "u": alice_id},
            issuer,
        ),
        "issueTokens",
        "tokenIssuance",
    )

    def minted() -> bool:
        rows = api(
            """query($t: UUID!, $h: String!) { token(id: $t) { holdings(holder: $h, first: 1) {
                     edges { node { balance } } } } }""",
            {"t": token["id"], "h": alice_wallet},
            alice,
        )
        edges = rows["token"]["holdings"]["edges"]
        return bool(edges) and int(edges[0]["node"]["balance"]) == 100 * 10**18

    wait("the 100 tokens minted to Alice", minted, timeout)
    step("100 tokens minted to Alice (issueTokens -> agent mint -> indexed Transfer)")

    market = _payload(
        api(
            """mutation($t: UUID!, $s: String!) { openMarket(input: {tokenId: $t, quoteCurrency: "USDC",
                   tickSize: "0.01", lotSize: "1", symbol: $s}) { market { id symbol } errors { code message } } }""",
            {"t": token["id"], "s": f"DT{tag}/USDC"},
            admin,
        ),
        "openMarket",
        "market",
    )
    _payload(
        api(
            """mutation($u: UUID!, $r: String!) { creditCash(input: {userId: $u, amount: "1000", currency: "USDC",
          reference: $r}) { cashBalances { currency } errors { code message } } }""",
            {"u": bob_id, "r": f"demo-{tag}"},
            admin,
        ),
        "creditCash",
        "cashBalances",
    )
    step(f"market {market['symbol']} open; Bob has 1000 USDC")

    order = """mutation($m: UUID!, $s: OrderSide!) { placeOrder(input: {marketId: $m, side: $s, type: LIMIT,
               quantity: "10", price: "25.00"}) { order { status reason } errors { code message } } }"""
    sold = _payload(api(order, {"m": market["id"], "s": "SELL"}, alice), "placeOrder", "order")
    bought = _payload(api(order, {"m": market["id"], "s": "BUY"}, bob), "placeOrder", "order")
    if bought["status"] != "FILLED":
        raise fail(f"the orders did not cross: sell {sold}, buy {bought}", 1)
    step("Alice sold 10 at 25.00 to Bob: one trade, settlement PENDING")

    seen: list[str] = []

    def settled() -> dict[str, Any] | None:
        node = api(MY_TRADES, None, bob)["myTrades"]["edges"][0]["node"]
        state = f"{node['settlement']} (operation {node['settlementOperationState']})"
        if not seen or seen[-1] != state:
            seen.append(state)
            step(
                f"  trade {node['settlement']}, operation {node['settlementOperationState']}"
                + (f", tx {node['settlementTxHash']}" if node["settlementTxHash"] else "")
                + (f" in block {node['settlementBlock']}" if node["settlementBlock"] else "")
            )
        if node["settlement"] == "FAILED":
            raise fail("the settlement FAILED", 1)
        return node if node["settlement"] == "SETTLED" else None

    done = wait("the trade to be SETTLED", settled, timeout)
    step(f"SETTLED: the transfer is in block {done['settlementBlock']}, final on chain 1")

    step(f"rwa index verify --chain 1 --token {token['address']}")
    verify = subprocess.run(
        [sys.executable, "-m", "cli.main", "index", "verify", "--chain", str(CHAIN), "--token", token["address"]],
        capture_output=True,
        text=True,
        timeout=120,
    )
    sys.stderr.write(verify.stdout + verify.stderr)
    if verify.returncode != 0:
        raise fail("rwa index verify disagrees", 1)
    err.print("[bold green]demo done[/]: KYC reached the chain, tokens minted, a trade settled, and the index agrees")


def demo(
    api: str = typer.Option("http://127.0.0.1:8000/graphql", help="The running `rwa dev` API."),
    timeout: float = typer.Option(120.0, min=1.0, help="Seconds to wait for each on-chain step."),
) -> None:
    """The first session, scripted: two investors trade and the trade settles on chain (needs `rwa dev`)."""
    run(api, timeout)
