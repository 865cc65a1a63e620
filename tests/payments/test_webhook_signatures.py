"""Webhook signatures follow the Standard Webhooks specification: the reference library (`standardwebhooks`, as a
receiver would use it) verifies what core/webhooks.py signs, with the secret in its whsec_ form."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from core.settings import Settings
from core.webhooks import headers, key_of, public_secret, secret_for, verify

BODY = json.dumps({"id": "d1", "event": "payment.confirmed", "data": {"amount": "2.5"}}, separators=(",", ":")).encode()


def test_the_reference_library_verifies_our_signature() -> None:
    secret = "whsec_" + base64.b64encode(b"k" * 32).decode()
    sent = headers(key_of(secret), "0b7c5a8e-2f4d-4c1a-9d3e-5f6a7b8c9d0e", BODY)
    assert set(sent) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert Webhook(secret).verify(BODY, sent) == json.loads(BODY)
    # the signed content is "<id>.<timestamp>.<body>", base64 HMAC-SHA256, version v1
    digest = hmac.new(
        b"k" * 32, f"{sent['webhook-id']}.{sent['webhook-timestamp']}.".encode() + BODY, hashlib.sha256
    ).digest()
    assert sent["webhook-signature"] == "v1," + base64.b64encode(digest).decode()


@pytest.mark.parametrize("tamper", ["body", "id", "timestamp", "secret"])
def test_the_reference_library_refuses_a_tampered_message(tamper: str) -> None:
    key = b"k" * 32
    sent = headers(key, "d1", BODY)
    body, secret = BODY, public_secret(key)
    if tamper == "body":
        body = BODY.replace(b"2.5", b"25")
    elif tamper == "id":
        sent["webhook-id"] = "d2"
    elif tamper == "timestamp":
        sent["webhook-timestamp"] = str(int(sent["webhook-timestamp"]) + 1)
    else:
        secret = public_secret(b"x" * 32)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body, sent)


def test_an_old_attempt_is_refused_as_a_replay() -> None:
    key = b"k" * 32
    old = headers(key, "d1", BODY, timestamp=int(time.time()) - 3600)
    with pytest.raises(WebhookVerificationError):
        Webhook(public_secret(key)).verify(BODY, old)
    assert not verify(key, BODY, old)
    assert verify(key, BODY, headers(key, "d1", BODY))


def test_secrets(tmp_path: Path) -> None:
    assert key_of("whsec_" + base64.b64encode(b"\x00\x01").decode()) == b"\x00\x01"
    assert key_of("a-raw-secret") == b"a-raw-secret"  # its whsec_ form is public_secret(b"a-raw-secret")
    with pytest.raises(ValueError, match="base64"):
        key_of("whsec_not base64!")
    # development: a whsec_ secret generated once per data dir, in the file a local receiver reads
    settings = Settings(RWA_DATA_DIR=str(tmp_path))  # type: ignore[call-arg]
    key = secret_for(settings)
    assert len(key) == 32 and secret_for(settings) == key
    assert (tmp_path / "webhook-dev.secret").read_text() == public_secret(key)
