"""KYC: encryption at rest, every transition of the state machine, who sees what, the review queue."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.exceptions import InvalidTag
from sqlalchemy import select, text, update

from models.identity import AuditLog, KycCase, KycStatus
from resolvers.identity.kyc_states import KycEvent
from resolvers.privacy.keys import cipher_for

SUBMIT = """mutation($input: KycInput!) { submitKyc(input: $input) {
  kycCase { id userId status submittedAt reviewedAt decisionReason expiresAt } errors { code field message } } }"""
REVIEW = """mutation($id: UUID!, $d: KycDecision!, $r: String) {
  reviewKyc(id: $id, input: {decision: $d, reason: $r}) {
    kycCase { id status reviewedAt reviewedBy decisionReason expiresAt } errors { code field message } } }"""
SUSPEND = """mutation($id: UUID!, $r: String!) { suspendKyc(id: $id, input: {reason: $r}) {
  kycCase { status decisionReason } errors { code field message } } }"""
EXPIRE = """mutation($id: UUID!, $r: String) { expireKyc(id: $id, input: {reason: $r}) {
  kycCase { status expiresAt } errors { code field message } } }"""
NODE = "query($id: ID!) { node(id: $id) { __typename id ... on KycCase { userId status } } }"
MY_KYC = """{ myKyc { id status decisionReason expiresAt details {
  fullName dateOfBirth country documentType documentNumber address } } }"""
CASES = """query($status: KycStatus, $first: Int, $after: String) { kycCases(status: $status, first: $first,
  after: $after) { edges { cursor node { id userId status submittedAt } } pageInfo { hasNextPage endCursor } } }"""
# the specification, written out independently of resolvers/identity/kyc_states.py
E, S = KycEvent, KycStatus
EXPECTED = {
    (E.SUBMIT, S.REJECTED): S.PENDING_REVIEW,
    (E.SUBMIT, S.EXPIRED): S.PENDING_REVIEW,
    (E.APPROVE, S.PENDING_REVIEW): S.APPROVED,
    (E.REJECT, S.PENDING_REVIEW): S.REJECTED,
    (E.SUSPEND, S.APPROVED): S.SUSPENDED,
    (E.EXPIRE, S.APPROVED): S.EXPIRED,
    (E.APPROVE, S.SUSPENDED): S.APPROVED,  # COMPLIANCE lifts a suspension
}
CASES_WITH_DETAILS = "{ kycCases { edges { node { id details { fullName documentNumber } } } } }"

PERSONAL = {
    "fullName": "Zebulon Quagmire-Oyelaran",
    "dateOfBirth": "1984-02-29",
    "country": "de",
    "documentType": "PASSPORT",
    "documentNumber": "C01X00T47",
    "address": "Lindenstrasse 7, 10969 Berlin",
}


async def submit(gql, user, **changes):  # type: ignore[no-untyped-def]
    return await gql(SUBMIT, {"input": {**PERSONAL, **changes}}, token=user.token)


def case_of(gql, result, mutation: str = "submitKyc"):  # type: ignore[no-untyped-def]
    return gql.payload(result, mutation, "kycCase")


async def actions(session) -> list[str]:  # type: ignore[no-untyped-def]
    return list((await session.execute(select(AuditLog.action).order_by(AuditLog.id))).scalars())


async def test_submit_encrypts_personal_fields_at_rest(gql, make_user, session, services, caplog):
    owner = await make_user()
    caplog.set_level(logging.DEBUG)
    result = await submit(gql, owner)
    case = case_of(gql, result)
    assert case["status"] == "PENDING_REVIEW" and case["userId"] == str(owner.id)

    raw = (
        await session.execute(text("SELECT personal_data, country FROM kyc_cases WHERE id = :id"), {"id": case["id"]})
    ).one()
    blob = bytes(raw.personal_data)
    for secret in ("Zebulon", "Quagmire", "C01X00T47", "Lindenstrasse", "1984-02-29", "PASSPORT"):
        assert secret.encode() not in blob
        assert secret not in caplog.text
    assert raw.country == "DE"  # kept in clear on purpose: jurisdiction rules filter on it
    # AES-GCM under the owner's data key (wrapped by the master key), bound to the case id: the blob opens for its
    # own case and for no other, and not with the master key itself
    case_id = uuid.UUID(case["id"])
    user_cipher = await cipher_for(session, services.cipher, owner.id)
    assert user_cipher is not None
    assert user_cipher.decrypt_json(blob, associated_data=case_id.bytes)["full_name"] == PERSONAL["fullName"]
    with pytest.raises(InvalidTag):
        user_cipher.decrypt_json(blob, associated_data=uuid.uuid4().bytes)
    with pytest.raises((InvalidTag, ValueError)):
        services.cipher.decrypt_json(blob, associated_data=case_id.bytes)

    mine = (await gql(MY_KYC, token=owner.token))["data"]["myKyc"]
    assert mine["details"] == {**PERSONAL, "country": "DE"}
    row = (await session.execute(select(AuditLog).where(AuditLog.action == "kyc.submit"))).scalar_one()
    assert row.actor_id == owner.id and row.target_id == case["id"] and row.request_id
    assert "Zebulon" not in str(row.details) and row.details == {"from": "NOT_STARTED", "to": "PENDING_REVIEW"}


async def test_my_kyc_before_submission_is_null(gql, make_user):
    """No case before the first submission (KYC status NOT_STARTED): null, not an object without an id."""
    user = await make_user()
    assert (await gql(MY_KYC, token=user.token))["data"]["myKyc"] is None


async def test_node_returns_a_case_to_its_owner_and_staff_only(gql, make_user):
    owner, officer = await make_user(), await make_user(roles=["COMPLIANCE"])
    admin, other = await make_user(roles=["ADMIN"]), await make_user()
    case_id = case_of(gql, await submit(gql, owner))["id"]
    for viewer in (owner, officer, admin):
        found = (await gql(NODE, {"id": case_id}, token=viewer.token))["data"]["node"]
        assert found == {"__typename": "KycCase", "id": case_id, "userId": str(owner.id), "status": "PENDING_REVIEW"}
    for token in (other.token, None):
        hidden = await gql(NODE, {"id": case_id}, token=token)
        assert "errors" not in hidden and hidden["data"]["node"] is None


async def test_approve_then_suspend(gql, make_user, session):
    owner, officer = await make_user(), await make_user(roles=["COMPLIANCE"])
    case_id = case_of(gql, await submit(gql, owner))["id"]
    approved = case_of(gql, await gql(REVIEW, {"id": case_id, "d": "APPROVE"}, token=officer.token), "reviewKyc")
    assert approved["status"] == "APPROVED" and approved["reviewedBy"] == str(officer.id)
    expires = datetime.fromisoformat(approved["expiresAt"])
    assert timedelta(days=364) < expires - datetime.now(UTC) <= timedelta(days=365)
    suspended = await gql(SUSPEND, {"id": case_id, "r": "sanctions hit"}, token=officer.token)
    assert case_of(gql, suspended, "suspendKyc") == {"status": "SUSPENDED", "decisionReason": "sanctions hit"}
    assert await actions(session) == ["kyc.submit", "kyc.approve", "kyc.suspend"]


async def test_reject_needs_reason_then_resubmit(gql, make_user, session):
    owner, officer = await make_user(), await make_user(roles=["COMPLIANCE"])
    case_id = case_of(gql, await submit(gql, owner))["id"]
    no_reason = await gql(REVIEW, {"id": case_id, "d": "REJECT", "r": "  "}, token=officer.token)
    assert gql.error_code(no_reason) == "BAD_USER_INPUT"
    assert no_reason["data"]["reviewKyc"]["errors"][0]["field"] == ["input", "reason"]
    rejected = await gql(REVIEW, {"id": case_id, "d": "REJECT", "r": "document unreadable"}, token=officer.token)
    assert case_of(gql, rejected, "reviewKyc")["status"] == "REJECTED"
    mine = (await gql(MY_KYC, token=owner.token))["data"]["myKyc"]
    assert (mine["status"], mine["decisionReason"]) == ("REJECTED", "document unreadable")

    again = case_of(gql, await submit(gql, owner, documentNumber="C01X00T48"))
    assert again["id"] == case_id and again["status"] == "PENDING_REVIEW"
    assert again["reviewedAt"] is None and again["decisionReason"] is None
    assert (await gql(MY_KYC, token=owner.token))["data"]["myKyc"]["details"]["documentNumber"] == "C01X00T48"
    assert await actions(session) == ["kyc.submit", "kyc.reject", "kyc.submit"]


async def test_every_transition_of_the_table(gql, make_user, session):
    """Each (event, state): allowed pairs land on the table's target; the others are INVALID_STATE and change
    nothing."""
    owner, officer = await make_user(), await make_user(roles=["COMPLIANCE"])
    case_id = case_of(gql, await submit(gql, owner))["id"]
    calls = {
        KycEvent.SUBMIT: lambda: submit(gql, owner),
        KycEvent.APPROVE: lambda: gql(REVIEW, {"id": case_id, "d": "APPROVE"}, token=officer.token),
        KycEvent.REJECT: lambda: gql(REVIEW, {"id": case_id, "d": "REJECT", "r": "no"}, token=officer.token),
        KycEvent.SUSPEND: lambda: gql(SUSPEND, {"id": case_id, "r": "why"}, token=officer.token),
        KycEvent.EXPIRE: lambda: gql(EXPIRE, {"id": case_id}, token=officer.token),
    }
    future = datetime.now(UTC) + timedelta(days=30)
    checked = 0
    for state in KycStatus:
        if state is KycStatus.NOT_STARTED:
            continue  # no row yet: covered by the first submission above and test_my_kyc_before_submission
        for event, call in calls.items():
            await session.execute(
                update(KycCase).where(KycCase.id == uuid.UUID(case_id)).values(status=state, expires_at=future)
            )
            await session.commit()
            audit_before = len(await actions(session))
            result = await call()
            field = next(iter(result["data"]))
            target = EXPECTED.get((event, state))
            stored = (
                await session.execute(
                    select(KycCase.status)
                    .where(KycCase.id == uuid.UUID(case_id))
                    .execution_options(populate_existing=True)
                )
            ).scalar_one()
            if target is None:
                assert gql.error_code(result) == "INVALID_STATE", (event, state, result)
                assert result["data"][field]["kycCase"] is None
                assert f"from {state.value} to" in result["data"][field]["errors"][0]["message"]
                assert stored is state and len(await actions(session)) == audit_before, (event, state)
            else:
                assert result["data"][field]["kycCase"]["status"] == target.value, (event, state, result)
                assert stored is target and len(await actions(session)) == audit_before + 1
            checked += 1
    assert checked == 5 * 5


async def test_approval_lapses_at_expiry_and_can_be_renewed(gql, make_user, session):
    owner, officer = await make_user(), await make_user(roles=["COMPLIANCE"])
    case_id = case_of(gql, await submit(gql, owner))["id"]
    await gql(REVIEW, {"id": case_id, "d": "APPROVE"}, token=officer.token)
    await session.execute(
        update(KycCase)
        .where(KycCase.id == uuid.UUID(case_id))
        .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
    )
    await session.commit()
    assert (await gql(MY_KYC, token=owner.token))["data"]["myKyc"]["status"] == "EXPIRED"
    expired = await gql(CASES, {"status": "EXPIRED"}, token=officer.token)
    assert [e["node"]["id"] for e in expired["data"]["kycCases"]["edges"]] == [case_id]
    approved = await gql(CASES, {"status": "APPROVED"}, token=officer.token)
    assert approved["data"]["kycCases"]["edges"] == []
    # already lapsed: expiring again is not a transition
    assert gql.error_code(await gql(EXPIRE, {"id": case_id}, token=officer.token)) == "INVALID_STATE"
    assert case_of(gql, await submit(gql, owner))["status"] == "PENDING_REVIEW"


async def test_expire_early_by_compliance(gql, make_user):
    owner, officer = await make_user(), await make_user(roles=["COMPLIANCE"])
    case_id = case_of(gql, await submit(gql, owner))["id"]
    await gql(REVIEW, {"id": case_id, "d": "APPROVE"}, token=officer.token)
    result = await gql(EXPIRE, {"id": case_id, "r": "document expired"}, token=officer.token)
    expired = case_of(gql, result, "expireKyc")
    assert expired["status"] == "EXPIRED"
    assert datetime.fromisoformat(expired["expiresAt"]) <= datetime.now(UTC)


async def test_details_visible_to_owner_and_compliance_only(gql, make_user):
    owner, officer = await make_user(), await make_user(roles=["COMPLIANCE"])
    admin, other = await make_user(roles=["ADMIN"]), await make_user()
    await submit(gql, owner)
    seen = (await gql(CASES_WITH_DETAILS, token=officer.token))["data"]["kycCases"]["edges"]
    assert seen[0]["node"]["details"] == {"fullName": PERSONAL["fullName"], "documentNumber": "C01X00T47"}

    as_admin = await gql(CASES_WITH_DETAILS, token=admin.token)
    assert gql.error_code(as_admin) == "FORBIDDEN"
    assert as_admin["data"]["kycCases"]["edges"][0]["node"]["details"] is None
    assert "Zebulon" not in str(as_admin)
    assert gql.error_code(await gql(CASES_WITH_DETAILS, token=other.token)) == "FORBIDDEN"
    # the other investor has no case: nothing of the owner's leaks through myKyc
    assert (await gql(MY_KYC, token=other.token))["data"]["myKyc"] is None

    # a long-lived read-only key never opens personal data, even the compliance officer's
    key = await gql(
        'mutation { createApiKey(input: {name: "desk"}) { createdApiKey { secret } } }', token=officer.token
    )
    secret = key["data"]["createApiKey"]["createdApiKey"]["secret"]
    via_key = await gql(CASES_WITH_DETAILS, headers={"X-API-Key": secret})
    assert gql.error_code(via_key) == "FORBIDDEN" and "Zebulon" not in str(via_key)
    owner_key = await gql(
        'mutation { createApiKey(input: {name: "me"}) { createdApiKey { secret } } }', token=owner.token
    )
    mine = await gql(MY_KYC, headers={"X-API-Key": owner_key["data"]["createApiKey"]["createdApiKey"]["secret"]})
    assert gql.error_code(mine) == "FORBIDDEN" and mine["data"]["myKyc"]["details"] is None


async def test_roles_on_review_mutations(gql, make_user, session):
    owner = await make_user()
    case_id = case_of(gql, await submit(gql, owner))["id"]
    for roles in (["INVESTOR"], ["ISSUER"], ["ADMIN"]):
        staff = await make_user(roles=roles)
        assert gql.error_code(await gql(REVIEW, {"id": case_id, "d": "APPROVE"}, token=staff.token)) == "FORBIDDEN"
    assert gql.error_code(await gql(REVIEW, {"id": case_id, "d": "APPROVE"})) == "UNAUTHENTICATED"
    assert await actions(session) == ["kyc.submit"]


async def test_compliance_cannot_review_own_case(gql, make_user):
    officer = await make_user(roles=["INVESTOR", "COMPLIANCE"])
    case_id = case_of(gql, await submit(gql, officer))["id"]
    result = await gql(REVIEW, {"id": case_id, "d": "APPROVE"}, token=officer.token)
    assert gql.error_code(result) == "FORBIDDEN"
    assert (await gql(MY_KYC, token=officer.token))["data"]["myKyc"]["status"] == "PENDING_REVIEW"


@pytest.mark.parametrize(
    "changes,field",
    [
        ({"country": "XX"}, "country"),
        ({"country": "DEU"}, "country"),
        ({"dateOfBirth": "2999-01-01"}, "dateOfBirth"),
        ({"fullName": "   "}, "fullName"),
        ({"documentNumber": "<script>"}, "documentNumber"),
        ({"address": "x" * 501}, "address"),
    ],
)
async def test_bad_input_is_typed_and_stores_nothing(gql, make_user, session, changes, field):
    owner = await make_user()
    result = await submit(gql, owner, **changes)
    assert gql.error_code(result) == "BAD_USER_INPUT"
    payload = result["data"]["submitKyc"]
    assert payload["kycCase"] is None
    assert [(e["code"], e["field"]) for e in payload["errors"]] == [("BAD_USER_INPUT", ["input", field])]
    assert (await session.execute(select(KycCase.id))).first() is None
    assert await actions(session) == []


async def test_unknown_case_is_not_found(gql, make_user):
    officer = await make_user(roles=["COMPLIANCE"])
    result = await gql(REVIEW, {"id": str(uuid.uuid4()), "d": "APPROVE"}, token=officer.token)
    assert gql.error_code(result) == "NOT_FOUND"


async def test_queue_filters_and_pages_oldest_first(gql, make_user, session):
    officer = await make_user(roles=["COMPLIANCE"])
    ids = []
    for _ in range(5):
        ids.append(case_of(gql, await submit(gql, await make_user()))["id"])
    # one transaction: give the submissions distinct times so the order is the submission order
    base = datetime.now(UTC) - timedelta(hours=1)
    for i, case_id in enumerate(ids):
        await session.execute(
            update(KycCase).where(KycCase.id == uuid.UUID(case_id)).values(submitted_at=base + timedelta(minutes=i))
        )
    await session.commit()
    await gql(REVIEW, {"id": ids[1], "d": "APPROVE"}, token=officer.token)

    seen, after = [], None
    while True:
        page = (await gql(CASES, {"status": "PENDING_REVIEW", "first": 2, "after": after}, token=officer.token))[
            "data"
        ]["kycCases"]
        seen += [e["node"]["id"] for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == [ids[0], ids[2], ids[3], ids[4]]
    approved = (await gql(CASES, {"status": "APPROVED"}, token=officer.token))["data"]["kycCases"]["edges"]
    assert [e["node"]["id"] for e in approved] == [ids[1]]
    assert gql.error_code(await gql(CASES, {"after": "garbage"}, token=officer.token)) == "BAD_USER_INPUT"


async def test_submit_for_a_vanished_account_is_unauthenticated(gql, make_user, session):  # type: ignore[no-untyped-def]
    """The account was deleted while its access token was still valid: not "created concurrently; retry"."""
    gone = await make_user()
    await session.execute(text("DELETE FROM users WHERE id = :id"), {"id": gone.id})
    await session.commit()
    result = await submit(gql, gone)
    assert gql.error_code(result) == "UNAUTHENTICATED", result
    assert "concurrently" not in result["errors"][0]["message"]
    assert (
        await session.execute(text("SELECT count(*) FROM kyc_cases WHERE user_id = :id"), {"id": gone.id})
    ).scalar_one() == 0
