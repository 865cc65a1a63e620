"""Per-user data keys in the database (core/data_keys.py for the cryptography).

`cipher_for(..., create=True)` gives the user's data-key cipher, creating and wrapping the key on first use (two
first uses at once agree on one key: INSERT ... ON CONFLICT DO NOTHING, then read). A destroyed key answers
`Erased`; `destroy` is the crypto-shredding step of an erasure.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from core.data_keys import new_data_key, unwrap, wrap, written_under
from core.encryption import FieldCipher
from core.errors import Conflict
from models.privacy import UserDataKey


class Erased(Conflict):
    """The user's personal data was erased: their data key is destroyed."""

    def __init__(self) -> None:
        super().__init__("this account's personal data was erased", reason="PERSONAL_DATA_ERASED")


async def cipher_for(
    session: AsyncSession, master: FieldCipher, user_id: uuid.UUID, *, create: bool = False
) -> FieldCipher | None:
    """The user's data-key cipher; None when they have none yet (and `create` is false). Raises Erased."""
    wrapped = await _wrapped(session, user_id)
    if wrapped is None and create:
        await session.execute(
            insert(UserDataKey)
            .values(user_id=user_id, wrapped_key=wrap(master, user_id, new_data_key()))
            .on_conflict_do_nothing(index_elements=[UserDataKey.user_id])
        )
        wrapped = await _wrapped(session, user_id)
    if wrapped is None:
        return None
    if wrapped is _DESTROYED:
        raise Erased()
    return unwrap(master, user_id, wrapped)


_DESTROYED = b""


async def _wrapped(session: AsyncSession, user_id: uuid.UUID) -> bytes | None:
    row = (
        await session.execute(
            select(UserDataKey.wrapped_key, UserDataKey.destroyed_at).where(UserDataKey.user_id == user_id)
        )
    ).first()
    if row is None:
        return None
    if row.wrapped_key is None or row.destroyed_at is not None:
        return _DESTROYED
    return bytes(row.wrapped_key)


async def ciphers_for(
    session: AsyncSession, master: FieldCipher, user_ids: list[uuid.UUID]
) -> dict[uuid.UUID, FieldCipher | None]:
    """Batch form for reports: user id -> cipher (None: no key, or erased)."""
    rows = (
        await session.execute(
            select(UserDataKey.user_id, UserDataKey.wrapped_key).where(UserDataKey.user_id.in_(user_ids))
        )
    ).all()
    return {
        r.user_id: (unwrap(master, r.user_id, bytes(r.wrapped_key)) if r.wrapped_key is not None else None)
        for r in rows
    }


def decrypt_blob(master: FieldCipher, user_cipher: FieldCipher | None, blob: bytes, aad: bytes) -> bytes:
    """A personal-data blob under the user's key; rows written under the master key before the per-user keys
    (migration 0019 re-encrypts them) still read."""
    if user_cipher is not None and written_under(user_cipher, blob):
        return user_cipher.decrypt(bytes(blob), aad)
    return master.decrypt(bytes(blob), aad)


async def destroy(session: AsyncSession, user_id: uuid.UUID, now: datetime) -> bool:
    """Crypto-shred: forget the wrapped key (a user who never had one gets a destroyed marker, so no key can be
    created for them later). True when a key existed."""
    existed = (
        await session.execute(
            update(UserDataKey)
            .where(UserDataKey.user_id == user_id, UserDataKey.wrapped_key.is_not(None))
            .values(wrapped_key=None, destroyed_at=now)
            .returning(UserDataKey.user_id)
        )
    ).first() is not None
    await session.execute(
        insert(UserDataKey)
        .values(user_id=user_id, wrapped_key=None, destroyed_at=now)
        .on_conflict_do_nothing(index_elements=[UserDataKey.user_id])
    )
    return existed
