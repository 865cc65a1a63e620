"""Opaque secrets (refresh tokens, API keys, nonces): random, shown once, stored only as a SHA-256 digest."""

from __future__ import annotations

import hashlib
import hmac
import secrets


def new_secret(prefix: str, nbytes: int = 32) -> str:
    return f"{prefix}_{secrets.token_urlsafe(nbytes)}"


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def same_digest(a: str, b: str) -> bool:
    return hmac.compare_digest(a, b)
