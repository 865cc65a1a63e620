"""Random (version 4) UUIDs for the rows a placement writes: orders, trades, transfer instructions, operations,
ledger transactions; several per order on the hot path.

`uuid.uuid4()` asks the kernel for 16 bytes each time (a getrandom system call: ~2-5 us here with the UUID's
construction); `new_id()` takes them from a 4 KiB block read with one `os.urandom` call (256 ids, their version and
variant bits set in one big-integer operation) and wraps them in asyncpg's UUID (~0.5 us), which asyncpg then
encodes by copying its bytes (a uuid.UUID costs it a `.bytes` call per array element) and which hashes and prints
in C. The bytes are the same kind (the kernel's CSPRNG), the version and variant bits the same as uuid4's. A forked
child drops the block it inherited (os.register_at_fork), so two processes never share ids.
"""

from __future__ import annotations

import os
import threading
from uuid import UUID

from asyncpg.pgproto.pgproto import UUID as _PgUUID

_IDS = 256  # ids per block read from the kernel
# uuid4's bits (RFC 4122 / 9562) in each 16 bytes: version 4 in bits 76..79, variant 10 in bits 62..63
_KEEP_ONE = ((1 << 128) - 1) & ~(0xF000 << 64) & ~(0xC000 << 48)
_SET_ONE = (0x4000 << 64) | (0x8000 << 48)
_KEEP = sum(_KEEP_ONE << (128 * i) for i in range(_IDS))
_SET = sum(_SET_ONE << (128 * i) for i in range(_IDS))

_block = b""
_at = 0
_lock = threading.Lock()


def _drop_block() -> None:
    global _block, _at, _lock
    _block, _at, _lock = b"", 0, threading.Lock()  # and a lock another thread of the parent may have held


os.register_at_fork(after_in_child=_drop_block)


def _read_block() -> bytes:
    """_IDS ids' bytes: random, with every id's version and variant bits set (one big-integer operation)."""
    raw = int.from_bytes(os.urandom(16 * _IDS), "big")
    return ((raw & _KEEP) | _SET).to_bytes(16 * _IDS, "big")


def new_id() -> UUID:
    """A random UUID, as `uuid.uuid4()` makes it; an instance of asyncpg's UUID, the uuid.UUID subclass it returns
    for uuid columns (equal to and hashing like the uuid.UUID of the same value; encoded without a `.bytes` call,
    hashed and printed in C)."""
    global _block, _at
    with _lock:  # one block, any thread: no two callers take the same bytes
        at = _at
        if at >= len(_block):
            _block, at = _read_block(), 0
        _at = at + 16
        raw = _block[at : at + 16]
    return _PgUUID(raw)
