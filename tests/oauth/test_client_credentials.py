"""OAuth 2.0 client-credentials grant over HTTP: ADMIN registers, rotates and revokes clients; POST /oauth/token
issues scoped JWTs; scopes are enforced per root field; revocation ends tokens at once."""

from __future__ import annotations

import base64
import hashlib
import time
import uuid
from urllib.parse import quote_plus

import jwt
from sqlalchemy import select, text

from core.revocation import RevocationList
from models.identity import AuditLog, User, UserStatus

REGISTER = """mutation($name: String!, $owner: UUID!, $scopes: [String!]!) {
  registerOAuthClient(input: {name: $name, ownerId: $owner, scopes: $scopes}) { credentials {
    clientSecret previousSecretsValidUntil
    client { id clientId name ownerId scopes revokedAt secrets { prefix expiresAt revokedAt } } }
  errors { code field message } } }"""
ROTATE = """mutation($c: String!, $o: Int!) { rotateOAuthClientSecret(input: {clientId: $c, overlapSeconds: $o}) {
  credentials { clientSecret previousSecretsValidUntil client { secrets { prefix expiresAt revokedAt } } }
  errors { code field message } } }"""
REVOKE = """mutation($c: String!) { revokeOAuthClient(input: {clientId: $c}) {
  client { clientId revokedAt } errors { code field message } } }"""
LIST = "{ oauthClients(includeRevoked: true) { clientId scopes lastUsedAt revokedAt secrets { prefix } } }"
FORM = {"content-type": "application/x-www-form-urlencoded"}


async def register(gql, admin, owner_id, scopes=("assets:read", "market-data:read"), name="Partner Ltd"):  # type: ignore[no-untyped-def]
    result = await gql(REGISTER, {"name": name, "owner": str(owner_id), "scopes": list(scopes)}, token=admin.token)
    data = gql.payload(result, "registerOAuthClient", "credentials")
    return data["client"]["clientId"], data["clientSecret"], data


def basic(client_id: str, secret: str) -> dict[str, str]:
    raw = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode(), **FORM}


async def token(client, client_id: str, secret: str, scope: str | None = None, *, body_auth: bool = False):  # type: ignore[no-untyped-def]
    form = {"grant_type": "client_credentials"}
    if scope is not None:
        form["scope"] = scope
    if body_auth:
        form.update(client_id=client_id, client_secret=secret)
        return await client.post("/oauth/token", data=form, headers=FORM)
    return await client.post("/oauth/token", data=form, headers=basic(client_id, secret))


async def test_register_shows_the_secret_once_and_stores_an_hmac(gql, make_user, session, client):
    admin, partner = await make_user(roles=["ADMIN"]), await make_user()
    client_id, secret, data = await register(gql, admin, partner.id)
    assert client_id.startswith("rwac_") and secret.startswith("rwacs_") and len(secret) > 45
    assert data["client"]["scopes"] == ["assets:read", "market-data:read"]
    assert data["client"]["secrets"][0]["prefix"] == secret[:12]
    stored = (await session.execute(text("SELECT secret_hash FROM oauth_client_secrets"))).scalar_one()
    assert stored != hashlib.sha256(secret.encode()).hexdigest() and secret not in stored and len(stored) == 64
    listed = await gql(LIST, token=admin.token)
    assert secret not in str(listed) and listed["data"]["oauthClients"][0]["clientId"] == client_id
    audit = (await session.execute(select(AuditLog).where(AuditLog.action == "oauth_client.register"))).scalar_one()
    assert audit.actor_id == admin.id and audit.details["scopes"] == ["assets:read", "market-data:read"]
    assert secret not in str(audit.details)
    # unknown scopes and unknown owners are refused, nothing stored
    bad = await gql(REGISTER, {"name": "x", "owner": str(partner.id), "scopes": ["admin:all"]}, token=admin.token)
    assert gql.error_code(bad) == "BAD_USER_INPUT" and bad["data"]["registerOAuthClient"]["credentials"] is None
    refusal = bad["data"]["registerOAuthClient"]["errors"][0]
    assert refusal["field"] == ["input", "scopes"] and "unknown scopes admin:all" in refusal["message"]
    bad = await gql(REGISTER, {"name": "x", "owner": str(uuid.uuid4()), "scopes": ["assets:read"]}, token=admin.token)
    assert gql.error_code(bad) == "NOT_FOUND"
    assert bad["data"]["registerOAuthClient"]["errors"][0]["field"] == ["input", "ownerId"]
    assert (await session.execute(text("SELECT count(*) FROM oauth_clients"))).scalar_one() == 1


