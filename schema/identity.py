"""Identity & access: accounts, sessions, MFA and roles. Types and fields only; the work is in resolvers/identity."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TypeAlias

import strawberry
from strawberry.types import Info

from models.identity import Role as RoleModel
from models.identity import User as UserModel
from models.identity import UserStatus as UserStatusModel
from resolvers.identity import accounts, mfa_flows
from resolvers.identity.sessions import IssuedSession
from schema.lookups import found
from schema.mutations import mutation
from schema.node import Node, register_node
from schema.permissions import authenticated, requires

strawberry.enum(RoleModel, description="What a user may do; ADMIN grants and revokes roles.")
Role: TypeAlias = RoleModel
strawberry.enum(UserStatusModel, description="ACTIVE, or DISABLED (cannot sign in).")
UserStatus: TypeAlias = UserStatusModel
_ROLES = {role.value: role for role in RoleModel}  # a role by its value (a member is equal to it: Role is a str enum)


@strawberry.type(description="A platform account. Email and roles are visible to the user and to staff.")
class User(Node):
    email: str
    roles: list[Role]
    status: UserStatus
    created_at: datetime

    @classmethod
    def from_model(cls, user: UserModel | accounts.Profile) -> User:
        return cls(
            id=strawberry.ID(str(user.id)),
            email=user.email,
            roles=[_ROLES.get(r) or RoleModel(r) for r in user.roles],  # the table: one lookup, not two enum calls
            status=user.status,
            created_at=user.created_at,
        )


@strawberry.type(
    description=(
        "A signed-in session, returned by register, completeMfaLogin and refreshToken. The refresh token is shown once."
    )
)
class AuthSession:
    access_token: str
    access_token_expires_at: datetime
    refresh_token: str
    user: User

    @classmethod
    def from_issued(cls, issued: IssuedSession) -> AuthSession:
        return cls(
            access_token=issued.access_token,
            access_token_expires_at=issued.access_expires_at,
            refresh_token=issued.refresh_token,
            user=User.from_model(issued.user),
        )


@strawberry.type(
    description=(
        "Returned by login. Without MFA (or with a valid `mfaCode`) it carries the session, as AuthSession does. "
        "For an account with MFA and no code, `mfaRequired` is true, the token fields are null and `mfaChallenge` is "
        "to be completed by `completeMfaLogin` before `mfaChallengeExpiresAt`."
    )
)
class LoginResult:
    access_token: str | None
    access_token_expires_at: datetime | None
    refresh_token: str | None
    user: User | None
    mfa_required: bool
    mfa_challenge: str | None
    mfa_challenge_expires_at: datetime | None

    @classmethod
    def from_result(cls, result: accounts.LoginResult) -> LoginResult:
        if result.session is not None:
            s = result.session
            return cls(
                access_token=s.access_token,
                access_token_expires_at=s.access_expires_at,
                refresh_token=s.refresh_token,
                user=User.from_model(s.user),
                mfa_required=False,
                mfa_challenge=None,
                mfa_challenge_expires_at=None,
            )
        challenge = result.mfa_challenge
        assert challenge is not None
        return cls(
            access_token=None,
            access_token_expires_at=None,
            refresh_token=None,
            user=None,
            mfa_required=True,
            mfa_challenge=challenge.challenge,
            mfa_challenge_expires_at=challenge.expires_at,
        )


@strawberry.type(description="A new TOTP secret, inactive until confirmMfaEnrolment. Shown once.")
class MfaEnrolment:
    otpauth_uri: str = strawberry.field(description="otpauth://totp/... for an authenticator app (or a QR code).")
    secret: str = strawberry.field(description="The base32 secret, for manual entry.")


@strawberry.type(description="The caller's second factor.")
class MfaStatus:
    enabled: bool
    pending_enrolment: bool
    confirmed_at: datetime | None
    recovery_codes_left: int


@strawberry.type
class Query:
    @strawberry.field(extensions=authenticated(), description="Whether the signed-in user has MFA enabled.")
    async def mfa_status(self, info: Info) -> MfaStatus:
        st = await mfa_flows.my_state(info.context)
        return MfaStatus(
            enabled=st.enabled,
            pending_enrolment=st.pending,
            confirmed_at=st.confirmed_at,
            recovery_codes_left=st.recovery_codes_left,
        )

    @strawberry.field(extensions=authenticated(), description="The signed-in user.")
    async def me(self, info: Info) -> User:
        return User.from_model(await accounts.get_profile(info.context, info.context.viewer.require_user()))

    @strawberry.field(
        extensions=requires(RoleModel.ADMIN, RoleModel.COMPLIANCE),
        description="Any user, for staff; null when there is none with this id.",
    )
    async def user(self, info: Info, id: uuid.UUID) -> User | None:
        session = await info.context.session()
        model = await found(accounts.get_user(session, id))
        return None if model is None else User.from_model(model)


@strawberry.type
class Mutation:
    @mutation(
        result="session",
        description=(
            "Create an INVESTOR account and sign in. Rate-limited per IP and per email. An invalid email or password "
            "is BAD_USER_INPUT, an email already taken CONFLICT (in `errors`)."
        ),
    )
    async def register(self, info: Info, email: str, password: str) -> AuthSession:
        return AuthSession.from_issued(await accounts.register(info.context, email, password))

    @mutation(
        result="session",
        description=(
            "Sign in. Repeated failures lock the account for a growing time. For an account with MFA, pass `mfaCode` "
            "(a TOTP or recovery code) to sign in at once, or omit it to get `mfaRequired` and a challenge for "
            "completeMfaLogin. Wrong credentials are a top-level UNAUTHENTICATED error, a locked account "
            "RATE_LIMITED."
        ),
    )
    async def login(self, info: Info, email: str, password: str, mfa_code: str | None = None) -> LoginResult:
        return LoginResult.from_result(await accounts.login(info.context, email, password, mfa_code))

    @mutation(
        result="session",
        description=(
            "Finish an MFA sign-in: the challenge from login and a TOTP code (or a recovery code, then spent). "
            "Wrong codes count towards a lock like wrong passwords (top-level UNAUTHENTICATED)."
        ),
    )
    async def complete_mfa_login(self, info: Info, challenge: str, code: str) -> AuthSession:
        return AuthSession.from_issued(await mfa_flows.complete_login(info.context, challenge, code))

    @mutation(
        extensions=authenticated(),
        result="enrolment",
        description=(
            "Start TOTP enrolment: a new secret (replacing an unconfirmed one), active once confirmMfaEnrolment gets a "
            "first valid code. MFA_ALREADY_ENABLED if MFA is already enabled."
        ),
    )
    async def begin_mfa_enrolment(self, info: Info) -> MfaEnrolment:
        e = await mfa_flows.begin_enrolment(info.context)
        return MfaEnrolment(otpauth_uri=e.otpauth_uri, secret=e.secret)

    @mutation(
        extensions=authenticated(),
        result="recoveryCodes",
        description=(
            "Activate MFA with a first code from the authenticator; returns the one-time recovery codes, each usable "
            "once instead of a TOTP code, shown only here."
        ),
    )
    async def confirm_mfa_enrolment(self, info: Info, code: str) -> list[str]:
        return await mfa_flows.confirm_enrolment(info.context, code)

    @mutation(
        extensions=authenticated(),
        description=(
            "Turn MFA off; needs a fresh TOTP code (or a recovery code). Refused for roles that require MFA in "
            "production."
        ),
    )
    async def disable_mfa(self, info: Info, code: str) -> bool:
        return await mfa_flows.disable(info.context, code)

    @mutation(
        extensions=authenticated(),
        result="recoveryCodes",
        description=(
            "Replace all recovery codes (the old ones stop working); needs a fresh code. The new codes, each usable "
            "once, are shown only here."
        ),
    )
    async def regenerate_mfa_recovery_codes(self, info: Info, code: str) -> list[str]:
        return await mfa_flows.regenerate_recovery_codes(info.context, code)

    @mutation(
        result="session",
        description=(
            "Spend a refresh token for a new pair. Reusing a spent one revokes the session. An invalid, spent or "
            "expired token is a top-level UNAUTHENTICATED error."
        ),
    )
    async def refresh_token(self, info: Info, refresh_token: str) -> AuthSession:
        return AuthSession.from_issued(await accounts.refresh(info.context, refresh_token))

    @mutation(
        extensions=authenticated(),
        description=(
            "End one of your sessions: the one of `refreshToken` (NOT_FOUND if it is not yours), else the one of the "
            "access token used. Its refresh tokens and access tokens stop working at once, on every server."
        ),
    )
    async def logout(self, info: Info, refresh_token: str | None = None) -> bool:
        return await accounts.logout(info.context, refresh_token)

    @mutation(extensions=requires(RoleModel.ADMIN), description="Give a user a role (ADMIN only; audited).")
    async def grant_role(self, info: Info, user_id: uuid.UUID, role: Role) -> User:
        return User.from_model(await accounts.set_role(info.context, user_id, role, True))

    @mutation(
        extensions=requires(RoleModel.ADMIN),
        description=(
            "Take a role from a user (ADMIN only; audited); their tokens still claiming it stop working at once. An "
            "admin cannot revoke their own ADMIN role (CONFLICT)."
        ),
    )
    async def revoke_role(self, info: Info, user_id: uuid.UUID, role: Role) -> User:
        return User.from_model(await accounts.set_role(info.context, user_id, role, False))


async def load_user(info: Info, id: uuid.UUID) -> User | None:
    """`node(id)` for a User: the user themself (like `me`) and staff (ADMIN, COMPLIANCE: like `user(id)`)."""
    viewer = info.context.viewer
    if viewer.user_id is None or (viewer.user_id != id and not viewer.has_role(RoleModel.ADMIN, RoleModel.COMPLIANCE)):
        return None
    model = await (await info.context.session()).get(UserModel, id)
    return None if model is None else User.from_model(model)


register_node("User", "users", load_user)
