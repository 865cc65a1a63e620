"""Access tokens: EdDSA (Ed25519) JWTs with a `kid` header.

Rotation: the active key signs; keys listed in JWT_RETIRED_PUBLIC_KEYS still verify until they are removed.
Verification uses already-parsed key objects, so a request costs one signature check and no I/O.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from core.errors import Unauthenticated

ALGORITHM = "EdDSA"


@dataclass(frozen=True)
class AccessClaims:
    user_id: uuid.UUID
    roles: frozenset[str]
    expires_at: int
    # the session (refresh-token family) the token belongs to: what logout and reuse detection revoke
    session_family: str
    issued_at: float
    subject: str  # user_id as text (the revocation list's key), computed once per token
    # OAuth 2.0 client tokens (resolvers/identity/oauth_clients.py): the granted scopes (RFC 9068 `scope`) and the
    # client; None on a user's own login token, which no scope restricts
    scopes: frozenset[str] | None = None
    client_id: str | None = None


def _exact_number(value: object) -> int | float:
    # numbers a float holds exactly (a 400-digit exp passed PyJWT and overflowed where it became a float)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not -(2**53) < value < 2**53:
        raise ValueError("exp and iat must be numbers")
    return value


def _claims_of(claims: Any) -> AccessClaims:
    """Strict shapes: a validly signed token with claims of the wrong type is refused like a forged one (one
    with `roles` a list of objects, or `sub` a number, ended as an HTTP 500)."""
    if not isinstance(claims, dict):
        raise ValueError("claims must be an object")
    sub, roles, exp, iat, sid = (claims.get(k) for k in ("sub", "roles", "exp", "iat", "sid"))
    if not isinstance(sub, str) or not isinstance(sid, str) or not isinstance(roles, list):
        raise ValueError("sub, sid and roles are required")
    if not all(isinstance(r, str) for r in roles):
        raise ValueError("roles must be strings")
    exp, iat = _exact_number(exp), _exact_number(iat)
    scope, client_id = claims.get("scope"), claims.get("client_id")
    if (scope is None) != (client_id is None):
        raise ValueError("scope and client_id go together")
    if scope is not None and (not isinstance(scope, str) or not isinstance(client_id, str)):
        raise ValueError("scope and client_id must be strings")
    user_id = uuid.UUID(sub)
    return AccessClaims(
        user_id,
        frozenset(roles),
        int(exp),
        str(uuid.UUID(sid)),
        float(iat),
        str(user_id),
        None if scope is None else frozenset(scope.split()),
        client_id,
    )


def generate_private_key_pem() -> str:
    key = Ed25519PrivateKey.generate()
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def public_key_pem(private_pem: str) -> str:
    key = serialization.load_pem_private_key(private_pem.encode(), password=None)
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def load_or_create_dev_key(data_dir: Path) -> str:
    """Development only: one key per data dir, shared by every process using it."""
    path = data_dir / "jwt-dev-ed25519.pem"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(generate_private_key_pem())
        tmp.chmod(0o600)
        tmp.replace(path)
    return path.read_text()


class KeyRing:
    def __init__(
        self,
        private_pem: str,
        kid: str,
        retired_public: dict[str, str] | None = None,
        issuer: str = "stablerwa",
        ttl_s: int = 900,
    ) -> None:
        key = serialization.load_pem_private_key(private_pem.encode(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError("JWT_PRIVATE_KEY must be an Ed25519 private key (PEM)")
        self._signing = key
        self.kid = kid
        self.issuer = issuer
        self.ttl_s = ttl_s
        self._verifying: dict[str, Ed25519PublicKey] = {kid: key.public_key()}
        self._verified: OrderedDict[str, AccessClaims] = OrderedDict()
        self._cache_size = 10_000
        for rkid, pem in (retired_public or {}).items():
            pub = serialization.load_pem_public_key(pem.encode())
            if not isinstance(pub, Ed25519PublicKey):
                raise ValueError(f"retired JWT key {rkid!r} is not an Ed25519 public key")
            self._verifying.setdefault(rkid, pub)

    def __repr__(self) -> str:
        return f"KeyRing(kid={self.kid!r}, verifying={sorted(self._verifying)})"

    @classmethod
    def from_settings(cls, settings: Any) -> KeyRing:
        if settings.jwt_private_key is not None:
            pem = settings.jwt_private_key.get_secret_value()
        else:
            pem = load_or_create_dev_key(settings.data_path())
        retired = json.loads(settings.jwt_retired_public_keys or "{}")
        return cls(pem, settings.jwt_key_id, retired, settings.jwt_issuer, settings.access_token_ttl_s)

    def issue(
        self,
        user_id: uuid.UUID,
        roles: list[str],
        session_family: str | None = None,
        now: float | None = None,
        *,
        scopes: list[str] | None = None,
        client_id: str | None = None,
        not_after: int | None = None,
    ) -> tuple[str, int]:
        """A user's token; with `scopes` and `client_id`, an OAuth client's (restricted to those scopes), which
        also expires no later than `not_after` (the end of its secret's validity)."""
        # iat to the millisecond: a revocation of the user at T ends the tokens issued before T (core.revocation),
        # and a token issued just after it, in the same second, must survive
        issued = math.floor((now if now is not None else time.time()) * 1000) / 1000
        exp = int(issued) + self.ttl_s
        if not_after is not None:
            exp = min(exp, not_after)
        # every token names a session; tokens issued outside a login (tests, tools) get one of their own
        sid = session_family or str(uuid.uuid4())
        claims = {
            "sub": str(user_id),
            "roles": sorted(roles),
            "iat": issued,
            "exp": exp,
            "iss": self.issuer,
            "sid": sid,
        }
        if client_id is not None:
            claims["scope"], claims["client_id"] = " ".join(sorted(scopes or ())), client_id
        token = jwt.encode(claims, self._signing, algorithm=ALGORITHM, headers={"kid": self.kid})
        return token, exp

    def verify(self, token: str) -> AccessClaims:
        """Verify signature, issuer and expiry. Verified tokens are remembered until they expire (bounded LRU),
        so a client reusing its token costs a dict lookup instead of a signature check."""
        cached = self._verified.get(token)
        if cached is not None:
            if cached.expires_at > time.time():
                self._verified.move_to_end(token)
                return cached
            self._verified.pop(token, None)
        claims = self._verify_uncached(token)
        self._verified[token] = claims
        if len(self._verified) > self._cache_size:
            self._verified.popitem(last=False)
        return claims

    def _verify_uncached(self, token: str) -> AccessClaims:
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            key = self._verifying.get(kid) if isinstance(kid, str) else None
            if key is None:
                raise Unauthenticated("access token signed with an unknown key")
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                issuer=self.issuer,
                options={"require": ["exp", "sub", "iat", "sid"]},
            )
            return _claims_of(claims)
        except jwt.ExpiredSignatureError as exc:
            raise Unauthenticated("access token expired", reason="TOKEN_EXPIRED") from exc
        except (jwt.InvalidTokenError, ValueError, KeyError, TypeError, AttributeError, OverflowError) as exc:
            raise Unauthenticated("invalid access token") from exc