async def test_token_endpoint_issues_a_scoped_jwt_enforced_per_field(gql, make_user, client, services, session):
    admin, partner = await make_user(roles=["ADMIN"]), await make_user(roles=["INVESTOR"])
    client_id, secret, _ = await register(gql, admin, partner.id)
    resp = await token(client, client_id, secret)
    assert resp.status_code == 200, resp.text
    assert resp.headers["cache-control"] == "no-store" and resp.headers["pragma"] == "no-cache"
    body = resp.json()
    assert body["token_type"] == "Bearer" and body["scope"] == "assets:read market-data:read"
    assert 0 < body["expires_in"] <= services.settings.access_token_ttl_s
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["sub"] == str(partner.id) and claims["client_id"] == client_id
    assert claims["scope"] == "assets:read market-data:read" and claims["roles"] == ["INVESTOR"]
    access = body["access_token"]

    allowed = await gql("{ assets(first: 1) { edges { node { id } } } markets { id } }", token=access)
    assert "errors" not in allowed, allowed
    for doc in (
        "{ me { id } }",
        "{ myKyc { status } }",
        'mutation { createApiKey(input: {name: "x"}) { createdApiKey { secret } } }',
        "{ assets(first: 1) { edges { node { id } } } me { id } }",
        "query Q { ...F } fragment F on Query { me { id } }",
    ):
        refused = await gql(doc, token=access)
        assert gql.error_code(refused) == "FORBIDDEN", (doc, refused)
        assert refused["errors"][0]["extensions"]["reason"] == "INSUFFICIENT_SCOPE"
        assert refused.get("data") is None
    me = await gql("{ me { id } }", token=access)
    assert me["errors"][0]["extensions"]["requiredScopes"] == ["account:read"]

    # a narrower scope on request; body parameters as the client authentication
    narrow = await token(client, client_id, secret, "market-data:read", body_auth=True)
    assert narrow.status_code == 200 and narrow.json()["scope"] == "market-data:read"
    refused = await gql("{ assets(first: 1) { edges { node { id } } } }", token=narrow.json()["access_token"])
    assert refused["errors"][0]["extensions"]["reason"] == "INSUFFICIENT_SCOPE"
    row = (await session.execute(text("SELECT last_used_at FROM oauth_clients"))).scalar_one()
    assert row is not None


