"""Webhook signatures per the Standard Webhooks specification (https://www.standardwebhooks.com/):

    webhook-id:        the delivery's id (the same on every retry: receivers deduplicate on it)
    webhook-timestamp: unix seconds of this attempt
    webhook-signature: v1,<base64 of HMAC-SHA256(key, "<webhook-id>.<webhook-timestamp>.<body>")>

The secret is shared as `whsec_<base64 of the key>` (WEBHOOK_SECRET); receivers verify with any Standard Webhooks
library (`standardwebhooks` on PyPI and npm, `svix`) and reject timestamps older than five minutes (replays).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.settings import Settings

ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
SECRET_PREFIX = "whsec_"
DEFAULT_TOLERANCE_S = 300


def key_of(secret: str) -> bytes:
    """The HMAC key of a `whsec_<base64>` secret; a value without the prefix is the key itself (its whsec_ form is
    `whsec_` + base64 of its bytes: `public_secret`)."""
    if secret.startswith(SECRET_PREFIX):
        try:
            return base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
        except binascii.Error:
            raise ValueError("WEBHOOK_SECRET: whsec_ must be followed by base64") from None
    return secret.encode()


def public_secret(key: bytes) -> str:
    """What receivers configure: `whsec_` + base64 of the key."""
    return SECRET_PREFIX + base64.b64encode(key).decode()


def signature(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(key: bytes, message_id: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """The three Standard Webhooks headers for one attempt."""
    ts = int(time.time()) if timestamp is None else timestamp
    return {ID_HEADER: message_id, TIMESTAMP_HEADER: str(ts), SIGNATURE_HEADER: signature(key, message_id, ts, body)}


def verify(
    key: bytes, body: bytes, received: dict[str, str], tolerance_s: int = DEFAULT_TOLERANCE_S, now: float | None = None
) -> bool:
    """True when `received` (header names in lower case) sign `body` within `tolerance_s` seconds; any of the
    space-separated `v1,` signatures may match (a receiver rotating keys sees several)."""
    try:
        message_id, ts = received[ID_HEADER], int(received[TIMESTAMP_HEADER])
        given = received[SIGNATURE_HEADER].split()
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - ts) > tolerance_s:
        return False
    expected = signature(key, message_id, ts, body)
    return any(hmac.compare_digest(expected, candidate) for candidate in given)


def secret_for(settings: Settings) -> bytes:
    """The HMAC key: of WEBHOOK_SECRET, or in development of a `whsec_` secret generated once per data dir (its
    file, `webhook-dev.secret`, is what a local receiver configures). Production refuses to start without a real
    one: Settings.check_production."""
    if settings.webhook_secret is not None and settings.webhook_secret.get_secret_value():
        return key_of(settings.webhook_secret.get_secret_value())
    path = settings.data_path() / "webhook-dev.secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(public_secret(os.urandom(32)))
        tmp.chmod(0o600)
        tmp.replace(path)
    return key_of(path.read_text().strip())
