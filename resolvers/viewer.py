"""Who is calling: resolved once per request from the Authorization header (JWT or API key).

A JWT is verified locally and checked against the revocation list (core.revocation: an in-memory mirror of Redis,
so no I/O per request): a logged-out session, a family revoked for refresh-token reuse, a disabled or deleted user
end at once on every process. API keys are looked up by digest and cached briefly; the same list (revoked keys,
revoked users) invalidates the cache on every process at once."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select, update

from core.errors import Forbidden, Unauthenticated
from core.opaque_tokens import digest
from core.services import Services
from models.identity import ApiKey, Role, User, UserStatus

API_KEY_PREFIX = "rwak"
_API_KEY_CACHE_S = 5.0
KNOWN_ROLES = frozenset(r.value for r in Role)


@dataclass(frozen=True)
class Viewer:
    user_id: uuid.UUID | None = None
    roles: frozenset[str] = frozenset()
    api_key_id: uuid.UUID | None = None
    expires_at: int | None = None
    client_ip: str = "unknown"
    session_family: str | None = None
    issued_at: float | None = None  # of the access token
    # an OAuth 2.0 client token: the scopes it was granted (None: a user's own login, unrestricted by scopes);
    # schema.scopes refuses every root field none of these scopes allows
    scopes: frozenset[str] | None = None
    client_id: str | None = None

    @property
    def authenticated(self) -> bool:
        return self.user_id is not None

    @property
    def read_only(self) -> bool:
        return self.api_key_id is not None

    @property
    def interactive(self) -> bool:
        """A person's own login (not an API key, not an OAuth client acting for the account)."""
        return self.user_id is not None and self.api_key_id is None and self.scopes is None

    def require_user(self) -> uuid.UUID:
        if self.user_id is None:
            raise Unauthenticated("authentication required")
        return self.user_id

    def has_role(self, *roles: str) -> bool:
        return bool(self.roles.intersection(roles))

    def require_role(self, *roles: str) -> uuid.UUID:
        user_id = self.require_user()
        if not self.has_role(*roles):
            raise Forbidden(f"requires role {' or '.join(roles)}")
        return user_id

    # The permission layer's checks (schema/permissions.py): they decide whether a field runs, not what it answers,
    # so they use only whether the caller is signed in and its roles, never who it is (server/response_cache.py
    # shares answers between callers whose resolvers never asked who they are).
    def check_signed_in(self) -> None:
        if not self.authenticated:
            raise Unauthenticated("authentication required")

    def check_role(self, *roles: str) -> None:
        self.check_signed_in()
        if not self.has_role(*roles):
            raise Forbidden(f"requires role {' or '.join(roles)}")


def _api_key_cache(services: Services) -> dict[str, tuple[float, float, Viewer | None]]:
    """Per process (per Services): digest -> (valid until (monotonic), loaded at (epoch), viewer or None)."""
    return services.api_key_cache


async def viewer_from_headers(
    services: Services, authorization: str | None, api_key: str | None, client_ip: str
) -> Viewer:
    """Bearer JWTs are verified locally (no database); API keys are looked up by digest (cached briefly)."""
    if authorization:
        scheme, _, credential = authorization.partition(" ")
        credential = credential.strip()
        if scheme.lower() == "bearer" and credential.startswith(API_KEY_PREFIX + "_"):
            api_key = credential
        elif scheme.lower() == "bearer" and credential:
            claims = services.keyring.verify(credential)
            if not claims.roles <= KNOWN_ROLES:
                raise Unauthenticated("invalid access token")
            revocations = services.revocations
            if (
                revocations.token_revoked_here(claims.subject, claims.session_family, claims.issued_at)
                if revocations.live
                else await revocations.token_revoked(claims.subject, claims.session_family, claims.issued_at)
            ):
                raise Unauthenticated("session ended; sign in again", reason="SESSION_REVOKED")
            return Viewer(
                claims.user_id,
                claims.roles,
                None,
                claims.expires_at,
                client_ip,
                claims.session_family,
                claims.issued_at,
                claims.scopes,
                claims.client_id,
            )
        elif scheme.lower() == "apikey" and credential:
            api_key = credential
        else:
            raise Unauthenticated("unsupported Authorization header; use 'Bearer <token>'")
    if api_key:
        return await _viewer_from_api_key(services, api_key.strip(), client_ip)
    return Viewer(client_ip=client_ip)


async def _viewer_from_api_key(services: Services, api_key: str, client_ip: str) -> Viewer:
    key_digest = digest(api_key)
    cached = _api_key_cache(services).get(key_digest)
    viewer: Viewer | None = None
    if cached is not None and cached[0] > time.monotonic():
        viewer = cached[2]
        if viewer is not None:
            revoked, user_revoked_at = await services.revocations.api_key_state(key_digest, str(viewer.user_id))
            if revoked:
                raise Unauthenticated("invalid or revoked API key")
            if user_revoked_at >= cached[1]:  # the user was disabled or lost a role since it was read: read again
                cached = None
    else:
        cached = None
    if cached is None:
        viewer = await _load_api_key(services, key_digest, client_ip)
    if viewer is None:
        raise Unauthenticated("invalid or revoked API key")
    return Viewer(viewer.user_id, viewer.roles, viewer.api_key_id, None, client_ip)


async def _load_api_key(services: Services, key_digest: str, client_ip: str) -> Viewer | None:
    loaded_at = time.time()
    async with services.session_factory() as session:
        row = (
            await session.execute(
                select(ApiKey.id, ApiKey.user_id, User.roles, User.status)
                .join(User, User.id == ApiKey.user_id)
                .where(ApiKey.key_hash == key_digest, ApiKey.revoked_at.is_(None))
            )
        ).first()
        viewer = None
        if row is not None and row.status == UserStatus.ACTIVE:
            viewer = Viewer(row.user_id, frozenset(row.roles), row.id, None, client_ip)
            await session.execute(update(ApiKey).where(ApiKey.id == row.id).values(last_used_at=datetime.now(UTC)))
            # its own session (authentication, no unit of work): commits the last-used stamp
            await session.commit()
    cache = _api_key_cache(services)
    if len(cache) > 10_000:
        cache.clear()
    cache[key_digest] = (time.monotonic() + _API_KEY_CACHE_S, loaded_at, viewer)
    return viewer


def forget_api_key(services: Services, key_hash: str) -> None:
    """Called on revocation (other processes learn it from the revocation list)."""
    _api_key_cache(services).pop(key_hash, None)
