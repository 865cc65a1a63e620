"""Privacy rights over HTTP: the export holds everything about the caller and nothing about anyone else; an erasure
makes personal data unreadable (crypto-shredding) while the ledger still balances and trades still list; retention."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from cryptography.exceptions import InvalidTag
from sqlalchemy import func, select, text

from models.identity import ApiKey, AuditLog, KycCase, KycStatus, RefreshTokenFamily, User, UserStatus
from models.ledger import LedgerAccount, LedgerEntry
from resolvers.privacy.erasure import pseudonym_email
from resolvers.privacy.keys import Erased, cipher_for
from resolvers.privacy.retention import purge
from tests.trading.factories import make_market, make_trader

EXPORT = "mutation { exportMyData { data errors { code field message } } }"
REQUEST = """mutation($r: String) { requestErasure(input: {reason: $r}) {
  erasureRequest { id status userId } errors { code field message } } }"""
PROCESS = """mutation($id: UUID!, $d: ErasureDecision!, $r: String) {
  processErasure(id: $id, input: {decision: $d, reason: $r}) {
    erasureRequest { id status processedAt keyDestroyAfter } errors { code field message } } }"""
SUBMIT = "mutation($i: KycInput!) { submitKyc(input: $i) { kycCase { id } errors { code field message } } }"
REVIEW = """mutation($id: UUID!) { reviewKyc(id: $id, input: {decision: APPROVE}) {
  kycCase { status } errors { code field message } } }"""
PLACE = "mutation($i: PlaceOrderInput!) { placeOrder(input: $i) { order { id status } errors { code message } } }"
CANCEL = "mutation($id: UUID!) { cancelOrder(id: $id) { order { status } errors { code message } } }"
LOGIN = """mutation($e: String!, $p: String!) { login(input: {email: $e, password: $p}) {
  session { accessToken } errors { code message } } }"""
NODE = "query($id: ID!) { node(id: $id) { __typename id ... on ErasureRequest { status userId } } }"
PERSONAL = {
    "fullName": "Ottilie Brandauer-Nkemelu",
    "dateOfBirth": "1979-11-03",
    "country": "AT",
    "documentType": "PASSPORT",
    "documentNumber": "P4471923X",
    "address": "Praterstrasse 12, 1020 Wien",
}


def ok(result: dict) -> dict:  # type: ignore[type-arg]
    assert "errors" not in result, result
    return result["data"]


async def world(gql, make_user, session_factory):  # type: ignore[no-untyped-def]
    """Alice (KYC submitted with personal data and approved) sells 10 to Bob: one trade, cash moved, fees paid."""
    compliance = await make_user(roles=["COMPLIANCE"])
    alice, bob = await make_user(), await make_user()
    case_id = gql.payload(await gql(SUBMIT, {"i": PERSONAL}, token=alice.token), "submitKyc", "kycCase")["id"]
    gql.payload(await gql(REVIEW, {"id": case_id}, token=compliance.token), "reviewKyc", "kycCase")
    m = await make_market(session_factory)
    a = await make_trader(session_factory, m, tokens="10", cash="5", kyc=None, user_id=alice.id)
    b = await make_trader(session_factory, m, cash="1000", user_id=bob.id)
    sell = gql.payload(
        await gql(
            PLACE,
            {"i": {"marketId": str(m.market_id), "side": "SELL", "type": "LIMIT", "quantity": "10", "price": "25"}},
            token=alice.token,
        ),
        "placeOrder",
        "order",
    )
    buy = gql.payload(
        await gql(
            PLACE,
            {"i": {"marketId": str(m.market_id), "side": "BUY", "type": "LIMIT", "quantity": "10", "price": "25"}},
            token=bob.token,
        ),
        "placeOrder",
        "order",
    )
    assert buy["status"] == "FILLED", buy
    return compliance, alice, bob, m, a, b, sell, buy, case_id


async def test_export_holds_everything_about_the_caller_and_nothing_of_others(
    gql, make_user, session_factory, session, services
):
    compliance, alice, bob, m, a, b, sell, buy, case_id = await world(gql, make_user, session_factory)
    data = gql.payload(await gql(EXPORT, token=alice.token), "exportMyData", "data")
    assert data["profile"]["id"] == str(alice.id) and data["profile"]["email"] == alice.email
    assert "passwordHash" not in data["profile"] and "password_hash" not in str(data)
    assert data["kyc"]["id"] == case_id and data["kyc"]["status"] == "APPROVED"
    details = data["kyc"]["personalDetails"]
    assert details == {**PERSONAL, "country": "AT"}
    assert "personalData" not in data["kyc"] and "reviewedBy" not in data["kyc"]
    assert [w["address"] for w in data["wallets"]] == [a.wallet]
    assert [o["id"] for o in data["orders"]] == [sell["id"]]
    [trade] = data["trades"]
    assert trade["side"] == "SELL" and trade["orderId"] == sell["id"] and trade["quantity"].startswith("10")
    assert Decimal(trade["price"]) == Decimal(25) and isinstance(trade["fee"], str)
    accounts = {acc["id"]: acc for acc in data["ledgerAccounts"]}
    assert accounts and all(acc["ownerId"] == str(alice.id) for acc in accounts.values())
    assert data["ledgerEntries"] and all(e["accountId"] in accounts for e in data["ledgerEntries"])
    # her balance is the sum of her entries (money as exact strings)
    assert sum(Decimal(e["amount"]) for e in data["ledgerEntries"]) == sum(
        Decimal(acc["balance"]) for acc in accounts.values()
    )
    assert [h["holder"] for h in data["holdings"]] == [a.wallet]
    actions = {(r["action"], r["actor"]) for r in data["auditLog"]}
    assert ("kyc.submit", "self") in actions and ("kyc.approve", "staff") in actions
    assert data["mfa"] == {"enabled": False, "enrolledAt": None}

    # nothing of anyone else: not Bob's id, email, wallet or order, nor the reviewer's id
    flat = str(data)
    for other in (str(bob.id), bob.email, b.wallet, buy["id"], str(compliance.id), compliance.email):
        assert other not in flat, other
    # the export is audited, and only the owner's own login may make it
    row = (await session.execute(select(AuditLog).where(AuditLog.action == "privacy.export"))).scalar_one()
    assert row.actor_id == alice.id and "kyc" in row.details["sections"]
    secret = "rwak_" + uuid.uuid4().hex
    from core.opaque_tokens import digest

    async with session_factory() as s:
        s.add(ApiKey(id=uuid.uuid4(), user_id=alice.id, name="k", prefix=secret[:12], key_hash=digest(secret)))
        await s.commit()
    assert gql.error_code(await gql(EXPORT, headers={"Authorization": f"Bearer {secret}"})) == "FORBIDDEN"
    client_token, _ = services.keyring.issue(
        alice.id, ["INVESTOR"], scopes=["account:read", "orders:read"], client_id="rwac_test"
    )
    refused = await gql(EXPORT, token=client_token)
    assert gql.error_code(refused) == "FORBIDDEN"
    # the reviewer's export shows that they approved a case, not whose, nor the details
    staff = gql.payload(await gql(EXPORT, token=compliance.token), "exportMyData", "data")
    [approval] = [r for r in staff["auditLog"] if r["action"] == "kyc.approve"]
    assert approval["actor"] == "self" and approval["targetId"] is None and approval["details"] is None
    assert case_id not in str(staff) and str(alice.id) not in str(staff)
    bobs = gql.payload(await gql(EXPORT, token=bob.token), "exportMyData", "data")
    assert bobs["kyc"]["personalDetails"] is None and PERSONAL["fullName"] not in str(bobs)
    assert bobs["trades"][0]["side"] == "BUY" and str(alice.id) not in str(bobs)


async def test_erasure_shreds_personal_data_keeps_ledger_and_trades(gql, make_user, session_factory, session, services):
    compliance, alice, bob, m, a, b, sell, buy, case_id = await world(gql, make_user, session_factory)
    balances_before = {
        r.id: r.balance
        for r in (await session.execute(select(LedgerAccount).where(LedgerAccount.owner_id == alice.id))).scalars()
    }
    audit_before = (
        await session.execute(select(func.count()).select_from(AuditLog).where(AuditLog.actor_id == alice.id))
    ).scalar_one()

    req = gql.payload(
        await gql(REQUEST, {"r": "closing my account"}, token=alice.token), "requestErasure", "erasureRequest"
    )
    assert req["status"] == "PENDING" and req["userId"] == str(alice.id)
    again = await gql(REQUEST, {"r": None}, token=alice.token)
    assert gql.error_code(again) == "CONFLICT" and again["data"]["requestErasure"]["erasureRequest"] is None
    # the request is a Node: its requester and COMPLIANCE see it, nobody else
    for viewer in (alice, compliance):
        found = (await gql(NODE, {"id": req["id"]}, token=viewer.token))["data"]["node"]
        assert found == {"__typename": "ErasureRequest", "id": req["id"], "status": "PENDING", "userId": str(alice.id)}
    for token in (bob.token, None):
        assert (await gql(NODE, {"id": req["id"]}, token=token))["data"]["node"] is None
    # nobody decides on their own request; a rejection needs a reason; blockers are named
    assert gql.error_code(await gql(PROCESS, {"id": req["id"], "d": "ERASE"}, token=alice.token)) == "FORBIDDEN"
    assert (
        gql.error_code(await gql(PROCESS, {"id": req["id"], "d": "REJECT"}, token=compliance.token)) == "BAD_USER_INPUT"
    )
    resting = gql.payload(
        await gql(
            PLACE,
            {"i": {"marketId": str(m.market_id), "side": "BUY", "type": "LIMIT", "quantity": "1", "price": "1"}},
            token=alice.token,
        ),
        "placeOrder",
        "order",
    )
    blocked = await gql(PROCESS, {"id": req["id"], "d": "ERASE"}, token=compliance.token)
    assert gql.error_code(blocked) == "ERASURE_BLOCKED"
    [error] = blocked["data"]["processErasure"]["errors"]
    assert error["message"] == "settle the account first: OPEN_ORDERS, PENDING_SETTLEMENTS, TOKEN_HOLDINGS"
    assert (await session.get(User, alice.id)).email == alice.email  # type: ignore[union-attr]
    gql.payload(await gql(CANCEL, {"id": resting["id"]}, token=alice.token), "cancelOrder", "order")
    # the trade settles on chain: her 10 tokens went to Bob (what the agent and the indexer would record)
    await session.execute(text("UPDATE trades SET settlement = 'SETTLED' WHERE market_id = :m"), {"m": m.market_id})
    await session.execute(text("UPDATE holdings SET balance = 0 WHERE holder = :w"), {"w": a.wallet})
    await session.commit()
    balances_before = {
        r.id: r.balance
        for r in (await session.execute(select(LedgerAccount).where(LedgerAccount.owner_id == alice.id))).scalars()
    }

    done = gql.payload(
        await gql(PROCESS, {"id": req["id"], "d": "ERASE"}, token=compliance.token), "processErasure", "erasureRequest"
    )
    assert done["status"] == "COMPLETED" and done["keyDestroyAfter"] is None

    # signing in is impossible: the old token, the old credentials, the pseudonym
    assert gql.error_code(await gql("{ me { id } }", token=alice.token)) == "UNAUTHENTICATED"
    for email in (alice.email, pseudonym_email(alice.id)):
        assert gql.error_code(await gql(LOGIN, {"e": email, "p": alice.password})) == "UNAUTHENTICATED"
    session.expire_all()
    user = await session.get(User, alice.id)
    assert user is not None and user.status is UserStatus.DISABLED and user.email == pseudonym_email(alice.id)
    assert alice.email not in user.email and user.password_hash == "!erased"
    assert (
        await session.execute(
            select(func.count()).select_from(RefreshTokenFamily).where(RefreshTokenFamily.user_id == alice.id)
        )
    ).scalar_one() == 0

    # nothing decrypts: the ciphertext is still there, its key is gone; not even the master key opens it
    case = await session.get(KycCase, uuid.UUID(case_id))
    assert case is not None and case.personal_data is not None and case.country is None
    # no longer a verified investor: the approval expired, and her wallet leaves the identity registry
    assert case.status is KycStatus.EXPIRED
    ops = (
        (
            await session.execute(
                text("SELECT kind FROM chain_operations WHERE business_ref LIKE :p"),
                {"p": f"identity:{m.chain_id}:{m.registry}:{a.wallet}:%"},
            )
        )
        .scalars()
        .all()
    )
    assert ops == ["identity.delete"]
    with pytest.raises(Erased):
        await cipher_for(session, services.cipher, alice.id)
    with pytest.raises((InvalidTag, ValueError)):
        services.cipher.decrypt(bytes(case.personal_data), case.id.bytes)
    wrapped = (
        await session.execute(
            text("SELECT wrapped_key, destroyed_at FROM user_data_keys WHERE user_id = :u"), {"u": alice.id}
        )
    ).one()
    assert wrapped.wrapped_key is None and wrapped.destroyed_at is not None
    cases = ok(await gql("{ kycCases { edges { node { id status details { fullName } } } } }", token=compliance.token))[
        "kycCases"
    ]["edges"]
    mine = [e["node"] for e in cases if e["node"]["id"] == case_id]
    assert mine == [{"id": case_id, "status": "EXPIRED", "details": None}]

    # the ledger keeps the pseudonymous accounts, balanced; trades still list for the counterparty and the market
    after = {
        r.id: r.balance
        for r in (await session.execute(select(LedgerAccount).where(LedgerAccount.owner_id == alice.id))).scalars()
    }
    assert after == balances_before
    sums = (
        await session.execute(select(LedgerEntry.currency, func.sum(LedgerEntry.amount)).group_by(LedgerEntry.currency))
    ).all()
    assert sums and all(total == 0 for _, total in sums)
    bob_trades = ok(await gql("{ myTrades(first: 5) { edges { node { id quantity } } } }", token=bob.token))
    assert len(bob_trades["myTrades"]["edges"]) == 1
    market_trades = ok(
        await gql(
            "query($m: UUID!) { trades(marketId: $m, first: 5) { edges { node { id } } } }",
            {"m": str(m.market_id)},
            token=compliance.token,
        )
    )
    assert len(market_trades["trades"]["edges"]) == 1
    trade = (
        await session.execute(text("SELECT seller_id FROM trades WHERE market_id = :m"), {"m": m.market_id})
    ).scalar_one()
    assert trade == alice.id  # the pseudonymous id stays
    # the audit log keeps every row by the pseudonymous id, plus the erasure itself
    assert (
        await session.execute(select(func.count()).select_from(AuditLog).where(AuditLog.actor_id == alice.id))
    ).scalar_one() >= audit_before
    erased = (await session.execute(select(AuditLog).where(AuditLog.action == "privacy.erasure"))).scalar_one()
    assert erased.actor_id == compliance.id and erased.target_id == str(alice.id)
    assert PERSONAL["fullName"] not in str(erased.details) and alice.email not in str(erased.details)
    # decided once
    assert gql.error_code(await gql(PROCESS, {"id": req["id"], "d": "ERASE"}, token=compliance.token)) == "CONFLICT"


async def test_legal_hold_then_retention_job_destroys_the_key(gql, make_user, session_factory, session, services):
    services.settings.privacy_kyc_retention_days = 30
    compliance, alice = await make_user(roles=["COMPLIANCE"]), await make_user()
    case_id = gql.payload(await gql(SUBMIT, {"i": PERSONAL}, token=alice.token), "submitKyc", "kycCase")["id"]
    req = gql.payload(await gql(REQUEST, {}, token=alice.token), "requestErasure", "erasureRequest")
    done = gql.payload(
        await gql(PROCESS, {"id": req["id"], "d": "ERASE"}, token=compliance.token), "processErasure", "erasureRequest"
    )
    assert done["keyDestroyAfter"] is not None
    # held: COMPLIANCE still reads the details, the account is already closed
    assert gql.error_code(await gql("{ me { id } }", token=alice.token)) == "UNAUTHENTICATED"
    held = ok(await gql("{ kycCases { edges { node { id details { fullName } } } } }", token=compliance.token))
    assert {"id": case_id, "details": {"fullName": PERSONAL["fullName"]}} in [
        e["node"] for e in held["kycCases"]["edges"]
    ]
    # ended sessions and revoked API keys past their retention go too
    old = datetime.now(UTC) - timedelta(days=200)
    other = await make_user()
    async with session_factory() as s:
        s.add(RefreshTokenFamily(id=uuid.uuid4(), user_id=other.id, created_at=old, revoked_at=old))
        s.add(RefreshTokenFamily(id=uuid.uuid4(), user_id=other.id))  # live: stays
        s.add(
            ApiKey(id=uuid.uuid4(), user_id=other.id, name="old", prefix="rwak_old", key_hash="a" * 64, revoked_at=old)
        )
        await s.commit()

    early = await purge(session, services.settings, datetime.now(UTC) + timedelta(days=29))
    assert early.keys_destroyed == 0 and early.sessions == 1 and early.api_keys == 1
    assert await cipher_for(session, services.cipher, alice.id) is not None
    late = await purge(session, services.settings, datetime.now(UTC) + timedelta(days=31))
    assert late.keys_destroyed == 1
    with pytest.raises(Erased):
        await cipher_for(session, services.cipher, alice.id)
    gone = ok(await gql("{ kycCases { edges { node { id details { fullName } } } } }", token=compliance.token))
    assert {"id": case_id, "details": None} in [e["node"] for e in gone["kycCases"]["edges"]]
    assert (
        await session.execute(
            select(func.count()).select_from(RefreshTokenFamily).where(RefreshTokenFamily.user_id == other.id)
        )
    ).scalar_one() == 1
    row = (await session.execute(select(AuditLog).where(AuditLog.action == "privacy.key_destroyed"))).scalar_one()
    assert row.target_id == str(alice.id) and row.details == {"reason": "RETENTION_ENDED"}
    # idempotent
    later = await purge(session, services.settings, datetime.now(UTC) + timedelta(days=32))
    assert later.keys_destroyed == 0


async def test_a_rejected_request_changes_nothing_and_may_be_asked_again(gql, make_user, session):
    compliance, alice = await make_user(roles=["COMPLIANCE"]), await make_user()
    req = gql.payload(await gql(REQUEST, {"r": "please"}, token=alice.token), "requestErasure", "erasureRequest")
    queue = ok(
        await gql("{ erasureRequests(status: PENDING) { edges { node { id userId } } } }", token=compliance.token)
    )["erasureRequests"]["edges"]
    assert [e["node"] for e in queue] == [{"id": req["id"], "userId": str(alice.id)}]
    done = gql.payload(
        await gql(
            PROCESS, {"id": req["id"], "d": "REJECT", "r": "legal hold: open investigation"}, token=compliance.token
        ),
        "processErasure",
        "erasureRequest",
    )
    assert done["status"] == "REJECTED"
    mine = ok(await gql("{ myErasureRequests { id status decisionReason } }", token=alice.token))
    assert mine["myErasureRequests"] == [
        {"id": req["id"], "status": "REJECTED", "decisionReason": "legal hold: open investigation"}
    ]
    assert ok(await gql("{ me { email } }", token=alice.token))["me"]["email"] == alice.email
    assert gql.payload(await gql(REQUEST, {}, token=alice.token), "requestErasure", "erasureRequest")["status"] == (
        "PENDING"
    )
    actions = (
        (await session.execute(select(AuditLog.action).where(AuditLog.action.like("privacy.%")).order_by(AuditLog.id)))
        .scalars()
        .all()
    )
    assert actions == ["privacy.erasure_request", "privacy.erasure_reject", "privacy.erasure_request"]
