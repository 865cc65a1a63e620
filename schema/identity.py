"""Identity & access: accounts, sessions, MFA and roles. Types and fields only; the work is in resolvers/identity."""

from __future__ import annotations

import uuid
from datetime import datetime

import strawberry
from strawberry.types import Info

from models.identity import Role as RoleModel
from models.identity import User as UserModel
from resolvers.identity import accounts, mfa_flows
from resolvers.identity.sessions import IssuedSession
from schema.lookups import found
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
    def from_model(cls, user: UserModel | accounts.Profile) -> User:
        return cls(
            id=user.id,
            email=user.email,
            roles=[RoleModel(r) for r in user.roles],
            status=user.status.value,
            created_at=user.created_at,
        )


@strawberry.type(description="Returned by register, login and refreshToken. The refresh token is shown once.")
class AuthPayload:
    access_token: str
    access_token_expires_at: datetime
    refresh_token: str
    user: User

    @classmethod
    def from_issued(cls, issued: IssuedSession) -> AuthPayload:
        return cls(
            access_token=issued.access_token,
            access_token_expires_at=issued.access_expires_at,
            refresh_token=issued.refresh_token,
            user=User.from_model(issued.user),
        )


@strawberry.type(
    description=(
        "Returned by login. Without MFA (or with a valid `mfaCode`) it carries the session, as AuthPayload does. "
        "For an account with MFA and no code, `mfaRequired` is true, the token fields are null and `mfaChallenge` is "
        "to be completed by `completeMfaLogin` before `mfaChallengeExpiresAt`."
    )
)
class LoginPayload:
    access_token: str | None
    access_token_expires_at: datetime | None
    refresh_token: str | None
    user: User | None
    mfa_required: bool
    mfa_challenge: str | None
    mfa_challenge_expires_at: datetime | None

    @classmethod
    def from_result(cls, result: accounts.LoginResult) -> LoginPayload:
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


@strawberry.type(description="One-time recovery codes, each usable once instead of a TOTP code. Shown once.")
class MfaRecoveryCodes:
    recovery_codes: list[str]


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
    @strawberry.mutation(description="Create an INVESTOR account and sign in. Rate-limited per IP and per email.")
    async def register(self, info: Info, email: str, password: str) -> AuthPayload:
        return AuthPayload.from_issued(await accounts.register(info.context, email, password))

    @strawberry.mutation(
        description=(
            "Sign in. Repeated failures lock the account for a growing time. For an account with MFA, pass `mfaCode` "
            "(a TOTP or recovery code) to sign in at once, or omit it to get `mfaRequired` and a challenge for "
            "completeMfaLogin."
        )
    )
    async def login(self, info: Info, email: str, password: str, mfa_code: str | None = None) -> LoginPayload:
        return LoginPayload.from_result(await accounts.login(info.context, email, password, mfa_code))

    @strawberry.mutation(
        description=(
            "Finish an MFA sign-in: the challenge from login and a TOTP code (or a recovery code, then spent). "
            "Wrong codes count towards a lock like wrong passwords."
        )
    )
    async def complete_mfa_login(self, info: Info, challenge: str, code: str) -> AuthPayload:
        return AuthPayload.from_issued(await mfa_flows.complete_login(info.context, challenge, code))

    @strawberry.mutation(
        extensions=authenticated(),
        description=(
            "Start TOTP enrolment: a new secret (replacing an unconfirmed one), active once confirmMfaEnrolment gets a "
            "first valid code. CONFLICT if MFA is already enabled."
        ),
    )
    async def begin_mfa_enrolment(self, info: Info) -> MfaEnrolment:
        e = await mfa_flows.begin_enrolment(info.context)
        return MfaEnrolment(otpauth_uri=e.otpauth_uri, secret=e.secret)

    @strawberry.mutation(
        extensions=authenticated(),
        description=("Activate MFA with a first code from the authenticator; returns recovery codes, shown once."),
    )
    async def confirm_mfa_enrolment(self, info: Info, code: str) -> MfaRecoveryCodes:
        return MfaRecoveryCodes(recovery_codes=await mfa_flows.confirm_enrolment(info.context, code))

    @strawberry.mutation(
        extensions=authenticated(),
        description=(
            "Turn MFA off; needs a fresh TOTP code (or a recovery code). Refused for roles that require MFA in "
            "production."
        ),
    )
    async def disable_mfa(self, info: Info, code: str) -> bool:
        return await mfa_flows.disable(info.context, code)

    @strawberry.mutation(
        extensions=authenticated(),
        description=("Replace all recovery codes (the old ones stop working); needs a fresh code."),
    )
    async def regenerate_mfa_recovery_codes(self, info: Info, code: str) -> MfaRecoveryCodes:
        return MfaRecoveryCodes(recovery_codes=await mfa_flows.regenerate_recovery_codes(info.context, code))

    @strawberry.mutation(description="Spend a refresh token for a new pair. Reusing a spent one revokes the session.")
    async def refresh_token(self, info: Info, refresh_token: str) -> AuthPayload:
        return AuthPayload.from_issued(await accounts.refresh(info.context, refresh_token))

    @strawberry.mutation(
        extensions=authenticated(),
        description=(
            "End one of your sessions: the one of `refreshToken` (NOT_FOUND if it is not yours), else the one of the "
            "access token used. Its refresh tokens and access tokens stop working at once, on every server."
        ),
    )
    async def logout(self, info: Info, refresh_token: str | None = None) -> bool:
        return await accounts.logout(info.context, refresh_token)

    @strawberry.mutation(extensions=requires(RoleModel.ADMIN))
    async def grant_role(self, info: Info, user_id: uuid.UUID, role: Role) -> User:
        return User.from_model(await accounts.set_role(info.context, user_id, role, True))

    @strawberry.mutation(extensions=requires(RoleModel.ADMIN))
    async def revoke_role(self, info: Info, user_id: uuid.UUID, role: Role) -> User:
        return User.from_model(await accounts.set_role(info.context, user_id, role, False))
