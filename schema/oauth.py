"""OAuth 2.0 clients of partners (ADMIN). Types and fields only; the work is in resolvers/identity/oauth_clients and
the token endpoint in server/oauth_token.py."""

from __future__ import annotations

import uuid
from datetime import datetime

import strawberry
from strawberry.types import Info

from models.identity import Role
from models.oauth import OAuthClient as OAuthClientModel
from models.oauth import OAuthClientSecret as SecretModel
from resolvers.identity import oauth_clients
from schema.mutations import mutation
from schema.node import Node, register_node
from schema.permissions import requires


@strawberry.type(description="One secret of a client (never the secret itself).")
class OAuthClientSecret:
    prefix: str = strawberry.field(description="The first characters of the secret, to tell secrets apart.")
    created_at: datetime
    expires_at: datetime | None = strawberry.field(description="End of a rotation's overlap: refused after it.")
    revoked_at: datetime | None

    @classmethod
    def from_model(cls, s: SecretModel) -> OAuthClientSecret:
        return cls(prefix=s.prefix, created_at=s.created_at, expires_at=s.expires_at, revoked_at=s.revoked_at)


@strawberry.type(
    description=(
        "A partner's client for the client-credentials grant at POST /oauth/token. Its tokens act for `ownerId` with "
        "that account's roles, restricted to `scopes`."
    )
)
class OAuthClient(Node):
    client_id: str
    name: str
    owner_id: uuid.UUID
    scopes: list[str]
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    secrets: list[OAuthClientSecret]

    @classmethod
    def from_model(cls, c: OAuthClientModel, secrets: list[SecretModel] | None = None) -> OAuthClient:
        return cls(
            id=strawberry.ID(str(c.id)),
            client_id=c.client_id,
            name=c.name,
            owner_id=c.owner_id,
            scopes=list(c.scopes),
            created_at=c.created_at,
            last_used_at=c.last_used_at,
            revoked_at=c.revoked_at,
            secrets=[OAuthClientSecret.from_model(s) for s in secrets or []],
        )


@strawberry.type(description="The client secret is shown here once and never again.")
class IssuedOAuthClientSecret:
    client: OAuthClient
    client_secret: str
    previous_secrets_valid_until: datetime | None = strawberry.field(
        description="After a rotation with overlap: when the secrets valid before it stop working."
    )


async def _with_secrets(info: Info, clients: list[OAuthClientModel]) -> list[OAuthClient]:
    secrets = await oauth_clients.secrets_of(await info.context.session(), [c.id for c in clients])
    return [OAuthClient.from_model(c, secrets.get(c.id, [])) for c in clients]


async def _issued(info: Info, issued: oauth_clients.IssuedSecret) -> IssuedOAuthClientSecret:
    (client,) = await _with_secrets(info, [issued.client])
    return IssuedOAuthClientSecret(
        client=client, client_secret=issued.secret, previous_secrets_valid_until=issued.previous_valid_until
    )


@strawberry.type
class Query:
    @strawberry.field(extensions=requires(Role.ADMIN), description="Partners' OAuth clients (never their secrets).")
    async def oauth_clients(self, info: Info, include_revoked: bool = False) -> list[OAuthClient]:
        rows = await oauth_clients.list_clients(await info.context.session(), include_revoked)
        return await _with_secrets(info, rows)


@strawberry.type
class Mutation:
    @mutation(
        extensions=requires(Role.ADMIN),
        result="credentials",
        description=(
            "Register a partner's client acting for `ownerId` within `scopes` (account:read, assets:read, "
            "holdings:read, market-data:read, orders:read, orders:write, payments:read, payments:write, "
            "offerings:read, offerings:write)."
        ),
    )
    async def register_o_auth_client(  # served as registerOAuthClient
        self, info: Info, name: str, owner_id: uuid.UUID, scopes: list[str]
    ) -> IssuedOAuthClientSecret:
        return await _issued(info, await oauth_clients.register(info.context, name, owner_id, scopes))

    @mutation(
        extensions=requires(Role.ADMIN),
        result="credentials",
        description=(
            "A new secret; the current ones keep working `overlapSeconds` more (0: they and their tokens stop now)."
        ),
    )
    async def rotate_o_auth_client_secret(  # rotateOAuthClientSecret
        self, info: Info, client_id: str, overlap_seconds: int = 86400
    ) -> IssuedOAuthClientSecret:
        return await _issued(info, await oauth_clients.rotate(info.context, client_id, overlap_seconds))

    @mutation(
        extensions=requires(Role.ADMIN),
        result="client",
        description="The client and every token it holds stop working at once, on every process.",
    )
    async def revoke_o_auth_client(self, info: Info, client_id: str) -> OAuthClient:  # revokeOAuthClient
        client = await oauth_clients.revoke(info.context, client_id)
        return (await _with_secrets(info, [client]))[0]


async def load_oauth_client(info: Info, id: uuid.UUID) -> OAuthClient | None:
    """`node(id)` for an OAuthClient: ADMIN only (like `oauthClients`)."""
    if not info.context.viewer.has_role(Role.ADMIN):
        return None
    client = await (await info.context.session()).get(OAuthClientModel, id)
    return None if client is None else (await _with_secrets(info, [client]))[0]


register_node("OAuthClient", "oauth_clients", load_oauth_client)
