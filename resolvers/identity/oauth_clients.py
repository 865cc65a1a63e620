"""OAuth 2.0 clients for partners: registration, secret rotation with overlap, revocation, and the
client-credentials grant (RFC 6749 §4.4) behind `POST /oauth/token` (server/oauth_token.py).

A client acts for one account (`owner`): its access token is the same Ed25519 JWT as a login's, for the owner with
the owner's current roles, plus `scope` and `client_id` claims (RFC 9068). schema.scopes lets such a token call only
the root fields its scopes allow; the roles decide the rest as for the owner's own login.

Secrets (`rwacs_<43 url-safe chars>`, 256 random bits) are shown once and stored as HMAC-SHA256 under a server-side
pepper (`OAUTH_SECRET_PEPPER`, else derived from the master key with HKDF): a secret of 256 random bits cannot be
guessed, so a slow hash (argon2id as for passwords: ~25 ms of CPU and 19 MiB per check, see the README) protects
nothing more and would make the token endpoint a cheap way to burn the API's CPU; the pepper means a database dump
alone cannot even confirm a secret. Every token's `sid` is the id of the secret that obtained it: revoking the
client or a secret revokes those sids on every process at once (core.revocation), and a token never outlives its
secret (its `exp` is capped at the end of a rotation's overlap).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import BadUserInput, Conflict, NotFound
from core.oauth_scopes import ALL_SCOPES
from core.services import Services, dev_cipher_key
from models.identity import Role, User, UserStatus
from models.oauth import OAuthClient, OAuthClientSecret
from resolvers import unit_of_work
from resolvers.audit import record
from resolvers.context import Context

CLIENT_ID_PREFIX = "rwac"
SECRET_PREFIX = "rwacs"
DISPLAY_PREFIX_LEN = 12
MAX_OVERLAP_S = 30 * 24 * 3600
LAST_USED_RESOLUTION = timedelta(minutes=1)


def utcnow() -> datetime:
    return datetime.now(UTC)


def _pepper(services: Services) -> bytes:
    pepper = services.oauth_pepper
    if pepper is None:
        settings = services.settings
        configured = getattr(settings, "oauth_secret_pepper", None)
        if configured is not None and configured.get_secret_value():
            pepper = configured.get_secret_value().encode()
        else:
            from core.encryption import parse_key

            master = (
                parse_key(settings.kyc_encryption_key.get_secret_value())
                if settings.kyc_encryption_key
                else dev_cipher_key(settings)
            )
            pepper = HKDF(hashes.SHA256(), 32, salt=None, info=b"rwa oauth client secret pepper").derive(master)
        services.oauth_pepper = pepper
    return pepper


def secret_digest(services: Services, secret: str) -> str:
    return hmac.new(_pepper(services), secret.encode(), hashlib.sha256).hexdigest()


def parse_scopes(raw: list[str] | str, field: str = "scopes") -> list[str]:
    items = raw.split() if isinstance(raw, str) else [s.strip() for s in raw]
    scopes = sorted(set(s for s in items if s))
    unknown = [s for s in scopes if s not in ALL_SCOPES]
    if unknown or not scopes:
        named = f"unknown scopes {', '.join(unknown)}: " if unknown else ""  # the payload error keeps only the message
        raise BadUserInput(
            f"{named}scopes must be one or more of {', '.join(sorted(ALL_SCOPES))}", field=field, unknown=unknown
        )
    return scopes


@dataclass(frozen=True)
class IssuedSecret:
    client: OAuthClient
    secret: str
    previous_valid_until: datetime | None = None


def _name(name: str) -> str:
    name = " ".join(name.split())
    if not 1 <= len(name) <= 100:
        raise BadUserInput("name must be 1 to 100 characters", field="name")
    return name


def _new_secret(services: Services, client: OAuthClient) -> tuple[OAuthClientSecret, str]:
    secret = f"{SECRET_PREFIX}_{secrets.token_urlsafe(32)}"
    row = OAuthClientSecret(
        id=uuid.uuid4(),
        client_pk=client.id,
        secret_hash=secret_digest(services, secret),
        prefix=secret[:DISPLAY_PREFIX_LEN],
        created_at=utcnow(),
    )
    return row, secret


async def register(ctx: Context, name: str, owner_id: uuid.UUID, scopes: list[str]) -> IssuedSecret:
    admin = ctx.viewer.require_role(Role.ADMIN.value)
    name, scopes = _name(name), parse_scopes(scopes)
    session = await ctx.session()
    owner = await session.get(User, owner_id)
    if owner is None:
        raise NotFound("no such user", field="ownerId")
    if owner.status is not UserStatus.ACTIVE:
        raise Conflict("the owner's account is disabled", field="ownerId")
    client = OAuthClient(
        id=uuid.uuid4(),
        client_id=f"{CLIENT_ID_PREFIX}_{secrets.token_urlsafe(16)}",
        name=name,
        owner_id=owner_id,
        scopes=scopes,
        created_by=admin,
        created_at=utcnow(),
    )
    session.add(client)
    await session.flush()
    row, secret = _new_secret(ctx.services, client)
    session.add(row)
    record(
        session,
        actor_id=admin,
        action="oauth_client.register",
        target_type="oauth_client",
        target_id=client.id,
        request_id=ctx.request_id,
        details={
            "clientId": client.client_id,
            "name": name,
            "owner": str(owner_id),
            "scopes": scopes,
            "secretPrefix": row.prefix,
        },
    )
    await unit_of_work.commit(session)
    return IssuedSecret(client, secret)


async def _locked_client(session: AsyncSession, client_id: str) -> OAuthClient:
    client = (
        await session.execute(select(OAuthClient).where(OAuthClient.client_id == client_id).with_for_update())
    ).scalar_one_or_none()
    if client is None:
        raise NotFound("no such OAuth client", field="clientId")
    if client.revoked_at is not None:
        raise Conflict("the client is revoked", field="clientId")
    return client


async def _live_secrets(session: AsyncSession, client: OAuthClient, now: datetime) -> list[OAuthClientSecret]:
    return list(
        (
            await session.execute(
                select(OAuthClientSecret).where(
                    OAuthClientSecret.client_pk == client.id,
                    OAuthClientSecret.revoked_at.is_(None),
                    or_(OAuthClientSecret.expires_at.is_(None), OAuthClientSecret.expires_at > now),
                )
            )
        ).scalars()
    )


async def rotate(ctx: Context, client_id: str, overlap_s: int) -> IssuedSecret:
    """A new secret; the ones valid now stay valid `overlap_s` more seconds (0: they stop at once, with every token
    they obtained)."""
    admin = ctx.viewer.require_role(Role.ADMIN.value)
    if not 0 <= overlap_s <= MAX_OVERLAP_S:
        raise BadUserInput(f"overlapSeconds must be 0 to {MAX_OVERLAP_S}", field="overlapSeconds")
    session = await ctx.session()
    client = await _locked_client(session, client_id)
    now = utcnow()
    until = now + timedelta(seconds=overlap_s)
    old = await _live_secrets(session, client, now)
    for row in old:
        if overlap_s == 0:
            row.revoked_at = now
        elif row.expires_at is None or row.expires_at > until:
            row.expires_at = until
    new, secret = _new_secret(ctx.services, client)
    session.add(new)
    record(
        session,
        actor_id=admin,
        action="oauth_client.rotate",
        target_type="oauth_client",
        target_id=client.id,
        request_id=ctx.request_id,
        details={
            "clientId": client.client_id,
            "secretPrefix": new.prefix,
            "overlapSeconds": overlap_s,
            "previous": [r.prefix for r in old],
        },
    )
    # durable before the old secrets are revoked in Redis (overlap 0): refused only once stored
    await session.commit()
    if overlap_s == 0:
        for row in old:
            await ctx.services.revocations.revoke_session(row.id)
    return IssuedSecret(client, secret, None if overlap_s == 0 or not old else until)


async def revoke(ctx: Context, client_id: str) -> OAuthClient:
    """The client's secrets stop working and every token it holds is refused on every process at once."""
    admin = ctx.viewer.require_role(Role.ADMIN.value)
    session = await ctx.session()
    client = await _locked_client(session, client_id)
    now = utcnow()
    client.revoked_at = now
    sids = list(
        (
            await session.execute(
                update(OAuthClientSecret)
                .where(OAuthClientSecret.client_pk == client.id, OAuthClientSecret.revoked_at.is_(None))
                .values(revoked_at=now)
                .returning(OAuthClientSecret.id)
            )
        ).scalars()
    )
    record(
        session,
        actor_id=admin,
        action="oauth_client.revoke",
        target_type="oauth_client",
        target_id=client.id,
        request_id=ctx.request_id,
        details={"clientId": client.client_id},
    )
    # durable before the client's secrets are revoked in Redis on every process
    await session.commit()
    for sid in sids:
        await ctx.services.revocations.revoke_session(sid)
    return client


