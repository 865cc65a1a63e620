"""API keys for dashboards (read-only). Types and fields only; the work is in resolvers/identity/api_keys."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import Enum

import strawberry
from strawberry.types import Info

from models.identity import ApiKey as ApiKeyModel
from resolvers.identity import api_keys
from schema.mutations import mutation
from schema.node import Node, register_node
from schema.permissions import authenticated


@strawberry.enum(description="What an API key may do: read (queries only).")
class ApiKeyScope(Enum):
    read = "read"  # the wire value stays the stored (lowercase) scope


@strawberry.type(description="Send as `Authorization: Bearer rwak_...` or `X-API-Key`. Queries only.")
class ApiKey(Node):
    name: str
    prefix: str = strawberry.field(description="The first characters of the secret, to tell keys apart.")
    scope: ApiKeyScope
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def from_model(cls, k: ApiKeyModel) -> ApiKey:
        return cls(
            id=strawberry.ID(str(k.id)),
            name=k.name,
            prefix=k.prefix,
            scope=ApiKeyScope(k.scope),
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
    @mutation(
        extensions=authenticated(),
        description="A read-only key acting with the caller's roles. At most 20 active keys per user (CONFLICT).",
    )
    async def create_api_key(self, info: Info, name: str) -> CreatedApiKey:
        created = await api_keys.create(info.context, name)
        return CreatedApiKey(api_key=ApiKey.from_model(created.api_key), secret=created.secret)

    @mutation(
        extensions=authenticated(),
        description="The key stops working at once. NOT_FOUND unless it is one of yours, CONFLICT if already revoked.",
    )
    async def revoke_api_key(self, info: Info, id: uuid.UUID) -> ApiKey:
        return ApiKey.from_model(await api_keys.revoke(info.context, id))


async def load_api_key(info: Info, id: uuid.UUID) -> ApiKey | None:
    """`node(id)` for an ApiKey: only its owner sees it (like `myApiKeys`)."""
    user_id = info.context.viewer.user_id
    if user_id is None:
        return None
    key = await (await info.context.session()).get(ApiKeyModel, id)
    return ApiKey.from_model(key) if key is not None and key.user_id == user_id else None


register_node("ApiKey", "api_keys", load_api_key)
