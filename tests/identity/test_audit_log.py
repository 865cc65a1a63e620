"""The audit log query: roles, newest-first keyset pagination both ways, filters by actor, action and time."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from models.identity import AuditLog

QUERY = """query($actor: UUID, $action: String, $since: DateTime, $until: DateTime, $first: Int, $after: String,
  $last: Int, $before: String) {
  auditLog(actorId: $actor, action: $action, since: $since, until: $until, first: $first, after: $after,
           last: $last, before: $before) {
    edges { cursor node { id at actorId action targetType targetId requestId details } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }"""

T0 = datetime(2026, 1, 1, tzinfo=UTC)


async def seed(session, alice: uuid.UUID, bob: uuid.UUID) -> list[int]:  # type: ignore[no-untyped-def]
    """Seven rows one minute apart (the last two share a timestamp); returns their ids, oldest first."""
    specs = [
        (alice, "kyc.submit", 0),
        (bob, "kyc.approve", 1),
        (alice, "wallet.link", 2),
        (None, "user.create_admin", 3),
        (bob, "kyc.reject", 4),
        (alice, "api_key.create", 5),
        (bob, "kyc_x.other", 5),
    ]
    rows = [
        AuditLog(
            actor_id=a,
            action=act,
            at=T0 + timedelta(minutes=m),
            target_type="t",
            target_id=str(i),
            request_id=f"req-{i}",
            details={"n": i},
        )
        for i, (a, act, m) in enumerate(specs)
    ]
    session.add_all(rows)
    await session.commit()
    return [r.id for r in rows]


async def page_ids(gql, token, **variables) -> tuple[list[int], dict]:  # type: ignore[no-untyped-def,type-arg]
    result = await gql(QUERY, variables, token=token)
    assert "errors" not in result, result
    conn = result["data"]["auditLog"]
    return [int(e["node"]["id"]) for e in conn["edges"]], conn["pageInfo"]


async def test_roles(gql, make_user):
    for role, allowed in (("INVESTOR", False), ("ISSUER", False), ("COMPLIANCE", True), ("ADMIN", True)):
        user = await make_user(roles=[role])
        code = gql.error_code(await gql(QUERY, {}, token=user.token))
        assert code == (None if allowed else "FORBIDDEN"), role
    assert gql.error_code(await gql(QUERY, {})) == "UNAUTHENTICATED"


async def test_newest_first_pages_forward_and_back(gql, make_user, session):
    admin = await make_user(roles=["ADMIN"])
    ids = await seed(session, uuid.uuid4(), uuid.uuid4())
    newest_first = list(reversed(ids))  # ids[5] and ids[6] share a timestamp: the higher id comes first

    seen, after = [], None
    while True:
        got, info = await page_ids(gql, admin.token, action=None, since=T0.isoformat(), first=3, after=after)
        seen += got
        assert info["hasPreviousPage"] is (after is not None)
        if not info["hasNextPage"]:
            break
        after = info["endCursor"]
    assert seen == newest_first

    # backwards from the oldest row: the three rows just newer than it, in the same (newest-first) order
    _, info = await page_ids(gql, admin.token, since=T0.isoformat(), first=7)
    oldest_cursor = info["endCursor"]
    got, info = await page_ids(gql, admin.token, since=T0.isoformat(), last=3, before=oldest_cursor)
    assert got == newest_first[3:6] and info["hasPreviousPage"] and info["hasNextPage"]


async def test_filters(gql, make_user, session):
    officer = await make_user(roles=["COMPLIANCE"])
    alice, bob = uuid.uuid4(), uuid.uuid4()
    ids = await seed(session, alice, bob)
    window = {"since": T0.isoformat()}
    assert (await page_ids(gql, officer.token, actor=str(alice), **window))[0] == [ids[5], ids[2], ids[0]]
    assert (await page_ids(gql, officer.token, action="kyc.approve", **window))[0] == [ids[1]]
    # prefix match is on "kyc." literally: "kyc_x.other" does not match ('_' is not a wildcard)
    assert (await page_ids(gql, officer.token, action="kyc.*", **window))[0] == [ids[4], ids[1], ids[0]]
    assert (await page_ids(gql, officer.token, actor=str(bob), action="kyc.*", **window))[0] == [ids[4], ids[1]]
    # since inclusive, until exclusive
    got, _ = await page_ids(
        gql, officer.token, since=(T0 + timedelta(minutes=1)).isoformat(), until=(T0 + timedelta(minutes=4)).isoformat()
    )
    assert got == [ids[3], ids[2], ids[1]]
    naive = await gql(QUERY, {"since": "2026-01-01T00:00:00"}, token=officer.token)
    assert gql.error_code(naive) == "BAD_USER_INPUT"
    assert gql.error_code(await gql(QUERY, {"first": 101}, token=officer.token)) == "BAD_USER_INPUT"
    assert gql.error_code(await gql(QUERY, {"first": 1, "last": 1}, token=officer.token)) == "BAD_USER_INPUT"


async def test_mutations_leave_actor_target_and_request_id(gql, make_user):
    admin, user = await make_user(roles=["ADMIN"]), await make_user()
    created = await gql(
        'mutation { createApiKey(input: {name: "audit me"}) { createdApiKey { apiKey { id } } } }',
        token=user.token,
        headers={"X-Request-ID": "req-audit-7"},
    )
    key_id = created["data"]["createApiKey"]["createdApiKey"]["apiKey"]["id"]
    result = await gql(QUERY, {"actor": str(user.id), "action": "api_key.create"}, token=admin.token)
    node = result["data"]["auditLog"]["edges"][0]["node"]
    assert node["actorId"] == str(user.id) and node["targetType"] == "api_key" and node["targetId"] == key_id
    assert node["requestId"] == "req-audit-7"
    assert datetime.fromisoformat(node["at"]) <= datetime.now(UTC)
