"""Identity & access: accounts, sessions and roles. Types and fields only; the work is in resolvers/identity."""

from __future__ import annotations

import uuid
from datetime import datetime

import strawberry
from strawberry.types import Info

from models.identity import Role as RoleModel
from models.identity import User as UserModel
from resolvers.identity import accounts
from resolvers.identity.sessions import IssuedSession
from schema.permissions import authenticated, requires

Role = strawberry.enum(RoleModel, description="What a user may do; ADMIN grants and revokes roles.")


@strawberry.type(description="A platform account. Email and roles are visible to the user and to staff.")
class User:
    id: uuid.UUID
    email: str
    roles: list[Role]
    status: str
    created_at: datetime

    @classmethod
    def from_model(cls, user: "UserModel | accounts.Profile") -> "User":
        return cls(id=user.id, email=user.email, roles=[RoleModel(r) for r in user.roles], status=user.status.value,
                   created_at=user.created_at)


@strawberry.type(description="Returned by register, login and refreshToken. The refresh token is shown once.")
class AuthPayload:
    access_token: str
    access_token_expires_at: datetime
    refresh_token: str
    user: User

    @classmethod
    def from_issued(cls, issued: IssuedSession) -> "AuthPayload":
        return cls(access_token=issued.access_token, access_token_expires_at=issued.access_expires_at,
                   refresh_token=issued.refresh_token, user=User.from_model(issued.user))


@strawberry.type
class Query:
    @strawberry.field(extensions=authenticated(), description="The signed-in user.")
    async def me(self, info: Info) -> User:
        return User.from_model(await accounts.get_profile(info.context, info.context.viewer.require_user()))

    @strawberry.field(extensions=requires(RoleModel.ADMIN, RoleModel.COMPLIANCE), description="Any user, for staff.")
    async def user(self, info: Info, id: uuid.UUID) -> User:
        session = await info.context.session()
        return User.from_model(await accounts.get_user(session, id))


@strawberry.type
class Mutation:
    @strawberry.mutation(description="Create an INVESTOR account and sign in. Rate-limited per IP and per email.")
    async def register(self, info: Info, email: str, password: str) -> AuthPayload:
        return AuthPayload.from_issued(await accounts.register(info.context, email, password))

    @strawberry.mutation(description="Sign in. Repeated failures lock the account for a growing time.")
    async def login(self, info: Info, email: str, password: str) -> AuthPayload:
        return AuthPayload.from_issued(await accounts.login(info.context, email, password))

    @strawberry.mutation(description="Spend a refresh token for a new pair. Reusing a spent one revokes the session.")
    async def refresh_token(self, info: Info, refresh_token: str) -> AuthPayload:
        return AuthPayload.from_issued(await accounts.refresh(info.context, refresh_token))

    @strawberry.mutation(extensions=authenticated(), description=(
        "End one of your sessions: the one of `refreshToken` (NOT_FOUND if it is not yours), else the one of the "
        "access token used. Its refresh tokens and access tokens stop working at once, on every server."))
    async def logout(self, info: Info, refresh_token: str | None = None) -> bool:
        return await accounts.logout(info.context, refresh_token)

    @strawberry.mutation(extensions=requires(RoleModel.ADMIN))
    async def grant_role(self, info: Info, user_id: uuid.UUID, role: Role) -> User:
        return User.from_model(await accounts.set_role(info.context, user_id, role, True))

    @strawberry.mutation(extensions=requires(RoleModel.ADMIN))
    async def revoke_role(self, info: Info, user_id: uuid.UUID, role: Role) -> User:
        return User.from_model(await accounts.set_role(info.context, user_id, role, False))
