"""Password hashing with argon2id.

Parameters follow OWASP's argon2id recommendation (m=19 MiB, t=2, p=1) rather than argon2-cffi's RFC 9106 default
of 64 MiB per hash: same class of resistance for online passwords, and a login does not add 64 MiB to the API
process's peak memory. Hashes carry their parameters, so `needs_rehash` upgrades old ones on login.
"""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_hasher = PasswordHasher(time_cost=2, memory_cost=19_456, parallelism=1)
_dummy_hash: str | None = None


def _dummy() -> str:
    """Verifying against this keeps timing the same whether or not the account exists (computed on first use)."""
    global _dummy_hash
    if _dummy_hash is None:
        _dummy_hash = _hasher.hash("timing-equaliser")
    return _dummy_hash


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _dummy(), password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)
