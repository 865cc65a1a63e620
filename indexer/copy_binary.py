"""Binary COPY payloads of the decode stage's ``chain_events`` and ``token_transfers`` rows, built here.

asyncpg's codecs encode a row field by field through generic paths: the topics array alone checks each element
against three collection ABCs (Python-level ``__instancecheck__`` calls), and every hash, address and number is
encoded again although a batch repeats them thousands of times (a block hash per log, a holder per transfer).
Here each distinct value is encoded once per payload (dicts whose ``__missing__`` encodes), and a row is a run of
dict lookups joined into one buffer. On the Ponder comparison's 200,000 Transfers (in-process, same rows, same
tables): asyncpg 1.19-1.24 s for chain_events + 0.93-0.98 s for token_transfers of the writer's CPU; see
``encode_events`` for this module's.

The format is Postgres' binary COPY (signature, then per row a field count and length-prefixed fields, -1 for
NULL; the trailer -1) with each type's binary wire format (``*_send``): int4/int8 big-endian, text/varchar their
UTF-8 bytes, jsonb a version byte 1 and the JSON text, numeric base-10000 digits, timestamptz microseconds since
2000-01-01, a one-dimensional varchar array its header and elements. tests/indexer/test_copy_binary.py copies the
same rows through asyncpg and through these payloads and compares what Postgres stored.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from struct import Struct
from typing import Any

from indexer import pgtime

SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # flags 0, no header extension
TRAILER = b"\xff\xff"
NULL = b"\xff\xff\xff\xff"
VARCHAR_OID = 1043  # the element type of chain_events.topics (varchar(66)[])
_I4 = Struct(">ii")  # field length 4, value
_I8 = Struct(">iq")
_ARRAY_HEADER = Struct(">iiiiii")  # field length, ndim 1, no nulls, element type, length, lower bound 1
_EMPTY_ARRAY = Struct(">iiii").pack(12, 0, 0, VARCHAR_OID)
_NUMERIC_HEAD = Struct(">ihhhh")  # field length, ndigits, weight, sign, dscale
_EVENT_FIELDS = (12).to_bytes(2, "big")
_TRANSFER_FIELDS = (10).to_bytes(2, "big")
CHUNK_ROWS = 2_000  # rows per piece handed to the connection: Postgres works on one while the next is encoded


class _Text(dict[Any, bytes]):
    """str -> its length-prefixed UTF-8 field (None -> NULL)."""

    def __init__(self) -> None:
        super().__init__({None: NULL})

    def __missing__(self, value: str) -> bytes:
        raw = value.encode()
        out = self[value] = len(raw).to_bytes(4, "big") + raw
        return out


class _Int4(dict[int, bytes]):
    def __missing__(self, value: int) -> bytes:
        out = self[value] = _I4.pack(4, value)
        return out


class _Int8(dict[int, bytes]):
    def __missing__(self, value: int) -> bytes:
        out = self[value] = _I8.pack(8, value)
        return out


class _Time(dict[Any, bytes]):
    """A block time as the decode stage gives it ((microseconds since 2000-01-01,), or a datetime) -> its field."""

    def __init__(self) -> None:
        super().__init__({None: NULL})

    def __missing__(self, value: Any) -> bytes:
        out = self[value] = _I8.pack(8, pgtime.encode(value)[0])
        return out


def numeric(value: int) -> bytes:
    """An integer as a numeric field: base-10000 digits, most significant first, trailing zero digits dropped
    (``weight`` keeps the magnitude), scale 0."""
    if not isinstance(value, int):
        raise TypeError(f"expected an int token amount, got {type(value).__name__}")
    if value == 0:
        return _NUMERIC_HEAD.pack(8, 0, 0, 0, 0)
    sign = 0x4000 if value < 0 else 0
    text = str(abs(value))
    text = "0" * (-len(text) % 4) + text
    digits = [int(text[i : i + 4]) for i in range(0, len(text), 4)]
    weight = len(digits) - 1
    while digits[-1] == 0:
        digits.pop()
    n = len(digits)
    return _NUMERIC_HEAD.pack(8 + 2 * n, n, weight, sign, 0) + Struct(f">{n}h").pack(*digits)


class _Numeric(dict[int, bytes]):
    def __missing__(self, value: int) -> bytes:
        out = self[value] = numeric(value)
        return out


class _ArrayHead(dict[int, bytes]):
    """Total size of the elements -> the field length and header of a one-dimensional varchar array of ``n``."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n

    def __missing__(self, size: int) -> bytes:
        out = self[size] = _ARRAY_HEADER.pack(20 + size, 1, 0, VARCHAR_OID, self.n, 1)
        return out


