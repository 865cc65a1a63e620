"""API keys: shown once, stored as a digest, read-only, dead as soon as they are revoked."""

from __future__ import annotations

import hashlib

from sqlalchemy import func, select, text

from models.identity import ApiKey, AuditLog
from resolvers.identity.api_keys import MAX_ACTIVE_KEYS

CREATE = """mutation($n: String!) { createApiKey(input: {name: $n}) {
  createdApiKey { secret apiKey { id name prefix scope createdAt } } errors { code field message } } }"""
REVOKE = "mutation($id: UUID!) { revokeApiKey(id: $id) { apiKey { id revokedAt } errors { code field } } }"
MY_KEYS = "query($all: Boolean!) { myApiKeys(includeRevoked: $all) { id name prefix lastUsedAt revokedAt } }"
ME = "{ me { id } }"


async def create(gql, user, name: str = "dashboard") -> dict:  # type: ignore[no-untyped-def,type-arg]
    result = await gql(CREATE, {"n": name}, token=user.token)
    return gql.payload(result, "createApiKey", "createdApiKey")


async def test_secret_shown_once_and_stored_as_digest(gql, make_user, session):
    user = await make_user()
    created = await create(gql, user, "  Grafana   board ")
    secret, key = created["secret"], created["apiKey"]
    assert secret.startswith("rwak_") and len(secret) > 40
    assert key["name"] == "Grafana board" and key["scope"] == "read" and key["prefix"] == secret[:12]
    row = (await session.execute(text("SELECT * FROM api_keys"))).mappings().one()
    assert row["key_hash"] == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in str(dict(row)) and secret[12:] not in str(dict(row))
    listed = (await gql(MY_KEYS, {"all": False}, token=user.token))["data"]["myApiKeys"]
    assert [k["id"] for k in listed] == [key["id"]] and secret not in str(listed)
    audit = (await session.execute(select(AuditLog))).scalar_one()
    assert (audit.action, audit.target_id, audit.actor_id) == ("api_key.create", key["id"], user.id)
    assert secret not in str(audit.details)


async def test_no_field_can_return_a_secret(gql, make_user):
    fields = await gql('{ __type(name: "ApiKey") { fields { name } } }')
    names = {f["name"] for f in fields["data"]["__type"]["fields"]}
    assert names == {"id", "name", "prefix", "scope", "createdAt", "lastUsedAt", "revokedAt"}


async def test_key_reads_via_bearer_and_header_but_cannot_mutate(gql, make_user, session):
    user = await make_user()
    created = await create(gql, user)
    secret = created["secret"]
    for headers in ({"Authorization": f"Bearer {secret}"}, {"X-API-Key": secret}):
        me = await gql(ME, headers=headers)
        assert me["data"]["me"]["id"] == str(user.id), me
    listed = (await gql(MY_KEYS, {"all": False}, headers={"X-API-Key": secret}))["data"]["myApiKeys"]
    assert listed[0]["lastUsedAt"] is not None

    before = (await session.execute(select(func.count()).select_from(AuditLog))).scalar_one()
    for doc, variables in ((CREATE, {"n": "escalate"}), (REVOKE, {"id": created["apiKey"]["id"]})):
        result = await gql(doc, variables, headers={"Authorization": f"Bearer {secret}"})
        assert gql.error_code(result) == "FORBIDDEN", result
    assert (await session.execute(select(func.count()).select_from(ApiKey))).scalar_one() == 1
    assert (await session.execute(select(ApiKey.revoked_at))).scalar_one() is None
    assert (await session.execute(select(func.count()).select_from(AuditLog))).scalar_one() == before


async def test_revoked_key_stops_working_at_once(gql, make_user, session):
    user = await make_user()
    created = await create(gql, user)
    secret, key_id = created["secret"], created["apiKey"]["id"]
    assert "errors" not in await gql(ME, headers={"X-API-Key": secret})  # now cached in this process
    revoked = gql.payload(await gql(REVOKE, {"id": key_id}, token=user.token), "revokeApiKey", "apiKey")
    assert revoked["id"] == key_id and revoked["revokedAt"] is not None
    for headers in ({"Authorization": f"Bearer {secret}"}, {"X-API-Key": secret}):
        assert gql.error_code(await gql(ME, headers=headers)) == "UNAUTHENTICATED"
    assert gql.error_code(await gql(REVOKE, {"id": key_id}, token=user.token)) == "CONFLICT"
    assert (await gql(MY_KEYS, {"all": False}, token=user.token))["data"]["myApiKeys"] == []
    every = (await gql(MY_KEYS, {"all": True}, token=user.token))["data"]["myApiKeys"]
    assert [k["id"] for k in every] == [key_id]
    actions = (await session.execute(select(AuditLog.action).order_by(AuditLog.id))).scalars().all()
    assert actions == ["api_key.create", "api_key.revoke"]


async def test_key_carries_owner_roles_but_only_for_reading(gql, make_user):
    admin = await make_user(roles=["ADMIN"])
    secret = (await create(gql, admin))["secret"]
    log = await gql("{ auditLog(first: 5) { edges { node { action } } } }", headers={"X-API-Key": secret})
    assert "errors" not in log, log
    grant = await gql(
        f'mutation {{ grantRole(input: {{userId: "{admin.id}", role: ISSUER}}) {{ user {{ id }} }} }}',
        headers={"X-API-Key": secret},
    )
    assert gql.error_code(grant) == "FORBIDDEN"


async def test_only_the_owner_revokes(gql, make_user):
    alice, bob = await make_user(), await make_user()
    created = await create(gql, alice)
    assert gql.error_code(await gql(REVOKE, {"id": created["apiKey"]["id"]}, token=bob.token)) == "NOT_FOUND"
    assert "errors" not in await gql(ME, headers={"X-API-Key": created["secret"]})


async def test_bad_name_and_active_key_limit(gql, make_user, session):
    user = await make_user()
    for name in ("   ", "x" * 101):
        result = await gql(CREATE, {"n": name}, token=user.token)
        assert gql.error_code(result) == "BAD_USER_INPUT"
        assert result["data"]["createApiKey"]["errors"][0]["field"] == ["input", "name"]
    for i in range(MAX_ACTIVE_KEYS):
        await create(gql, user, f"k{i}")
    assert gql.error_code(await gql(CREATE, {"n": "one too many"}, token=user.token)) == "CONFLICT"
    assert (await session.execute(select(func.count()).select_from(ApiKey))).scalar_one() == MAX_ACTIVE_KEYS


async def test_unknown_key_is_unauthenticated(gql):
    assert gql.error_code(await gql(ME, headers={"X-API-Key": "rwak_not-a-real-key"})) == "UNAUTHENTICATED"
    assert gql.error_code(await gql(CREATE, {"n": "x"})) == "UNAUTHENTICATED"


async def test_node_returns_a_key_to_its_owner_only(gql, make_user):
    alice, bob = await make_user(), await make_user()
    key_id = (await create(gql, alice))["apiKey"]["id"]
    query = "query($id: ID!) { node(id: $id) { __typename id ... on ApiKey { name scope } } }"
    mine = await gql(query, {"id": key_id}, token=alice.token)
    assert mine["data"]["node"] == {"__typename": "ApiKey", "id": key_id, "name": "dashboard", "scope": "read"}
    assert (await gql(query, {"id": key_id}, token=bob.token))["data"]["node"] is None
    assert (await gql(query, {"id": key_id}))["data"]["node"] is None
