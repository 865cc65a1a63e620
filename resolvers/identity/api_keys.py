"""API keys for dashboards: read-only bearer secrets, shown once, stored as a SHA-256 digest.

The secret is `rwak_<43 url-safe chars>`; its first 12 characters are kept in clear as a display prefix so a
user can tell keys apart. resolvers.viewer resolves keys by digest and refuses mutations for them.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import BadUserInput, Conflict, NotFound
from core.opaque_tokens import digest, new_secret
from models.identity import ApiKey
from resolvers import unit_of_work
from resolvers.audit import record
from resolvers.context import Context
from resolvers.viewer import API_KEY_PREFIX, forget_api_key

DISPLAY_PREFIX_LEN = 12
MAX_ACTIVE_KEYS = 20
READ_SCOPE = "read"


@dataclass(frozen=True)
class CreatedApiKey:
    api_key: ApiKey
    secret: str


def _name(name: str) -> str:
    name = " ".join(name.split())
    if not 1 <= len(name) <= 100:
        raise BadUserInput("name must be 1 to 100 characters", field="name")
    return name


async def create(ctx: Context, name: str) -> CreatedApiKey:
    user_id = ctx.viewer.require_user()
    name = _name(name)
    session = await ctx.session()
    active = (
        await session.execute(
            select(func.count()).select_from(ApiKey).where(ApiKey.user_id == user_id, ApiKey.revoked_at.is_(None))
        )
    ).scalar_one()
    if active >= MAX_ACTIVE_KEYS:
        raise Conflict(f"at most {MAX_ACTIVE_KEYS} active API keys per user; revoke one first")
    secret = new_secret(API_KEY_PREFIX)
    key = ApiKey(
        id=uuid.uuid4(),
        user_id=user_id,
        name=name,
        prefix=secret[:DISPLAY_PREFIX_LEN],
        key_hash=digest(secret),
        scope=READ_SCOPE,
        created_at=datetime.now(UTC),
    )
    session.add(key)
    record(
        session,
        actor_id=user_id,
        action="api_key.create",
        target_type="api_key",
        target_id=key.id,
        request_id=ctx.request_id,
        details={"name": name, "prefix": key.prefix},
    )
    await unit_of_work.commit(session)
    return CreatedApiKey(key, secret)


async def revoke(ctx: Context, key_id: uuid.UUID) -> ApiKey:
    user_id = ctx.viewer.require_user()
    session = await ctx.session()
    key = (
        await session.execute(select(ApiKey).where(ApiKey.id == key_id, ApiKey.user_id == user_id).with_for_update())
    ).scalar_one_or_none()
    if key is None:
        raise NotFound("no such API key on your account")
    if key.revoked_at is not None:
        raise Conflict("API key already revoked")
    key.revoked_at = datetime.now(UTC)
    record(
        session,
        actor_id=user_id,
        action="api_key.revoke",
        target_type="api_key",
        target_id=key.id,
        request_id=ctx.request_id,
        details={"prefix": key.prefix},
    )
    # durable before the key is dropped from the caches and revoked in Redis on every process
    await session.commit()
    forget_api_key(ctx.services, key.key_hash)
    # every other process refuses it from now on (the schema promises "stops working immediately")
    await ctx.services.revocations.revoke_api_key(key.key_hash)
    return key


async def keys_of(session: AsyncSession, user_id: uuid.UUID, include_revoked: bool) -> list[ApiKey]:
    stmt = select(ApiKey).where(ApiKey.user_id == user_id)
    if not include_revoked:
        stmt = stmt.where(ApiKey.revoked_at.is_(None))
    return list((await session.execute(stmt.order_by(ApiKey.created_at.desc(), ApiKey.id))).scalars())