async def list_clients(session: AsyncSession, include_revoked: bool) -> list[OAuthClient]:
    stmt = select(OAuthClient)
    if not include_revoked:
        stmt = stmt.where(OAuthClient.revoked_at.is_(None))
    return list((await session.execute(stmt.order_by(OAuthClient.created_at.desc(), OAuthClient.id))).scalars())


async def secrets_of(session: AsyncSession, client_pks: list[uuid.UUID]) -> dict[uuid.UUID, list[OAuthClientSecret]]:
    rows = (
        await session.execute(
            select(OAuthClientSecret)
            .where(OAuthClientSecret.client_pk.in_(client_pks))
            .order_by(OAuthClientSecret.created_at.desc())
        )
    ).scalars()
    out: dict[uuid.UUID, list[OAuthClientSecret]] = {}
    for row in rows:
        out.setdefault(row.client_pk, []).append(row)
    return out


# -- the token endpoint ------------------------------------------------------------------------------------------


class OAuthError(Exception):
    """An RFC 6749 §5.2 error: `error` code, HTTP status, description."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error, self.description, self.status = error, description, status


@dataclass(frozen=True)
class TokenGrant:
    access_token: str
    expires_in: int
    scope: str


async def client_credentials(
    services: Services, client_id: str, client_secret: str, requested_scope: str | None, request_id: str | None = None
) -> TokenGrant:
    """Authenticate the client and issue its access token (RFC 6749 §4.4.2-3), or raise OAuthError."""
    now = utcnow()
    presented = secret_digest(services, client_secret)
    async with services.session_factory() as session:
        row = (
            await session.execute(
                select(OAuthClient, User)
                .join(User, User.id == OAuthClient.owner_id)
                .where(OAuthClient.client_id == client_id[:64])
            )
        ).first()
        match: OAuthClientSecret | None = None
        if row is not None and row[0].revoked_at is None:
            for candidate in await _live_secrets(session, row[0], now):
                if hmac.compare_digest(candidate.secret_hash, presented):
                    match = candidate
        if row is None or match is None:
            raise OAuthError("invalid_client", "client authentication failed", 401)
        client, owner = row
        if owner.status is not UserStatus.ACTIVE:
            raise OAuthError("invalid_client", "the client's account is disabled", 401)
        granted = set(client.scopes)
        if requested_scope is None or not requested_scope.strip():
            scopes = sorted(granted)
        else:
            asked = set(requested_scope.split())
            if not asked <= granted:
                raise OAuthError(
                    "invalid_scope",
                    "requested scope exceeds what this client was granted: " + " ".join(sorted(asked - granted)),
                )
            scopes = sorted(asked)
        not_after = int(match.expires_at.timestamp()) if match.expires_at is not None else None
        # expires_in counts from the token's own issue second: `now` (taken before the queries) may be a second
        # behind it, which made expires_in one more than the token's lifetime
        issued_at = time.time()
        token, exp = services.keyring.issue(
            owner.id,
            list(owner.roles),
            str(match.id),
            now=issued_at,
            scopes=scopes,
            client_id=client.client_id,
            not_after=not_after,
        )
        # at most once a minute: concurrent token requests of one client would otherwise queue on its row lock
        await session.execute(
            update(OAuthClient)
            .where(
                OAuthClient.id == client.id,
                or_(OAuthClient.last_used_at.is_(None), OAuthClient.last_used_at < now - LAST_USED_RESOLUTION),
            )
            .values(last_used_at=now)
        )
        record(
            session,
            actor_id=owner.id,
            action="oauth_client.token",
            target_type="oauth_client",
            target_id=client.id,
            request_id=request_id,
            details={"clientId": client.client_id, "scope": " ".join(scopes), "secretPrefix": match.prefix},
        )
        # its own session (the token endpoint, no unit of work): commits the last-used stamp and audit row
        await session.commit()
    return TokenGrant(token, max(exp - int(issued_at), 0), " ".join(scopes))


def describe(client: OAuthClient) -> dict[str, Any]:  # for logs
    return {"clientId": client.client_id, "scopes": list(client.scopes)}
