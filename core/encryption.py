"""AES-256-GCM for personal data at rest, with key rotation.

Ciphertext layouts:
  v2: 0x02 | key id (8 bytes: sha256(key)[:8]) | 12-byte nonce | ciphertext+tag     (written)
  v1: 0x01 | 12-byte nonce | ciphertext+tag                                         (older rows: read only)

A `FieldCipher` encrypts under its current key and decrypts under the current key or any retired one
(KYC_RETIRED_ENCRYPTION_KEYS): during a rotation every process reads rows written under either key, and
`rwa kyc rekey` re-encrypts what is not yet under the current key (`needs_rekey`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from collections.abc import Iterable
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_V1 = b"\x01"
_V2 = b"\x02"
KEY_ID_BYTES = 8


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


def key_id(key: bytes) -> bytes:
    """A public fingerprint of a key (reveals nothing usable about it), stored in each v2 ciphertext."""
    return hashlib.sha256(b"rwa-kyc-key-id\x00" + key).digest()[:KEY_ID_BYTES]


class FieldCipher:
    def __init__(self, key: bytes, retired: Iterable[bytes] = ()) -> None:
        self._aead = AESGCM(key)
        self.key_id = key_id(key)
        # every key that decrypts, current first (v1 blobs carry no key id: tried in this order)
        self._by_id: dict[bytes, AESGCM] = {self.key_id: self._aead}
        for old in retired:
            self._by_id.setdefault(key_id(old), AESGCM(old))

    def __repr__(self) -> str:  # never show key material
        return f"FieldCipher(<redacted>, {len(self._by_id)} key(s))"

    def encrypt(self, plaintext: bytes, associated_data: bytes = b"") -> bytes:
        nonce = os.urandom(12)
        return _V2 + self.key_id + nonce + self._aead.encrypt(nonce, plaintext, associated_data)

    def decrypt(self, blob: bytes, associated_data: bytes = b"") -> bytes:
        version = blob[:1]
        if version == _V2:
            aead = self._by_id.get(blob[1 : 1 + KEY_ID_BYTES])
            if aead is None:
                raise ValueError(
                    "ciphertext was written under a KYC key this process does not have "
                    "(KYC_ENCRYPTION_KEY / KYC_RETIRED_ENCRYPTION_KEYS)"
                )
            body = blob[1 + KEY_ID_BYTES :]
            return aead.decrypt(body[:12], body[12:], associated_data)
        if version == _V1:
            for aead in self._by_id.values():
                try:
                    return aead.decrypt(blob[1:13], blob[13:], associated_data)
                except InvalidTag:
                    continue
            raise InvalidTag()
        raise ValueError("unknown ciphertext version")

    def needs_rekey(self, blob: bytes) -> bool:
        """True when the blob is not under the current key (an older layout or a retired key)."""
        return not (blob[:1] == _V2 and blob[1 : 1 + KEY_ID_BYTES] == self.key_id)

    def rekey(self, blob: bytes, associated_data: bytes = b"") -> bytes:
        return self.encrypt(self.decrypt(blob, associated_data), associated_data)

    def encrypt_json(self, value: dict[str, Any], associated_data: bytes = b"") -> bytes:
        return self.encrypt(json.dumps(value, sort_keys=True).encode(), associated_data)

    def decrypt_json(self, blob: bytes, associated_data: bytes = b"") -> dict[str, Any]:
        return json.loads(self.decrypt(blob, associated_data))
