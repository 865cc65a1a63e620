"""Re-encrypt personal data under the current KYC key (`rwa kyc rekey`), online.

Every process that reads personal data holds the current key and the retired ones (core/encryption.py), so rows
under either key stay readable while this runs. Rows are re-encrypted in batches, each in its own transaction
with `FOR UPDATE SKIP LOCKED`: a row a request is changing right now is left for the next pass, and a row the API
rewrites meanwhile is already under the current key. What is left is found in SQL from the ciphertext header
(version byte and key id), without decrypting anything.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.data_keys import wrap_aad
from core.encryption import KEY_ID_BYTES, FieldCipher
from resolvers.audit import record


@dataclass(frozen=True)
class Column:
    """One encrypted column: its table, key column, blob column, and the associated data of a row."""

    name: str
    table: str
    key: str
    blob: str
    aad: Callable[[uuid.UUID], bytes]


COLUMNS = (
    # personal data is under per-user data keys (core/data_keys.py): rotating the master key re-wraps those keys
    Column("user_data_keys.wrapped_key", "user_data_keys", "user_id", "wrapped_key", wrap_aad),
    Column("user_mfa.secret_enc", "user_mfa", "user_id", "secret_enc", lambda user_id: b"mfa-totp:" + user_id.bytes),
)


def _stale(col: Column) -> str:
    # not (v2 and this key id): v1 blobs and blobs under a retired key
    return (
        f"{col.blob} IS NOT NULL AND (get_byte({col.blob}, 0) <> 2 "
        f"OR substring({col.blob} FROM 2 FOR {KEY_ID_BYTES}) <> :kid)"
    )


async def remaining(session: AsyncSession, cipher: FieldCipher) -> dict[str, int]:
    """Rows per column not yet under the current key."""
    out = {}
    for col in COLUMNS:
        count = await session.scalar(
            text(f"SELECT count(*) FROM {col.table} WHERE {_stale(col)}"), {"kid": cipher.key_id}
        )
        out[col.name] = int(count or 0)
    return out


async def rekey_batch(session: AsyncSession, cipher: FieldCipher, col: Column, batch: int) -> int:
    """Re-encrypt up to `batch` rows of one column in one transaction; the number re-encrypted."""
    rows = (
        await session.execute(
            text(
                f"SELECT {col.key}, {col.blob} FROM {col.table} WHERE {_stale(col)} ORDER BY {col.key} "
                f"LIMIT :batch FOR UPDATE SKIP LOCKED"
            ),
            {"kid": cipher.key_id, "batch": batch},
        )
    ).all()
    for key, blob in rows:
        new = cipher.rekey(bytes(blob), col.aad(key))
        await session.execute(
            text(f"UPDATE {col.table} SET {col.blob} = :blob WHERE {col.key} = :key"), {"blob": new, "key": key}
        )
    if rows:
        record(
            session,
            actor_id=None,
            action="kyc.rekey",
            target_type=col.table,
            details={"column": col.name, "rows": len(rows), "key_id": cipher.key_id.hex()},
        )
    # a batch job: each batch is its own transaction (rekey_all loops over them)
    await session.commit()
    return len(rows)


async def rekey_all(
    factory: async_sessionmaker[AsyncSession],
    cipher: FieldCipher,
    batch: int = 500,
    progress: Callable[[str, int], None] | None = None,
) -> dict[str, int]:
    """Re-encrypt every column until nothing is left (rows locked by requests are retried); rows per column."""
    done = {col.name: 0 for col in COLUMNS}
    for col in COLUMNS:
        idle = 0
        while True:
            async with factory() as session:
                n = await rekey_batch(session, cipher, col, batch)
            done[col.name] += n
            if n and progress:
                progress(col.name, done[col.name])
            if n:
                idle = 0
                continue
            async with factory() as session:
                left = (await remaining(session, cipher))[col.name]
            idle += 1
            if not left or idle > 50:  # locked rows: retried, then reported by --status
                break
            import asyncio

            await asyncio.sleep(0.1)
    return done
