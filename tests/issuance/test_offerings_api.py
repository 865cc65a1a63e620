"""Offerings over GraphQL (in-process app, real Postgres): the state machine, eligibility, reservations, allocation
at close, and what the agent's confirmation or failure of a mint does to the cash (handlers called as the executor
calls them, in one transaction). The on-chain loop is in test_issuance_chain.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import select, update

from models.assets import Asset
from models.identity import AuditLog, KycCase
from models.issuance import OfferingSubscription, SubscriptionState, TokenIssuance
from models.ledger import AccountKind
from models.operations import ChainOperation
from models.tokens import IdentityEntry, Token
from resolvers import ledger
from resolvers.issuance import closing
from tests.trading.factories import make_market, make_trader

OFFERING = "id state subscribedTotal subscriptionCount allocatedTotal hardCap"
ERRORS = "errors { code field message }"
CREATE = f"mutation($i: CreateOfferingInput!) {{ createOffering(input: $i) {{ offering {{ {OFFERING} }} {ERRORS} }} }}"
SUB = "id state reason amount allocatedQuantity allocatedUnits allocatedCash walletAddress"
SUBSCRIBE = (
    f"mutation($i: SubscribeInput!) {{ subscribeToOffering(input: $i) {{ subscription {{ {SUB} }} {ERRORS} }} }}"
)
CLOSE = f"mutation($id: UUID!) {{ closeOffering(id: $id) {{ offering {{ {OFFERING} }} {ERRORS} }} }}"


def subscribed(result):  # type: ignore[no-untyped-def]
    """The subscription of a subscribeToOffering call that must have succeeded (a REJECTED one included)."""
    body = result["data"]["subscribeToOffering"]
    assert "errors" not in result and body["errors"] == [], result
    return body["subscription"]


def _input(m, **over):  # type: ignore[no-untyped-def]
    now = datetime.now(UTC)
    base = {
        "tokenId": str(m.token_id),
        "name": "Fund A, class 1",
        "quoteCurrency": m.quote,
        "price": "10",
        "minTicket": "10",
        "target": "50",
        "hardCap": "200",
        "opensAt": (now - timedelta(minutes=1)).isoformat(),
        "closesAt": (now + timedelta(days=1)).isoformat(),
        "allocationRule": "PRO_RATA",
        "feeBps": 100,
    }
    return {"i": {**base, **over}}


async def _setup(gql, make_user, session_factory, **market):  # type: ignore[no-untyped-def]
    m = await make_market(session_factory, **market)
    issuer = await make_user(roles=["ISSUER"])
    async with session_factory() as s:
        token = await s.get(Token, m.token_id)
        await s.execute(update(Asset).where(Asset.id == token.asset_id).values(issuer_id=issuer.id))
        await s.commit()
    return m, issuer


async def _investor(gql, make_user, session_factory, m, cash="1000", country="DE", **kw):  # type: ignore[no-untyped-def]
    user = await make_user(roles=["INVESTOR"])
    trader = await make_trader(session_factory, m, cash=cash, user_id=user.id, **kw)
    async with session_factory() as s:
        await s.execute(update(KycCase).where(KycCase.user_id == user.id).values(country=country))
        await s.commit()
    return user, trader


async def _cash(session_factory, user_id, currency):  # type: ignore[no-untyped-def]
    async with session_factory() as s:
        [b] = [b for b in await ledger.balances(s, user_id) if b.currency == currency] or [None]
    return (Decimal(0), Decimal(0)) if b is None else (b.available, b.reserved)


async def _open(gql, issuer, m, **over):  # type: ignore[no-untyped-def]
    created = await gql(CREATE, _input(m, **over), token=issuer.token)
    offering = gql.payload(created, "createOffering", "offering")
    assert offering["state"] == "DRAFT", created
    opened = await gql(
        "mutation($id: UUID!) { openOffering(id: $id) { offering { state } errors { code } } }",
        {"id": offering["id"]},
        token=issuer.token,
    )
    assert gql.payload(opened, "openOffering", "offering")["state"] == "OPEN"
    return offering["id"]


async def test_pro_rata_offering_from_subscription_to_settled_cash(gql, make_user, session_factory):  # type: ignore[no-untyped-def]
    m, issuer = await _setup(gql, make_user, session_factory)
    oid = await _open(gql, issuer, m, eligibleCountries=["DE", "FR"])
    investors = [await _investor(gql, make_user, session_factory, m) for _ in range(3)]
    subs = []
    for user, _ in investors:
        res = await gql(SUBSCRIBE, {"i": {"offeringId": oid, "amount": "100", "clientKey": "k1"}}, token=user.token)
        sub = subscribed(res)
        assert sub["state"] == "ACTIVE", res
        again = await gql(SUBSCRIBE, {"i": {"offeringId": oid, "amount": "100", "clientKey": "k1"}}, token=user.token)
        assert subscribed(again)["id"] == sub["id"]  # idempotent per client key
        subs.append(sub)
        assert await _cash(session_factory, user.id, m.quote) == (Decimal(900), Decimal(100))
    # refusals are REJECTED subscriptions with a reason, holding nothing
    us, _ = await _investor(gql, make_user, session_factory, m, country="US")
    res = await gql(SUBSCRIBE, {"i": {"offeringId": oid, "amount": "100"}}, token=us.token)
    assert (subscribed(res)["state"], subscribed(res)["reason"]) == ("REJECTED", "COUNTRY_NOT_ELIGIBLE")
    poor, _ = await _investor(gql, make_user, session_factory, m, cash="5")
    res = await gql(SUBSCRIBE, {"i": {"offeringId": oid, "amount": "50"}}, token=poor.token)
    assert subscribed(res)["reason"] == "INSUFFICIENT_CASH"
    assert await _cash(session_factory, poor.id, m.quote) == (Decimal(5), Decimal(0))
    # validation errors are typed and change nothing
    res = await gql(SUBSCRIBE, {"i": {"offeringId": oid, "amount": "5"}}, token=investors[0][0].token)
    assert gql.error_code(res) == "BAD_USER_INPUT"
    assert res["data"]["subscribeToOffering"]["errors"][0]["field"] == ["input", "amount"]
    assert res["data"]["subscribeToOffering"]["subscription"] is None
    # the US investor cannot see it; eligible ones and the issuer can
    assert (await gql("query($id: UUID!) { offering(id: $id) { id } }", {"id": oid}, token=us.token))["data"][
        "offering"
    ] is None
    seen = await gql(
        "query($id: UUID!) { offering(id: $id) { subscribedTotal subscriptionCount } }",
        {"id": oid},
        token=investors[0][0].token,
    )
    assert seen["data"]["offering"] == {"subscribedTotal": "300", "subscriptionCount": 3}

    closed = gql.payload(await gql(CLOSE, {"id": oid}, token=issuer.token), "closeOffering", "offering")
    assert closed["state"] == "ALLOCATED", closed
    assert closed["allocatedTotal"] == "200"
    mine = await gql(f"{{ mySubscriptions(first: 5) {{ edges {{ node {{ {SUB} }} }} }} }}", token=investors[0][0].token)
    first = mine["data"]["mySubscriptions"]["edges"][0]["node"]
    # 3 x 10 lots asked, 20 lots to give: 6 each and the 2 left over by time priority
    assert (first["state"], first["allocatedQuantity"], first["allocatedCash"]) == ("ALLOCATED", "7", "70")
    assert first["allocatedUnits"] == str(7 * 10**m.decimals)
    assert await _cash(session_factory, investors[0][0].id, m.quote) == (Decimal(930), Decimal(70))
    assert await _cash(session_factory, investors[2][0].id, m.quote) == (Decimal(940), Decimal(60))
    async with session_factory() as s:
        [op] = (
            (await s.execute(select(ChainOperation).where(ChainOperation.business_ref.like(f"offering:{oid}:mint:%"))))
            .scalars()
            .all()
        )
    assert (op.kind, op.function, op.abi_name) == ("offering.mint", "batchMint", "SecurityToken")
    assert op.args[0] == [t.wallet for _, t in investors]
    assert op.args[1] == [str(n * 10**m.decimals) for n in (7, 7, 6)]

    # the agent confirms the mint from the indexed event: cash goes to the issuer, the fee to the platform
    async with session_factory() as s:
        op = await s.get(ChainOperation, op.id)
        fees_before = await ledger.locked_balances(s, m.quote, [ledger.Platform(AccountKind.FEES)])
        await closing.mint_confirmed(s, op)
        await closing.mint_confirmed(s, op)  # a replay changes nothing
        await s.commit()
    assert await _cash(session_factory, issuer.id, m.quote) == (Decimal(198), Decimal(0))
    for user, _ in investors:
        available, reserved = await _cash(session_factory, user.id, m.quote)
        assert reserved == 0 and available in (Decimal(930), Decimal(940))
    async with session_factory() as s:
        fees = await ledger.locked_balances(s, m.quote, [ledger.Platform(AccountKind.FEES)])
        await s.rollback()
    assert fees[ledger.Platform(AccountKind.FEES)] - fees_before[ledger.Platform(AccountKind.FEES)] == Decimal(2)
    final = await gql("query($id: UUID!) { offering(id: $id) { state } }", {"id": oid}, token=issuer.token)
    assert final["data"]["offering"]["state"] == "SETTLED"
    async with session_factory() as s:
        actions = set((await s.execute(select(AuditLog.action).where(AuditLog.target_id == oid))).scalars())
    assert {
        "offering.create",
        "offering.open",
        "offering.close",
        "offering.allocate",
        "offering.settle",
        "offering.mint_settled",
    } <= actions


async def test_failed_mint_releases_the_allocated_cash(gql, make_user, session_factory):  # type: ignore[no-untyped-def]
    m, issuer = await _setup(gql, make_user, session_factory)
    oid = await _open(gql, issuer, m, allocationRule="FIRST_COME")
    user, _ = await _investor(gql, make_user, session_factory, m)
    await gql(SUBSCRIBE, {"i": {"offeringId": oid, "amount": "105"}}, token=user.token)
    await gql(CLOSE, {"id": oid}, token=issuer.token)
    assert await _cash(session_factory, user.id, m.quote) == (Decimal(900), Decimal(100))
    async with session_factory() as s:
        op = (
            await s.execute(select(ChainOperation).where(ChainOperation.business_ref == f"offering:{oid}:mint:0"))
        ).scalar_one()
        await closing.mint_failed(s, op, "receiver not verified")
        await s.commit()
    assert await _cash(session_factory, user.id, m.quote) == (Decimal(1000), Decimal(0))
    assert await _cash(session_factory, issuer.id, m.quote) == (Decimal(0), Decimal(0))
    async with session_factory() as s:
        sub = (
            await s.execute(select(OfferingSubscription).where(OfferingSubscription.user_id == user.id))
        ).scalar_one()
    assert (sub.state, sub.reason) == (SubscriptionState.FAILED, "receiver not verified")
    mine = await gql("{ mySubscriptions { edges { node { state reason failureDetail } } } }", token=user.token)
    assert mine["data"]["mySubscriptions"]["edges"] == [
        {"node": {"state": "FAILED", "reason": "MINT_FAILED", "failureDetail": "receiver not verified"}}
    ]


async def test_target_missed_cancels_and_releases_everything(gql, make_user, session_factory):  # type: ignore[no-untyped-def]
    m, issuer = await _setup(gql, make_user, session_factory)
    oid = await _open(gql, issuer, m, target="150")
    user, _ = await _investor(gql, make_user, session_factory, m)
    await gql(SUBSCRIBE, {"i": {"offeringId": oid, "amount": "100"}}, token=user.token)
    closed = await gql(CLOSE, {"id": oid}, token=issuer.token)
    assert gql.payload(closed, "closeOffering", "offering")["state"] == "CANCELED"
    assert await _cash(session_factory, user.id, m.quote) == (Decimal(1000), Decimal(0))
    again = await gql(CLOSE, {"id": oid}, token=issuer.token)
    assert gql.error_code(again) == "INVALID_STATE" and again["data"]["closeOffering"]["offering"] is None


async def test_unverified_wallet_at_close_is_rejected_not_minted(gql, make_user, session_factory):  # type: ignore[no-untyped-def]
    m, issuer = await _setup(gql, make_user, session_factory)
    oid = await _open(gql, issuer, m)
    ok, _ = await _investor(gql, make_user, session_factory, m)
    gone, trader = await _investor(gql, make_user, session_factory, m)
    for u in (ok, gone):
        await gql(SUBSCRIBE, {"i": {"offeringId": oid, "amount": "100"}}, token=u.token)
    async with session_factory() as s:  # KYC suspended: the agent deleted the wallet's identity
        await s.execute(update(IdentityEntry).where(IdentityEntry.investor == trader.wallet).values(registered=False))
        await s.commit()
    await gql(CLOSE, {"id": oid}, token=issuer.token)
    async with session_factory() as s:
        sub = (
            await s.execute(select(OfferingSubscription).where(OfferingSubscription.user_id == gone.id))
        ).scalar_one()
        op = (
            await s.execute(select(ChainOperation).where(ChainOperation.business_ref == f"offering:{oid}:mint:0"))
        ).scalar_one()
    assert (sub.state, sub.reason) == (SubscriptionState.REJECTED, "WALLET_NOT_VERIFIED")
    assert trader.wallet not in op.args[0]
    assert await _cash(session_factory, gone.id, m.quote) == (Decimal(1000), Decimal(0))


async def test_state_and_role_checks(gql, make_user, session_factory):  # type: ignore[no-untyped-def]
    m, issuer = await _setup(gql, make_user, session_factory)
    other = await make_user(roles=["ISSUER"])
    res = await gql(CREATE, _input(m), token=other.token)
    assert gql.error_code(res) == "FORBIDDEN"
    res = await gql(CREATE, _input(m, hardCap="5"), token=issuer.token)
    assert gql.error_code(res) == "BAD_USER_INPUT"
    assert res["data"]["createOffering"]["errors"][0]["field"] == ["input", "hardCap"]
    res = await gql(CREATE, _input(m, eligibleCountries=["XX"]), token=issuer.token)
    assert gql.error_code(res) == "BAD_USER_INPUT"
    created = gql.payload(await gql(CREATE, _input(m), token=issuer.token), "createOffering", "offering")
    user, _ = await _investor(gql, make_user, session_factory, m)
    res = await gql(SUBSCRIBE, {"i": {"offeringId": created["id"], "amount": "100"}}, token=user.token)
    assert subscribed(res)["reason"] == "OFFERING_NOT_OPEN"  # still DRAFT
    res = await gql(CLOSE, {"id": created["id"]}, token=issuer.token)
    assert gql.error_code(res) == "INVALID_STATE"
    res = await gql(
        "mutation($id: UUID!) { openOffering(id: $id) { offering { state } errors { code } } }",
        {"id": created["id"]},
        token=other.token,
    )
    assert gql.error_code(res) == "FORBIDDEN"


async def test_cancel_subscription_releases_cash_only_while_open(gql, make_user, session_factory):  # type: ignore[no-untyped-def]
    m, issuer = await _setup(gql, make_user, session_factory)
    oid = await _open(gql, issuer, m)
    user, _ = await _investor(gql, make_user, session_factory, m)
    sub = subscribed(await gql(SUBSCRIBE, {"i": {"offeringId": oid, "amount": "100"}}, token=user.token))
    cancel = "mutation($id: UUID!) { cancelSubscription(id: $id) { subscription { state reason } errors { code } } }"
    stranger, _ = await _investor(gql, make_user, session_factory, m)
    assert gql.error_code(await gql(cancel, {"id": sub["id"]}, token=stranger.token)) == "NOT_FOUND"
    res = await gql(cancel, {"id": sub["id"]}, token=user.token)
    assert gql.payload(res, "cancelSubscription", "subscription") == {"state": "CANCELED", "reason": "USER_CANCELED"}
    assert await _cash(session_factory, user.id, m.quote) == (Decimal(1000), Decimal(0))
    assert gql.error_code(await gql(cancel, {"id": sub["id"]}, token=user.token)) == "INVALID_STATE"
    offering = await gql(
        "query($id: UUID!) { offering(id: $id) { subscribedTotal subscriptionCount } }", {"id": oid}, token=issuer.token
    )
    assert offering["data"]["offering"] == {"subscribedTotal": "0", "subscriptionCount": 0}


async def test_offering_updates_start_with_the_state_then_follow_each_change(
    gql, make_user, session_factory, services
) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    from starlette.websockets import WebSocket

    from resolvers.viewer import viewer_from_headers
    from schema import build_schema
    from server.context import Context
    from tests.payments.test_updates import _never  # a socket nobody talks to

    m, issuer = await _setup(gql, make_user, session_factory)
    oid = await _open(gql, issuer, m, eligibleCountries=["DE"])
    watcher, _ = await _investor(gql, make_user, session_factory, m)
    outsider, _ = await _investor(gql, make_user, session_factory, m, country="US")
    doc = "subscription($id: UUID!) { offeringUpdates(offeringId: $id) { state subscribedTotal subscriptionCount } }"

    async def subscribe(token: str):  # type: ignore[no-untyped-def]
        viewer = await viewer_from_headers(services, f"Bearer {token}", None, "127.0.0.1")
        socket = WebSocket(
            {"type": "websocket", "path": "/graphql", "headers": [], "client": ("127.0.0.1", 5)},
            receive=_never,
            send=_never,
        )  # type: ignore[arg-type]
        ctx = Context(services, socket, socket, viewer)
        return await build_schema(services.settings).subscribe(doc, variable_values={"id": oid}, context_value=ctx), ctx

    denied, ctx = await subscribe(outsider.token)
    first = await asyncio.wait_for(denied.__anext__(), 5)
    assert first.errors and first.errors[0].extensions["code"] == "NOT_FOUND"
    await denied.aclose()
    await ctx.close()
    stream, ctx = await subscribe(watcher.token)
    try:
        now = await asyncio.wait_for(stream.__anext__(), 5)
        assert now.data["offeringUpdates"] == {"state": "OPEN", "subscribedTotal": "0", "subscriptionCount": 0}
        await asyncio.sleep(0.2)  # the Redis subscription is up
        await gql(SUBSCRIBE, {"i": {"offeringId": oid, "amount": "120"}}, token=watcher.token)
        update_ = await asyncio.wait_for(stream.__anext__(), 5)
        assert update_.data["offeringUpdates"] == {"state": "OPEN", "subscribedTotal": "120", "subscriptionCount": 1}
        await gql(CLOSE, {"id": oid}, token=issuer.token)
        closed = await asyncio.wait_for(stream.__anext__(), 5)
        assert closed.data["offeringUpdates"]["state"] == "ALLOCATED"
    finally:
        await stream.aclose()
        await ctx.close()


NODES = "query($ids: [ID!]!) { nodes(ids: $ids) { __typename id } }"


def _types(result):  # type: ignore[no-untyped-def]
    assert "errors" not in result, result
    return [n and n["__typename"] for n in result["data"]["nodes"]]


async def test_offerings_and_subscriptions_are_nodes_seen_as_their_lookups_show_them(gql, make_user, session_factory):  # type: ignore[no-untyped-def]
    m, issuer = await _setup(gql, make_user, session_factory)
    oid = await _open(gql, issuer, m, eligibleCountries=["DE"])
    investor, _ = await _investor(gql, make_user, session_factory, m)
    outsider, _ = await _investor(gql, make_user, session_factory, m, country="US")
    sub = subscribed(await gql(SUBSCRIBE, {"i": {"offeringId": oid, "amount": "100"}}, token=investor.token))
    ids = [oid, sub["id"]]
    assert _types(await gql(NODES, {"ids": ids}, token=investor.token)) == ["Offering", "OfferingSubscription"]
    assert _types(await gql(NODES, {"ids": ids}, token=issuer.token)) == ["Offering", "OfferingSubscription"]
    assert _types(await gql(NODES, {"ids": ids}, token=outsider.token)) == [None, None]
    assert _types(await gql(NODES, {"ids": ids})) == [None, None]
    one = await gql(
        "query($id: ID!) { node(id: $id) { ... on Offering { id state } } }", {"id": oid}, token=issuer.token
    )
    assert one["data"]["node"] == {"id": oid, "state": "OPEN"}


async def test_direct_issuance_four_eyes_and_accreditation(gql, make_user, session_factory):  # type: ignore[no-untyped-def]
    m, issuer = await _setup(gql, make_user, session_factory)
    investor, _ = await _investor(gql, make_user, session_factory, m)
    compliance, other_issuer = await make_user(roles=["COMPLIANCE"]), await make_user(roles=["ISSUER"])
    issue = (
        "mutation($i: IssueTokensInput!) { issueTokens(input: $i) { tokenIssuance { id state totalQuantity } "
        f"{ERRORS} }} }}"
    )
    lines = {"tokenId": str(m.token_id), "allocations": [{"userId": str(investor.id), "amount": "20000"}]}
    issued = gql.payload(await gql(issue, {"i": lines}, token=issuer.token), "issueTokens", "tokenIssuance")
    assert (issued["state"], issued["totalQuantity"]) == ("PENDING_APPROVAL", "20000")  # above the threshold
    nobody = {**lines, "allocations": [{"userId": str(compliance.id), "amount": "1"}]}
    refused = await gql(issue, {"i": nobody}, token=issuer.token)
    assert gql.error_code(refused) == "NO_VERIFIED_WALLET" and refused["data"]["issueTokens"]["tokenIssuance"] is None
    reject = (
        "mutation($id: UUID!, $r: String!) { rejectIssuance(id: $id, input: {reason: $r}) "
        f"{{ tokenIssuance {{ state reason }} {ERRORS} }} }}"
    )
    blank = await gql(reject, {"id": issued["id"], "r": ""}, token=compliance.token)
    assert gql.error_code(blank) == "BAD_USER_INPUT"
    assert blank["data"]["rejectIssuance"]["errors"][0]["field"] == ["input", "reason"]
    done = await gql(reject, {"id": issued["id"], "r": "no prospectus"}, token=compliance.token)
    assert gql.payload(done, "rejectIssuance", "tokenIssuance") == {"state": "REJECTED", "reason": "no prospectus"}
    approve = f"mutation($id: UUID!) {{ approveIssuance(id: $id) {{ tokenIssuance {{ state }} {ERRORS} }} }}"
    assert gql.error_code(await gql(approve, {"id": issued["id"]}, token=compliance.token)) == "INVALID_STATE"
    # a TokenIssuance node: its token's issuer and staff, not another issuer nor the investor
    for who, seen in ((issuer, "TokenIssuance"), (compliance, "TokenIssuance"), (other_issuer, None), (investor, None)):
        assert _types(await gql(NODES, {"ids": [issued["id"]]}, token=who.token)) == [seen]

    accredit = (
        "mutation($u: UUID!, $a: Boolean!) { setAccreditation(input: {userId: $u, accredited: $a}) "
        f"{{ accredited {ERRORS} }} }}"
    )
    ok = await gql(accredit, {"u": str(investor.id), "a": True}, token=compliance.token)
    assert gql.payload(ok, "setAccreditation", "accredited") is True
    async with session_factory() as s:
        case = (await s.execute(select(KycCase).where(KycCase.user_id == investor.id))).scalar_one()
        assert case.accredited is True
    missing = await gql(accredit, {"u": str(compliance.id), "a": True}, token=compliance.token)
    assert gql.error_code(missing) == "NOT_FOUND" and missing["data"]["setAccreditation"]["accredited"] is None


async def test_a_client_key_reused_for_another_request_is_a_conflict(gql, make_user, session_factory):  # type: ignore[no-untyped-def]
    """A retry with the same clientKey gets the earlier result; the key reused with other parameters is CONFLICT
    IDEMPOTENCY_KEY_REUSED and changes nothing (it used to answer the earlier result, as if the new request had
    been carried out: another amount, or another token or kind for issueTokens/redeemTokens)."""
    m, issuer = await _setup(gql, make_user, session_factory)
    oid = await _open(gql, issuer, m)
    user, _ = await _investor(gql, make_user, session_factory, m)
    sub = subscribed(
        await gql(SUBSCRIBE, {"i": {"offeringId": oid, "amount": "100", "clientKey": "k"}}, token=user.token)
    )
    again = await gql(SUBSCRIBE, {"i": {"offeringId": oid, "amount": "100", "clientKey": "k"}}, token=user.token)
    assert subscribed(again)["id"] == sub["id"]
    other = await gql(SUBSCRIBE, {"i": {"offeringId": oid, "amount": "300", "clientKey": "k"}}, token=user.token)
    assert gql.error_code(other) == "IDEMPOTENCY_KEY_REUSED", other
    assert other["data"]["subscribeToOffering"]["subscription"] is None
    assert await _cash(session_factory, user.id, m.quote) == (Decimal(900), Decimal(100))

    issue = (
        "mutation($i: IssueTokensInput!) { issueTokens(input: $i) { tokenIssuance { id totalQuantity } "
        f"{ERRORS} }} }}"
    )
    lines = {"tokenId": str(m.token_id), "allocations": [{"userId": str(user.id), "amount": "5"}], "clientKey": "i"}
    first = gql.payload(await gql(issue, {"i": lines}, token=issuer.token), "issueTokens", "tokenIssuance")
    retry = gql.payload(await gql(issue, {"i": lines}, token=issuer.token), "issueTokens", "tokenIssuance")
    assert retry == first
    more = {**lines, "allocations": [{"userId": str(user.id), "amount": "7"}]}
    refused = await gql(issue, {"i": more}, token=issuer.token)
    assert gql.error_code(refused) == "IDEMPOTENCY_KEY_REUSED", refused
    redeem = f"mutation($i: RedeemTokensInput!) {{ redeemTokens(input: $i) {{ tokenIssuance {{ id }} {ERRORS} }} }}"
    as_redeem = {"tokenId": str(m.token_id), "userId": str(user.id), "amount": "5", "clientKey": "i"}
    refused = await gql(redeem, {"i": as_redeem}, token=issuer.token)
    assert gql.error_code(refused) == "IDEMPOTENCY_KEY_REUSED", refused
    async with session_factory() as s:
        stored = (await s.execute(select(TokenIssuance).where(TokenIssuance.requested_by == issuer.id))).scalars().all()
    assert [(str(i.id), i.total_quantity) for i in stored] == [(first["id"], Decimal(5))]
