"""capTable over indexed rows: balances at past blocks and dates, percentages, who sees which identity, errors, and
the CSV download over HTTP."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from models.identity import AuditLog
from resolvers.reports.cap_table import Strategy, cap_table
from resolvers.viewer import Viewer
from tests.reports.seed import ALICE, BIG, BOB, CAROL, TOKEN, block_time, seed_token
from tests.test_authorization_matrix import make_api_key

Q = """query($atBlock: Int, $atTime: DateTime, $first: Int! = 1000) {
  capTable(chainId: 1, token: "%s", atBlock: $atBlock, atTime: $atTime, first: $first) {
    chainId token symbol decimals atBlock atBlockTime indexedBlock final totalSupply totalAmount holderCount
    computedBy holders { holder balance amount percent userId email fullName kycCountry } csv
  }
}""" % TOKEN.lower()


@pytest.fixture
async def world(make_user, services, session_factory):  # type: ignore[no-untyped-def]
    issuer = await make_user(roles=["ISSUER"])
    alice = await make_user(email="alice@example.com")
    bob = await make_user(email="bob@example.com")
    seeded = await seed_token(session_factory, services.cipher, issuer.id, alice.id, bob.id)
    return {"issuer": issuer, "alice": alice, "bob": bob, "seeded": seeded}


def holders(result):  # type: ignore[no-untyped-def]
    return {h["holder"]: h for h in result["data"]["capTable"]["holders"]}


async def test_balances_at_past_blocks_with_identity_for_compliance(gql, make_user, world) -> None:  # type: ignore[no-untyped-def]
    officer = await make_user(roles=["COMPLIANCE"])
    at11 = await gql(Q, {"atBlock": 11}, token=officer.token)
    table = at11["data"]["capTable"]
    assert table["atBlock"] == 11 and table["indexedBlock"] == 14 and table["final"] is True
    assert table["totalSupply"] == str(BIG) and table["holderCount"] == 3
    rows = holders(at11)
    assert [h["holder"] for h in table["holders"]] == [ALICE, BOB, CAROL]  # largest first
    assert (
        rows[ALICE]["balance"] == str(BIG - 500) and rows[BOB]["balance"] == "400" and rows[CAROL]["balance"] == "100"
    )
    assert rows[ALICE]["amount"] == "999999999999.9999999999999995"  # exact: 10^30 - 500 units at 18 decimals
    assert rows[ALICE]["email"] == "alice@example.com" and rows[ALICE]["fullName"] == "Alice Example"
    assert rows[ALICE]["kycCountry"] == "FR" and rows[ALICE]["userId"] == str(world["alice"].id)
    assert rows[CAROL]["userId"] is None and rows[CAROL]["email"] is None  # nobody linked Carol's wallet
    assert rows[ALICE]["percent"] == "100" and rows[BOB]["percent"] == "0"  # six places of 1 - 5e-28 / 4e-28
    assert table["atBlockTime"] == block_time(11).isoformat()
    # after the burn at 14 Carol is gone and the supply shrank
    at14 = await gql(Q, {"atBlock": 14}, token=officer.token)
    assert set(holders(at14)) == {ALICE, BOB}
    assert at14["data"]["capTable"]["totalSupply"] == str(BIG - 100)
    assert at14["data"]["capTable"]["final"] is False  # finalized is 12
    # the default is the indexed block; the CSV field has the same rows
    latest = (await gql(Q, {}, token=officer.token))["data"]["capTable"]
    assert latest["atBlock"] == 14
    parsed = list(csv.DictReader(io.StringIO(latest["csv"])))
    assert [r["holder"] for r in parsed] == [ALICE, BOB]
    assert parsed[0]["full_name"] == "Alice Example" and parsed[1]["balance_units"] == "350"


async def test_an_erased_investor_keeps_no_name(gql, make_user, world, session) -> None:  # type: ignore[no-untyped-def]
    from datetime import datetime

    from resolvers.privacy.keys import destroy

    officer = await make_user(roles=["COMPLIANCE"])
    assert holders(await gql(Q, {}, token=officer.token))[ALICE]["fullName"] == "Alice Example"
    await destroy(session, world["alice"].id, datetime.now(UTC))  # crypto-shredding: her data key is gone
    await session.commit()
    rows = holders(await gql(Q, {}, token=officer.token))
    assert rows[ALICE]["fullName"] is None and rows[ALICE]["balance"] == str(BIG - 450)
    assert rows[BOB]["fullName"] == "Bob Example"


async def test_both_strategies_give_the_same_rows(session, world) -> None:  # type: ignore[no-untyped-def]
    viewer = Viewer(user_id=uuid.uuid4(), roles=frozenset({"ADMIN"}))
    for block in range(9, 15):
        forward = await cap_table(session, viewer, chain_id=1, token=TOKEN, at_block=block, strategy=Strategy.FORWARD)
        reverse = await cap_table(session, viewer, chain_id=1, token=TOKEN, at_block=block, strategy=Strategy.REVERSE)
        assert [(r.holder, r.balance) for r in forward.rows] == [(r.holder, r.balance) for r in reverse.rows], block
        assert forward.total_supply == reverse.total_supply
    assert (await cap_table(session, viewer, chain_id=1, token=TOKEN, at_block=9)).rows == []


async def test_at_a_date(gql, make_user, world) -> None:  # type: ignore[no-untyped-def]
    admin = await make_user(roles=["ADMIN"])
    between = block_time(11) + timedelta(seconds=5)  # after block 11, before block 12
    table = (await gql(Q, {"atTime": between.isoformat()}, token=admin.token))["data"]["capTable"]
    assert table["atBlock"] == 11 and table["atBlockTime"] == block_time(11).isoformat()
    assert holders({"data": {"capTable": table}})[BOB]["balance"] == "400"
    # ADMIN sees email and country, never the KYC name
    assert all(h["fullName"] is None for h in table["holders"])
    assert holders({"data": {"capTable": table}})[BOB]["email"] == "bob@example.com"
    before = (await gql(Q, {"atTime": "2025-01-01T00:00:00Z"}, token=admin.token))["data"]["capTable"]
    assert before["holders"] == [] and before["totalSupply"] == "0" and before["atBlock"] == 9
    after = await gql(Q, {"atTime": (block_time(14) + timedelta(days=1)).isoformat()}, token=admin.token)
    assert after["data"]["capTable"]["atBlock"] == 14


async def test_issuer_sees_its_own_token_without_contact_details(gql, make_user, world) -> None:  # type: ignore[no-untyped-def]
    table = (await gql(Q, {"atBlock": 12}, token=world["issuer"].token))["data"]["capTable"]
    rows = holders({"data": {"capTable": table}})
    assert rows[BOB]["userId"] == str(world["bob"].id) and rows[BOB]["kycCountry"] == "DE"
    assert rows[BOB]["email"] is None and rows[BOB]["fullName"] is None
    assert "email" not in table["csv"].splitlines()[0]
    other_issuer = await make_user(roles=["ISSUER"])
    investor = await make_user()
    for caller in (other_issuer, investor, world["alice"]):
        assert gql.error_code(await gql(Q, {}, token=caller.token)) == "FORBIDDEN"
    assert gql.error_code(await gql(Q, {})) == "UNAUTHENTICATED"


async def test_api_key_of_compliance_gets_no_names(gql, make_user, world, session_factory) -> None:  # type: ignore[no-untyped-def]
    officer = await make_user(roles=["COMPLIANCE"])
    key = await make_api_key(session_factory, officer.id)
    result = await gql(Q, {}, headers={"Authorization": f"Bearer {key}"})
    rows = holders(result)
    assert rows[ALICE]["email"] == "alice@example.com" and rows[ALICE]["fullName"] is None


@pytest.mark.parametrize(
    "variables, field",
    [
        ({"atBlock": 15}, "atBlock"),
        ({"atBlock": -1}, "atBlock"),
        ({"atBlock": 11, "atTime": "2026-01-01T00:00:00Z"}, "atTime"),
        ({"atTime": "2999-01-01T00:00:00Z"}, "atTime"),
        ({"first": -1}, "first"),  # (10001 is refused earlier, by the query cost limit)
    ],
)
async def test_bad_input(gql, make_user, world, variables, field) -> None:  # type: ignore[no-untyped-def]
    admin = await make_user(roles=["ADMIN"])
    result = await gql(Q, variables, token=admin.token)
    assert gql.error_code(result) == "BAD_USER_INPUT"
    assert result["errors"][0]["extensions"]["field"] == field


async def test_unknown_token_and_first(gql, make_user, world) -> None:  # type: ignore[no-untyped-def]
    admin = await make_user(roles=["ADMIN"])
    other = '{ capTable(chainId: 1, token: "0x00000000000000000000000000000000000000aa") { holderCount } }'
    assert gql.error_code(await gql(other, token=admin.token)) == "NOT_FOUND"
    bad = '{ capTable(chainId: 1, token: "0x12") { holderCount } }'
    assert gql.error_code(await gql(bad, token=admin.token)) == "BAD_USER_INPUT"
    top = (await gql(Q, {"first": 1}, token=admin.token))["data"]["capTable"]
    assert [h["holder"] for h in top["holders"]] == [ALICE] and top["holderCount"] == 2


async def test_csv_download(client, make_user, world, session, services) -> None:  # type: ignore[no-untyped-def]
    officer = await make_user(roles=["COMPLIANCE"])
    resp = await client.get(
        "/reports/cap-table.csv",
        params={"chainId": 1, "token": TOKEN, "atBlock": 11},
        headers={"Authorization": f"Bearer {officer.token}"},
    )
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/csv")
    assert "attachment" in resp.headers["content-disposition"] and resp.headers["x-cap-table-block"] == "11"
    rows = list(csv.DictReader(io.StringIO(resp.text)))
    assert [(r["holder"], r["balance_units"]) for r in rows] == [(ALICE, str(BIG - 500)), (BOB, "400"), (CAROL, "100")]
    assert rows[1]["email"] == "bob@example.com" and rows[1]["kyc_country"] == "DE"
    audit = (
        (await session.execute(select(AuditLog).where(AuditLog.action == "report.cap_table.download"))).scalars().all()
    )
    assert len(audit) == 1 and audit[0].actor_id == officer.id and audit[0].details["block"] == 11

    investor = await make_user()
    cases = [
        ({}, {"chainId": 1, "token": TOKEN}, 401, "UNAUTHENTICATED"),
        ({"Authorization": f"Bearer {investor.token}"}, {"chainId": 1, "token": TOKEN}, 403, "FORBIDDEN"),
        (
            {"Authorization": f"Bearer {officer.token}"},
            {"chainId": 1, "token": TOKEN, "atBlock": 99},
            400,
            "BAD_USER_INPUT",
        ),
        ({"Authorization": f"Bearer {officer.token}"}, {"chainId": "one", "token": TOKEN}, 400, "BAD_USER_INPUT"),
        # int() took these as 1 and 11: integers are ASCII digits, nothing around them
        ({"Authorization": f"Bearer {officer.token}"}, {"chainId": "\u0661", "token": TOKEN}, 400, "BAD_USER_INPUT"),
        ({"Authorization": f"Bearer {officer.token}"}, {"chainId": " 1", "token": TOKEN}, 400, "BAD_USER_INPUT"),
        (
            {"Authorization": f"Bearer {officer.token}"},
            {"chainId": 1, "token": TOKEN, "atBlock": "1_1"},
            400,
            "BAD_USER_INPUT",
        ),
        (
            {"Authorization": f"Bearer {officer.token}"},
            {"chainId": 1, "token": TOKEN, "atTime": "yesterday"},
            400,
            "BAD_USER_INPUT",
        ),
        ({"Authorization": "Bearer not-a-token"}, {"chainId": 1, "token": TOKEN}, 401, "UNAUTHENTICATED"),
    ]
    for headers, params, status, code in cases:
        resp = await client.get("/reports/cap-table.csv", params=params, headers=headers)
        assert resp.status_code == status, (params, resp.text)
        assert resp.json()["errors"][0]["extensions"]["code"] == code
    # an OAuth partner client acting for a COMPLIANCE account: no scope opens reports
    client_token, _ = services.keyring.issue(officer.id, ["COMPLIANCE"], scopes=["holdings:read"], client_id="rwac_r")
    resp = await client.get(
        "/reports/cap-table.csv",
        params={"chainId": 1, "token": TOKEN},
        headers={"Authorization": f"Bearer {client_token}"},
    )
    assert resp.status_code == 403 and resp.json()["errors"][0]["extensions"]["reason"] == "INSUFFICIENT_SCOPE"
    resp = await client.post("/reports/cap-table.csv", headers={"Authorization": f"Bearer {officer.token}"})
    assert resp.status_code == 405 and resp.headers["allow"] == "GET"
    assert resp.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    still = (
        (await session.execute(select(AuditLog).where(AuditLog.action == "report.cap_table.download"))).scalars().all()
    )
    assert len(still) == 1  # refusals export nothing and record nothing


async def test_csv_cells_cannot_become_formulas() -> None:
    from resolvers.reports.exports import to_csv

    text = to_csv(["a", "b"], [["=HYPERLINK(1)", Decimal("-5")], ["+1", "@x"]])
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[1] == ["'=HYPERLINK(1)", "-5"] and rows[2] == ["'+1", "'@x"]
