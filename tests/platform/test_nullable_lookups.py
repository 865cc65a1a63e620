"""Single-object lookups answer null for a row that does not exist or that the caller may not see: no error, so a
front-end renders "not found" from data (and a hidden row looks exactly like a missing one)."""

from __future__ import annotations

import uuid

LOOKUPS = {
    "asset": '{ asset(id: "%s") { id } }',
    "token": '{ token(id: "%s") { id } }',
    "payment": '{ payment(id: "%s") { id } }',
    "documentContent": '{ documentContent(id: "%s") { contentBase64 } }',
    "orderBook": '{ orderBook(marketId: "%s") { sequence } }',
    "ticker": '{ ticker(marketId: "%s") { last } }',
    "user": '{ user(id: "%s") { id } }',
}


async def test_missing_rows_are_null_not_errors(gql, make_user) -> None:  # type: ignore[no-untyped-def]
    admin = await make_user(roles=["ADMIN"])
    for field, query in LOOKUPS.items():
        r = await gql(query % uuid.uuid4(), token=admin.token)
        assert "errors" not in r and r["data"] == {field: None}, (field, r)


async def test_rows_the_caller_may_not_see_are_null_too(gql, make_user) -> None:  # type: ignore[no-untyped-def]
    staff = await make_user(roles=["COMPLIANCE"])
    other = await make_user(roles=["INVESTOR"])
    stranger = await make_user(roles=["INVESTOR"])
    # a user staff can look up is invisible to an investor (FORBIDDEN: the field itself is staff-only) ...
    seen = await gql('{ user(id: "%s") { id } }' % other.id, token=staff.token)
    assert seen["data"]["user"]["id"] == str(other.id)
    denied = await gql('{ user(id: "%s") { id } }' % other.id, token=stranger.token)
    assert gql.error_code(denied) == "FORBIDDEN"
    # ... while a lookup every signed-in caller may make answers null for another user's row
    created = await gql(
        'mutation { createPayment(input: {amount: "10", currency: "EUR", method: BANK_TRANSFER, '
        'idempotencyKey: "nl-1"}) { payment { id } } }',
        token=other.token,
    )
    payment_id = created["data"]["createPayment"]["payment"]["id"]
    assert (await gql('{ payment(id: "%s") { id } }' % payment_id, token=other.token))["data"]["payment"]
    hidden = await gql('{ payment(id: "%s") { id } }' % payment_id, token=stranger.token)
    assert "errors" not in hidden and hidden["data"]["payment"] is None, hidden
