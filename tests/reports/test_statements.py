"""investorStatement and the statement downloads: a real trade through the matching engine and the ledger, token
transfers at chosen times; opening + movements = closing, the investor's own fee, holdings at both ends, who may
read whose statement, CSV and PDF over HTTP.

Ledger rows take the database transaction's time (every test runs inside one transaction, so all of them share
`now()`, called T below); periods are placed around T."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from pypdf import PdfReader
from sqlalchemy import select, text

from models.identity import AuditLog, Role, User
from models.tokens import TokenTransfer
from models.trading import OrderType, Side
from resolvers.trading.orders import OrderRequest, place_order
from tests.trading.factories import make_market, make_trader

Q = """query($from: DateTime!, $to: DateTime!, $userId: UUID) {
  investorStatement(from: $from, to: $to, userId: $userId) {
    userId email fullName from to wallets
    cash { currency opening credits debits closing }
    movements { at currency amount balanceAfter kind reference }
    trades { market currency side quantity price notional fee settlement }
    fees { currency amount trades }
    holdings { chainId token symbol startUnits endUnits start end }
    csv
  }
}"""


@pytest.fixture
async def world(session_factory, session, services):  # type: ignore[no-untyped-def]
    m = await make_market(session_factory, maker_bps=10, taker_bps=20)
    seller = await make_trader(session_factory, m, tokens="100")
    buyer = await make_trader(session_factory, m, cash="1000")
    order = lambda side, qty, price: OrderRequest(m.market_id, side, OrderType.LIMIT, Decimal(qty), Decimal(price))  # noqa: E731
    await place_order(session, seller.user_id, order(Side.SELL, "10", "5.00"))
    await place_order(session, buyer.user_id, order(Side.BUY, "4", "6.00"))  # taker: 4 at 5, fee 0.04
    await session.commit()
    now = (await session.execute(text("SELECT now()"))).scalar_one()
    await session.execute(text("UPDATE trades SET created_at = :t"), {"t": now})
    async with session_factory() as s:  # the buyer's wallet: 7 before the periods, 4 more inside period A
        for block, (value, at) in enumerate(
            ((7_000_000, now - timedelta(hours=3)), (4_000_000, now + timedelta(minutes=30))), start=100
        ):
            s.add(
                TokenTransfer(
                    chain_id=m.chain_id,
                    block_hash=f"0x{block:064x}",
                    log_index=0,
                    block_number=block,
                    block_time=at,
                    tx_hash=f"0x{block:064x}",
                    token_address=m.token_address,
                    from_address="0x" + "0" * 40 if block == 100 else seller.wallet,
                    to_address=buyer.wallet,
                    value=value,
                )
            )
        await s.commit()
    await session.commit()
    tokens = {}
    for who in (buyer, seller):
        user = await session.get(User, who.user_id)
        tokens[who.user_id] = services.keyring.issue(who.user_id, list(user.roles))[0]
    return {"m": m, "buyer": buyer, "seller": seller, "now": now, "tokens": tokens}


def period(world, start_h: float, end_h: float) -> dict[str, str]:  # type: ignore[no-untyped-def]
    now = world["now"]
    return {"from": (now + timedelta(hours=start_h)).isoformat(), "to": (now + timedelta(hours=end_h)).isoformat()}


async def test_statement_of_a_buyer(gql, world) -> None:  # type: ignore[no-untyped-def]
    m, buyer = world["m"], world["buyer"]
    token = world["tokens"][buyer.user_id]
    s = (await gql(Q, period(world, -1, 1), token=token))["data"]["investorStatement"]
    assert s["userId"] == str(buyer.user_id) and s["wallets"] == [buyer.wallet]
    assert s["cash"] == [
        {"currency": m.quote, "opening": "0", "credits": "1000", "debits": "-20.04", "closing": "979.96"}
    ]
    assert [(x["kind"], x["amount"], x["balanceAfter"]) for x in s["movements"]] == [
        ("CREDIT", "1000", "1000"),
        ("SETTLE", "-20.04", "979.96"),
    ]
    assert s["trades"] == [
        {
            "market": s["trades"][0]["market"],
            "currency": m.quote,
            "side": "BUY",
            "quantity": "4",
            "price": "5",
            "notional": "20",
            "fee": "0.04",
            "settlement": "PENDING",
        }
    ]
    assert s["fees"] == [{"currency": m.quote, "amount": "0.04", "trades": 1}]
    assert s["holdings"] == [
        {
            "chainId": m.chain_id,
            "token": m.token_address,
            "symbol": "RWA",
            "startUnits": "7000000",
            "endUnits": "11000000",
            "start": "7",
            "end": "11",
        }
    ]
    rows = list(csv.DictReader(io.StringIO(s["csv"])))
    assert [r["section"] for r in rows] == [
        "cash_opening",
        "cash",
        "cash",
        "cash_closing",
        "trade",
        "fees",
        "holding_start",
        "holding_end",
    ]
    assert rows[3]["balance"] == "979.96" and rows[4]["fee"] == "0.04" and rows[7]["quantity"] == "11"

    # after the period: opening is today's balance less what came since; nothing moves
    later = (await gql(Q, period(world, 1, 2), token=token))["data"]["investorStatement"]
    assert later["cash"] == [
        {"currency": m.quote, "opening": "979.96", "credits": "0", "debits": "0", "closing": "979.96"}
    ]
    assert later["movements"] == [] and later["trades"] == [] and later["fees"] == []
    assert [(h["start"], h["end"]) for h in later["holdings"]] == [("11", "11")]
    # before everything: no cash, the 7 tokens held throughout
    earlier = (await gql(Q, period(world, -2, -1), token=token))["data"]["investorStatement"]
    assert earlier["cash"] == [] and [(h["start"], h["end"]) for h in earlier["holdings"]] == [("7", "7")]


async def test_statement_of_the_seller_counts_the_maker_fee(gql, world) -> None:  # type: ignore[no-untyped-def]
    seller = world["seller"]
    s = (await gql(Q, period(world, -1, 1), token=world["tokens"][seller.user_id]))["data"]["investorStatement"]
    assert [(c["opening"], c["closing"]) for c in s["cash"]] == [("0", "19.98")]
    assert [(t["side"], t["fee"]) for t in s["trades"]] == [("SELL", "0.02")]
    assert [h["end"] for h in s["holdings"]] == ["-4"]  # only the transfer to the buyer is indexed here


async def test_who_may_read_a_statement(gql, make_user, world) -> None:  # type: ignore[no-untyped-def]
    buyer = world["buyer"]
    args = {**period(world, -1, 1), "userId": str(buyer.user_id)}
    other = await make_user()
    issuer = await make_user(roles=["ISSUER"])
    for caller in (other, issuer):
        assert gql.error_code(await gql(Q, args, token=caller.token)) == "FORBIDDEN"
    assert gql.error_code(await gql(Q, args)) == "UNAUTHENTICATED"
    for role in ("ADMIN", "COMPLIANCE"):
        staff = await make_user(roles=[role])
        s = (await gql(Q, args, token=staff.token))["data"]["investorStatement"]
        assert s["userId"] == str(buyer.user_id) and s["cash"][0]["closing"] == "979.96"
    admin = await make_user(roles=[Role.ADMIN.value])
    missing = await gql(Q, {**args, "userId": str(uuid.uuid4())}, token=admin.token)
    assert gql.error_code(missing) == "NOT_FOUND"


@pytest.mark.parametrize("start_h, end_h, field", [(1, -1, "from"), (0, 24 * 401, "to"), (0, 0, "from")])
async def test_bad_periods(gql, world, start_h, end_h, field) -> None:  # type: ignore[no-untyped-def]
    result = await gql(Q, period(world, start_h, end_h), token=world["tokens"][world["buyer"].user_id])
    assert gql.error_code(result) == "BAD_USER_INPUT" and result["errors"][0]["extensions"]["field"] == field


async def test_pdf_and_csv_downloads(client, world, session, make_user) -> None:  # type: ignore[no-untyped-def]
    buyer = world["buyer"]
    headers = {"Authorization": f"Bearer {world['tokens'][buyer.user_id]}"}
    resp = await client.get("/reports/statement.pdf", params=period(world, -1, 1), headers=headers)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "application/pdf" and resp.content.startswith(b"%PDF-")
    assert resp.headers["content-disposition"].endswith('.pdf"')
    text_ = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(resp.content)).pages)
    for expected in ("Investor statement", "979.96", "-20.04", "BUY", "0.04", "11", str(buyer.user_id)):
        assert expected in text_, expected
    resp = await client.get("/reports/statement.csv", params=period(world, -1, 1), headers=headers)
    assert resp.status_code == 200 and resp.text.startswith("section,date,asset,")
    audit = (
        (await session.execute(select(AuditLog).where(AuditLog.action == "report.statement.download"))).scalars().all()
    )
    assert sorted(a.details["format"] for a in audit) == ["csv", "pdf"]
    assert all(a.target_id == str(buyer.user_id) for a in audit)

    other = await make_user()
    denied = await client.get(
        "/reports/statement.pdf",
        params={**period(world, -1, 1), "userId": str(buyer.user_id)},
        headers={"Authorization": f"Bearer {other.token}"},
    )
    assert denied.status_code == 403 and denied.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    bad = await client.get("/reports/statement.pdf", params={"from": "2026-01-01", "to": "x"}, headers=headers)
    assert bad.status_code == 400 and bad.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    missing = await client.get("/reports/statement.csv", params={"from": "2026-01-01T00:00:00Z"}, headers=headers)
    assert missing.status_code == 400 and missing.json()["errors"][0]["extensions"]["field"] == "to"


async def test_the_kyc_name_for_the_investor_and_compliance_only(gql, make_user, world, session, services) -> None:  # type: ignore[no-untyped-def]
    from datetime import date

    from models.identity import KycCase
    from resolvers.identity.kyc import DocumentType, KycDetails, encrypt_details
    from resolvers.privacy.keys import cipher_for

    buyer = world["buyer"]
    case = (await session.execute(select(KycCase).where(KycCase.user_id == buyer.user_id))).scalar_one()
    key = await cipher_for(session, services.cipher, buyer.user_id, create=True)
    case.personal_data = encrypt_details(
        key,
        case.id,
        KycDetails(
            full_name="Bea Buyer",
            date_of_birth=date(1985, 5, 5),
            country="NL",
            document_type=DocumentType.PASSPORT,
            document_number="P1",
            address="2 Canal St",
        ),
    )
    await session.commit()
    args = {**period(world, -1, 1), "userId": str(buyer.user_id)}
    own = (await gql(Q, args, token=world["tokens"][buyer.user_id]))["data"]["investorStatement"]
    assert own["fullName"] == "Bea Buyer"
    officer, admin = await make_user(roles=["COMPLIANCE"]), await make_user(roles=["ADMIN"])
    assert (await gql(Q, args, token=officer.token))["data"]["investorStatement"]["fullName"] == "Bea Buyer"
    assert (await gql(Q, args, token=admin.token))["data"]["investorStatement"]["fullName"] is None