async def test_rfc6749_errors(gql, make_user, client, session):
    admin, partner = await make_user(roles=["ADMIN"]), await make_user()
    client_id, secret, _ = await register(gql, admin, partner.id)

    wrong = await token(client, client_id, secret + "x")
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
    assert wrong.headers["www-authenticate"].startswith("Basic") and wrong.headers["cache-control"] == "no-store"
    unknown = await token(client, "rwac_nobody", secret)
    assert unknown.status_code == 401 and unknown.json()["error"] == "invalid_client"
    no_auth = await client.post("/oauth/token", data={"grant_type": "client_credentials"}, headers=FORM)
    assert no_auth.status_code == 401 and no_auth.json()["error"] == "invalid_client"

    scope = await token(client, client_id, secret, "assets:read payments:write")
    assert scope.status_code == 400 and scope.json()["error"] == "invalid_scope"
    grant = await client.post("/oauth/token", data={"grant_type": "password"}, headers=basic(client_id, secret))
    assert grant.status_code == 400 and grant.json()["error"] == "unsupported_grant_type"
    missing = await client.post("/oauth/token", data={}, headers=basic(client_id, secret))
    assert missing.status_code == 400 and missing.json()["error"] == "invalid_request"
    both = await client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
        headers=basic(client_id, secret),
    )
    assert both.status_code == 400 and both.json()["error"] == "invalid_request"
    as_json = await client.post(
        "/oauth/token",
        json={"grant_type": "client_credentials"},
        headers={"Authorization": basic(client_id, secret)["Authorization"]},
    )
    assert as_json.status_code == 400 and as_json.json()["error"] == "invalid_request"
    get = await client.get("/oauth/token")
    assert get.status_code == 405 and get.json()["error"] == "invalid_request"
    repeated = await client.post(
        "/oauth/token", content="grant_type=client_credentials&grant_type=x", headers=basic(client_id, secret)
    )
    assert repeated.status_code == 400 and repeated.json()["error"] == "invalid_request"
    nul = await client.post(
        "/oauth/token", content="grant_type=client_credentials&client_id=a%00b&client_secret=x", headers=FORM
    )
    assert nul.status_code == 400 and nul.json()["error"] == "invalid_request"
    nul = await token(client, "rwac_\x00", secret)
    assert nul.status_code == 401 and nul.json()["error"] == "invalid_client"
    # none of it issued a token
    issued = (await session.execute(select(AuditLog).where(AuditLog.action == "oauth_client.token"))).all()
    assert issued == []


async def test_failed_authentications_are_rate_limited_per_address(gql, make_user, client, services):
    admin, partner = await make_user(roles=["ADMIN"]), await make_user()
    client_id, secret, _ = await register(gql, admin, partner.id)
    services.settings.login_rate_per_minute = 2  # 6 failures per minute per address
    for _ in range(6):
        assert (await token(client, client_id, "wrong")).status_code == 401
    limited = await token(client, client_id, secret)
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1


async def test_rotation_with_overlap_then_without(gql, make_user, client, session):
    admin, partner = await make_user(roles=["ADMIN"]), await make_user()
    client_id, old_secret, _ = await register(gql, admin, partner.id)
    old_token = (await token(client, client_id, old_secret)).json()["access_token"]

    rotated = gql.payload(
        await gql(ROTATE, {"c": client_id, "o": 120}, token=admin.token), "rotateOAuthClientSecret", "credentials"
    )
    new_secret, until = rotated["clientSecret"], rotated["previousSecretsValidUntil"]
    assert until is not None and new_secret != old_secret
    # during the overlap both secrets work; a token of the old one ends no later than the overlap
    for s in (old_secret, new_secret):
        assert (await token(client, client_id, s)).status_code == 200
    overlap_token = (await token(client, client_id, old_secret)).json()["access_token"]
    exp = jwt.decode(overlap_token, options={"verify_signature": False})["exp"]
    assert exp <= time.time() + 121
    assert "errors" not in await gql("{ markets { id } }", token=old_token)

    again = gql.payload(
        await gql(ROTATE, {"c": client_id, "o": 0}, token=admin.token), "rotateOAuthClientSecret", "credentials"
    )
    newest = again["clientSecret"]
    for s in (old_secret, new_secret):
        assert (await token(client, client_id, s)).json()["error"] == "invalid_client"
    for t in (old_token, overlap_token):
        ended = await gql("{ markets { id } }", token=t)
        assert gql.error_code(ended) == "UNAUTHENTICATED", ended
    assert (await token(client, client_id, newest)).status_code == 200
    bad = await gql(ROTATE, {"c": client_id, "o": -1}, token=admin.token)
    assert gql.error_code(bad) == "BAD_USER_INPUT"
    assert bad["data"]["rotateOAuthClientSecret"]["errors"][0]["field"] == ["input", "overlapSeconds"]
    actions = (
        (
            await session.execute(
                select(AuditLog.action).where(AuditLog.action.like("oauth_client.r%")).order_by(AuditLog.id)
            )
        )
        .scalars()
        .all()
    )
    assert actions == ["oauth_client.register", "oauth_client.rotate", "oauth_client.rotate"]


