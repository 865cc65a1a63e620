"""API keys for dashboards (read-only). Types and fields only; the work is in resolvers/identity/api_keys."""

from __future__ import annotations

import uuid
from datetime import datetime

import strawberry
from strawberry.types import Info

from models.identity import ApiKey as ApiKeyModel
from resolvers.identity import api_keys
from schema.permissions import authenticated


@strawberry.type(description="Send as `Authorization: Bearer rwak_...` or `X-API-Key`. Queries only.")
class ApiKey:
    id: uuid.UUID
    name: str
    prefix: str = strawberry.field(description="The first characters of the secret, to tell keys apart.")
    scope: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def from_model(cls, k: ApiKeyModel) -> ApiKey:
        return cls(
            id=k.id,
            name=k.name,
            prefix=k.prefix,
            scope=k.scope,
            created_at=k.created_at,
            last_used_at=k.last_used_at,
            revoked_at=k.revoked_at,
        )


@strawberry.type(description="The secret is shown here once and never again.")
class CreatedApiKey:
    api_key: ApiKey
    secret: str


@strawberry.type
class Query:
    @strawberry.field(extensions=authenticated(), description="The caller's API keys (never their secrets).")
    async def my_api_keys(self, info: Info, include_revoked: bool = False) -> list[ApiKey]:
        rows = await api_keys.keys_of(await info.context.session(), info.context.viewer.require_user(), include_revoked)
        return [ApiKey.from_model(k) for k in rows]


@strawberry.type
class Mutation:
    @strawberry.mutation(extensions=authenticated(), description="A read-only key acting with the caller's roles.")
    async def create_api_key(self, info: Info, name: str) -> CreatedApiKey:
        created = await api_keys.create(info.context, name)
        return CreatedApiKey(api_key=ApiKey.from_model(created.api_key), secret=created.secret)

    @strawberry.mutation(extensions=authenticated(), description="The key stops working at once.")
    async def revoke_api_key(self, info: Info, id: uuid.UUID) -> ApiKey:
        return ApiKey.from_model(await api_keys.revoke(info.context, id))