class _JsonbHead(dict[int, bytes]):
    """Length of the JSON text -> the field length and jsonb's version byte."""

    def __missing__(self, size: int) -> bytes:
        out = self[size] = (size + 1).to_bytes(4, "big") + b"\x01"
        return out


def _array(topic: _Text, topics: list[str]) -> bytes:
    if not topics:
        return _EMPTY_ARRAY
    parts = [topic[t] for t in topics]
    body = b"".join(parts)
    return _ARRAY_HEADER.pack(20 + len(body), 1, 0, VARCHAR_OID, len(parts), 1) + body


def encode_events(rows: Sequence[tuple[Any, ...]], chunk: int = CHUNK_ROWS) -> Iterator[bytes]:
    """``chain_events`` rows (indexer/decode.py's EVENT_COLUMNS order) as binary COPY data, ``chunk`` rows a
    piece, without the signature and trailer (``copy_source`` adds them)."""
    text, int4, int8, topic = _Text(), _Int4(), _Int8(), _Text()
    head3, jsonb = _ArrayHead(3), _JsonbHead()
    out: list[bytes] = []
    ext = out.extend
    fields = _EVENT_FIELDS
    for k, r in enumerate(rows, 1):
        topics = r[8]
        args = r[10].encode()
        if len(topics) == 3:  # Transfer and most events: the array's pieces go in the row as they are
            a, b, c = topic[topics[0]], topic[topics[1]], topic[topics[2]]
            ext(
                (
                    fields,
                    int4[r[0]],
                    text[r[1]],
                    int4[r[2]],
                    int8[r[3]],
                    text[r[4]],
                    int4[r[5]],
                    text[r[6]],
                    text[r[7]],
                    head3[len(a) + len(b) + len(c)],
                    a,
                    b,
                    c,
                    text[r[9]],
                    jsonb[len(args)],
                    args,
                    text[r[11]],
                )
            )
        else:
            ext(
                (
                    fields,
                    int4[r[0]],
                    text[r[1]],
                    int4[r[2]],
                    int8[r[3]],
                    text[r[4]],
                    int4[r[5]],
                    text[r[6]],
                    text[r[7]],
                    _array(topic, topics),
                    text[r[9]],
                    jsonb[len(args)],
                    args,
                    text[r[11]],
                )
            )
        if k % chunk == 0:
            yield b"".join(out)
            out.clear()
    if out:
        yield b"".join(out)


def encode_transfers(rows: Sequence[tuple[Any, ...]], chunk: int = CHUNK_ROWS) -> Iterator[bytes]:
    """``token_transfers`` rows (TRANSFER_COLUMNS order) as binary COPY data, ``chunk`` rows a piece."""
    text, int4, int8, times, amounts = _Text(), _Int4(), _Int8(), _Time(), _Numeric()
    out: list[bytes] = []
    ext = out.extend
    fields = _TRANSFER_FIELDS
    for k, r in enumerate(rows, 1):
        ext(
            (
                fields,
                int4[r[0]],
                text[r[1]],
                int4[r[2]],
                int8[r[3]],
                times[r[4]],
                text[r[5]],
                text[r[6]],
                text[r[7]],
                text[r[8]],
                amounts[r[9]],
            )
        )
        if k % chunk == 0:
            yield b"".join(out)
            out.clear()
    if out:
        yield b"".join(out)


async def copy_source(
    rows: Sequence[tuple[Any, ...]],
    encode: Callable[[Sequence[tuple[Any, ...]]], Iterator[bytes]],
    encoded: Sequence[bytes] = (),
) -> AsyncIterator[bytes]:
    """The COPY stream of ``encoded`` (rows encoded already, e.g. by indexer/decode.py) and ``rows`` (for
    Connection.copy_to_table's ``source``, with ``format="binary"``)."""
    yield SIGNATURE
    for piece in encoded:
        yield piece
    for piece in encode(rows):
        yield piece
    yield TRAILER