async def test_revocation_ends_tokens_at_once_on_every_process(gql, make_user, client, services, redis_prefix):
    admin, partner = await make_user(roles=["ADMIN"]), await make_user()
    client_id, secret, _ = await register(gql, admin, partner.id)
    access = (await token(client, client_id, secret)).json()["access_token"]
    claims = services.keyring.verify(access)
    # another API process: its in-memory mirror of the revocation list
    other = RevocationList(services.redis, services.keys, services.settings.access_token_ttl_s)
    await other.start()
    try:
        assert other.live and not other.token_revoked_here(claims.subject, claims.session_family, claims.issued_at)
        assert "errors" not in await gql("{ markets { id } }", token=access)
        revoked = await gql(REVOKE, {"c": client_id}, token=admin.token)
        assert gql.payload(revoked, "revokeOAuthClient", "client")["revokedAt"] is not None
        # the revoking call returned only once every subscribed process applied it
        assert other.token_revoked_here(claims.subject, claims.session_family, claims.issued_at)
    finally:
        await other.stop()
    ended = await gql("{ markets { id } }", token=access)
    assert gql.error_code(ended) == "UNAUTHENTICATED"
    assert ended["errors"][0]["extensions"]["reason"] == "SESSION_REVOKED"
    assert (await token(client, client_id, secret)).json()["error"] == "invalid_client"
    again = await gql(REVOKE, {"c": client_id}, token=admin.token)
    assert gql.error_code(again) == "CONFLICT"


async def test_a_disabled_owner_gets_no_token(gql, make_user, client, session_factory):
    admin, partner = await make_user(roles=["ADMIN"]), await make_user()
    client_id, secret, _ = await register(gql, admin, partner.id)
    async with session_factory() as s:
        (await s.get(User, partner.id)).status = UserStatus.DISABLED  # type: ignore[union-attr]
        await s.commit()
    resp = await token(client, client_id, secret)
    assert resp.status_code == 401 and resp.json()["error"] == "invalid_client"


async def test_client_scopes_cannot_read_personal_details(gql, make_user, client):
    """Even a field a scope opens never decrypts KYC details for a client token (owner-only, interactive)."""
    from resolvers.identity.kyc import may_read_details
    from resolvers.viewer import Viewer

    owner = uuid.uuid4()
    case = type("Case", (), {"user_id": owner})()
    assert may_read_details(Viewer(owner, frozenset({"INVESTOR"})), case)  # type: ignore[arg-type]
    assert not may_read_details(
        Viewer(
            owner,
            frozenset({"INVESTOR"}),
            scopes=frozenset({"account:read"}),  # type: ignore[arg-type]
            client_id="rwac_x",
        ),
        case,
    )


async def test_node_returns_a_client_to_admins_only(gql, make_user):
    admin, partner = await make_user(roles=["ADMIN"]), await make_user()
    _, _, data = await register(gql, admin, partner.id)
    client_pk = data["client"]["id"]
    query = "query($id: ID!) { node(id: $id) { __typename id ... on OAuthClient { clientId } } }"
    seen = await gql(query, {"id": client_pk}, token=admin.token)
    assert seen["data"]["node"] == {
        "__typename": "OAuthClient",
        "id": client_pk,
        "clientId": data["client"]["clientId"],
    }
    compliance = await make_user(roles=["COMPLIANCE"])
    for viewer in (partner, compliance):
        assert (await gql(query, {"id": client_pk}, token=viewer.token))["data"]["node"] is None
