"""Who is calling: resolved once per request from the Authorization header (JWT or API key)."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone

from sqlalchemy import select, update

from core.errors import Forbidden, Unauthenticated
from core.opaque_tokens import digest
from models.identity import ApiKey, User, UserStatus
from server.services import Services

API_KEY_PREFIX = "rwak"
_API_KEY_CACHE_S = 5.0


@dataclass(frozen=True)
class Viewer:
    user_id: uuid.UUID | None = None
    roles: frozenset[str] = frozenset()
    api_key_id: uuid.UUID | None = None
    expires_at: int | None = None
    client_ip: str = "unknown"
    session_family: str | None = None

    @property
    def authenticated(self) -> bool:
        return self.user_id is not None

    @property
    def read_only(self) -> bool:
        return self.api_key_id is not None

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


@dataclass
class _ApiKeyCache:
    entries: dict[str, tuple[float, Viewer | None]] = field(default_factory=dict)


_api_key_cache = _ApiKeyCache()


async def viewer_from_headers(services: Services, authorization: str | None, api_key: str | None,
                              client_ip: str) -> Viewer:
    """Bearer JWTs are verified locally (no database); API keys are looked up by digest (cached briefly)."""
    if authorization:
        scheme, _, credential = authorization.partition(" ")
        credential = credential.strip()
        if scheme.lower() == "bearer" and credential.startswith(API_KEY_PREFIX + "_"):
            api_key = credential
        elif scheme.lower() == "bearer" and credential:
            claims = services.keyring.verify(credential)
            return Viewer(claims.user_id, claims.roles, None, claims.expires_at, client_ip, claims.session_family)
        elif scheme.lower() == "apikey" and credential:
            api_key = credential
        else:
            raise Unauthenticated("unsupported Authorization header; use 'Bearer <token>'")
    if api_key:
        return await _viewer_from_api_key(services, api_key.strip(), client_ip)
    return Viewer(client_ip=client_ip)


async def _viewer_from_api_key(services: Services, api_key: str, client_ip: str) -> Viewer:
    key_digest = digest(api_key)
    now = time.monotonic()
    cached = _api_key_cache.entries.get(key_digest)
    if cached and cached[0] > now:
        viewer = cached[1]
    else:
        async with services.session_factory() as session:
            row = (await session.execute(
                select(ApiKey.id, ApiKey.user_id, User.roles, User.status)
                .join(User, User.id == ApiKey.user_id)
                .where(ApiKey.key_hash == key_digest, ApiKey.revoked_at.is_(None))
            )).first()
            viewer = None
            if row is not None and row.status == UserStatus.ACTIVE:
                viewer = Viewer(row.user_id, frozenset(row.roles), row.id, None, client_ip)
                await session.execute(update(ApiKey).where(ApiKey.id == row.id)
                                      .values(last_used_at=datetime.now(timezone.utc)))
                await session.commit()
        if len(_api_key_cache.entries) > 10_000:
            _api_key_cache.entries.clear()
        _api_key_cache.entries[key_digest] = (now + _API_KEY_CACHE_S, viewer)
    if viewer is None:
        raise Unauthenticated("invalid or revoked API key")
    return Viewer(viewer.user_id, viewer.roles, viewer.api_key_id, None, client_ip)


def forget_api_key(key_hash: str) -> None:
    """Called on revocation so this process stops accepting the key at once."""
    _api_key_cache.entries.pop(key_hash, None)
