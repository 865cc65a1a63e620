"""Per-user data keys (envelope encryption) for personal data that must be erasable by crypto-shredding.

Each user's personal fields are AES-256-GCM encrypted under a data key of their own (DEK, 32 random bytes); the DEK
is stored only wrapped (encrypted) by the master key (`KYC_ENCRYPTION_KEY`, core.encryption.FieldCipher, retired
keys included), with the user id as associated data so a wrapped key cannot be moved to another user. Destroying the
wrapped DEK makes every ciphertext under it unreadable, wherever copies of the ciphertext went. Rotating the master
key re-wraps the DEKs (`rwa kyc rekey`), it does not re-encrypt the data.
"""

from __future__ import annotations

import os
import uuid

from core.encryption import FieldCipher

DEK_BYTES = 32


def _aad(user_id: uuid.UUID) -> bytes:
    return b"user-data-key:" + user_id.bytes


def wrap_aad(user_id: uuid.UUID) -> bytes:
    return _aad(user_id)


def new_data_key() -> bytes:
    return os.urandom(DEK_BYTES)


def wrap(master: FieldCipher, user_id: uuid.UUID, dek: bytes) -> bytes:
    return master.encrypt(dek, _aad(user_id))


def unwrap(master: FieldCipher, user_id: uuid.UUID, wrapped: bytes) -> FieldCipher:
    dek = master.decrypt(bytes(wrapped), _aad(user_id))
    if len(dek) != DEK_BYTES:
        raise ValueError("a wrapped data key of the wrong length")
    return FieldCipher(dek)


def written_under(cipher: FieldCipher, blob: bytes) -> bool:
    """True when the blob was encrypted under `cipher`'s current key (the key id in its header)."""
    return not cipher.needs_rekey(bytes(blob))
