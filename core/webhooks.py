"""Webhook signatures: HMAC-SHA256 over "<timestamp>.<body>", sent as

    X-RWA-Signature: t=<unix seconds>,v1=<hex digest>

Receivers recompute the digest with the shared WEBHOOK_SECRET and reject old timestamps (replays).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.settings import Settings

SIGNATURE_HEADER = "X-RWA-Signature"
DEFAULT_TOLERANCE_S = 300


def sign(secret: bytes, body: bytes, timestamp: int | None = None) -> str:
    ts = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret, f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={ts},v1={digest}"


def verify(secret: bytes, body: bytes, header: str, tolerance_s: int = DEFAULT_TOLERANCE_S,
           now: float | None = None) -> bool:
    """True when `header` is a valid signature of `body` made within `tolerance_s` seconds."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        ts = int(parts["t"])
        given = parts["v1"]
    except (ValueError, KeyError):
        return False
    if abs((time.time() if now is None else now) - ts) > tolerance_s:
        return False
    expected = hmac.new(secret, f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, given)


def secret_for(settings: "Settings") -> bytes:
    """WEBHOOK_SECRET, or in development a secret generated once per data dir (production refuses to start
    without a real one: Settings.check_production)."""
    import os

    if settings.webhook_secret is not None and settings.webhook_secret.get_secret_value():
        return settings.webhook_secret.get_secret_value().encode()
    path = settings.data_path() / "webhook-dev.secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(os.urandom(32).hex())
        tmp.chmod(0o600)
        tmp.replace(path)
    return path.read_text().strip().encode()
