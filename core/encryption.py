"""AES-256-GCM for personal data at rest. Ciphertext layout: version byte | 12-byte nonce | ciphertext+tag."""

from __future__ import annotations

import base64
import binascii
import json
import os
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_VERSION = b"\x01"


def parse_key(raw: str) -> bytes:
    """Accept 32 bytes as hex (64 chars) or base64."""
    raw = raw.strip()
    try:
        key = bytes.fromhex(raw) if len(raw) == 64 else base64.b64decode(raw, validate=True)
    except (ValueError, binascii.Error) as exc:
        raise ValueError("KYC_ENCRYPTION_KEY must be 32 bytes, hex or base64") from exc
    if len(key) != 32:
        raise ValueError("KYC_ENCRYPTION_KEY must be 32 bytes, hex or base64")
    return key


class FieldCipher:
    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def __repr__(self) -> str:  # never show key material
        return "FieldCipher(<redacted>)"

    def encrypt(self, plaintext: bytes, associated_data: bytes = b"") -> bytes:
        nonce = os.urandom(12)
        return _VERSION + nonce + self._aead.encrypt(nonce, plaintext, associated_data)

    def decrypt(self, blob: bytes, associated_data: bytes = b"") -> bytes:
        if blob[:1] != _VERSION:
            raise ValueError("unknown ciphertext version")
        return self._aead.decrypt(blob[1:13], blob[13:], associated_data)

    def encrypt_json(self, value: dict[str, Any], associated_data: bytes = b"") -> bytes:
        return self.encrypt(json.dumps(value, sort_keys=True).encode(), associated_data)

    def decrypt_json(self, blob: bytes, associated_data: bytes = b"") -> dict[str, Any]:
        return json.loads(self.decrypt(blob, associated_data))
