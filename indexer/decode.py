"""Decode stage: a FetchedRange becomes the rows the writer copies into Postgres.

Pure and synchronous (testable without a node or a database). Column orders are the ``*_COLUMNS`` tuples below.
A standard ERC-20 Transfer (the bulk of any history) goes straight from the log's hex strings to its binary COPY
rows (``DecodedBatch.event_copy`` / ``transfer_copy``, indexer/copy_binary.py's format) and its balance deltas
(summed per batch): no row tuple, no second pass to encode it. Every other event stays a row tuple (``events``,
``transfers``), encoded by the writer. ``decode_range(batch, fast=False)`` gives tuples for everything (tests, the
COPY ceiling of bench/indexer_backfill.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from struct import Struct
from typing import Any

from indexer.copy_binary import CHUNK_ROWS, NULL
from indexer.countries import CountryReading
from indexer.events import (
    BY_NAME,
    TRANSFER_TOPIC0,
    ZERO_ADDRESS,
    Args,
    UndecodableLog,
    checksum,
    decode_log,
    subject_of,
)
from indexer.fetch import FetchedRange
from indexer.pgtime import PG_EPOCH_S

BLOCK_COLUMNS = ("chain_id", "number", "hash", "parent_hash", "timestamp")
EVENT_COLUMNS = (
    "chain_id",
    "block_hash",
    "log_index",
    "block_number",
    "tx_hash",
    "tx_index",
    "address",
    "event",
    "topics",
    "data",
    "args",
    "subject",
)
TRANSFER_COLUMNS = (
    "chain_id",
    "block_hash",
    "log_index",
    "block_number",
    "block_time",
    "tx_hash",
    "token_address",
    "from_address",
    "to_address",
    "value",
)


@dataclass(slots=True)
class DecodedBatch:
    chain_id: int
    from_block: int
    to_block: int
    end_hash: str
    blocks: list[tuple[Any, ...]] = field(default_factory=list)
    events: list[tuple[Any, ...]] = field(default_factory=list)
    transfers: list[tuple[Any, ...]] = field(default_factory=list)
    first_hash: str | None = None  # block from_block's hash, if fetched (parent check against the cursor)
    first_parent: str | None = None
    # Transfers decoded straight to binary COPY data (pieces of at most CHUNK_ROWS rows, without signature and
    # trailer): ``fast`` rows of chain_events in event_copy and as many of token_transfers in transfer_copy; the
    # identity and freeze events decoded the same way: ``fast_other`` more rows of chain_events in event_copy
    event_copy: list[bytes] = field(default_factory=list)
    transfer_copy: list[bytes] = field(default_factory=list)
    fast: int = 0
    fast_other: int = 0
    fast_by_event: dict[str, int] = field(default_factory=dict)  # event name -> rows in event_copy
    fast_touched: dict[tuple[str, str, str], None] = field(default_factory=dict)  # (event, emitter, subject) of them
    # their balance deltas: (token, holder) -> [sum of deltas, last block], and token -> minted minus burned
    deltas: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    minted: dict[str, int] = field(default_factory=dict)

    @property
    def n_events(self) -> int:
        return len(self.events) + self.fast + self.fast_other

    @property
    def n_transfers(self) -> int:
        return len(self.transfers) + self.fast


def _ts(hex_ts: str) -> tuple[int]:
    """A block time as the writer connection's timestamptz value: (microseconds since 2000-01-01 UTC,), which
    asyncpg writes as is (indexer/write.py's codec; a datetime went through astimezone and two infinity
    comparisons: ~1 us per transfer row of a 200,000-row COPY)."""
    return ((int(hex_ts, 16) - PG_EPOCH_S) * 1_000_000,)


# The fast path's binary COPY pieces (indexer/copy_binary.py documents the format).
_I4 = Struct(">ii")
_I8 = Struct(">iq")
_FIELDS12 = (12).to_bytes(2, "big")
_FIELDS10 = (10).to_bytes(2, "big")
_NUMERIC_HEAD = Struct(">ihhhh")
_DIGITS = [Struct(f">{n}h") for n in range(21)]  # a uint256 has at most 20 base-10000 digits
_VARCHAR_OID = 1043


def _text(value: str) -> bytes:
    raw = value.encode()
    return len(raw).to_bytes(4, "big") + raw


@lru_cache(maxsize=1 << 15)
def _holder_fields(topic: str) -> tuple[str, bytes, bytes]:
    """An indexed address topic -> (checksummed address, its text field, the topic's array element field), cached
    by the topic itself: a hit skips the slice and the concatenation in front of checksum's own cache, and the
    encoding. 32,768 entries (~12 MB at most): a history with more holders falls through to checksum's."""
    address = checksum("0x" + topic[26:])
    return address, _text(address), _text(topic)


def _numeric(value: int) -> bytes:
    """A non-negative integer as a numeric field (copy_binary.numeric): its base-10000 digits by divmod, half the CPU
    of slicing its decimal text (a realistic history's amounts are nearly all distinct)."""
    if not value:
        return _NUMERIC_HEAD.pack(8, 0, 0, 0, 0)
    digits = []  # least significant first
    while value:
        value, digit = divmod(value, 10000)
        digits.append(digit)
    weight = len(digits) - 1
    low = 0  # trailing zero digits are dropped (weight keeps the magnitude)
    while not digits[low]:
        low += 1
    digits = digits[: low - 1 : -1] if low else digits[::-1]
    n = len(digits)
    return _NUMERIC_HEAD.pack(8 + 2 * n, n, weight, 0, 0) + _DIGITS[n].pack(*digits)


class _Int4(dict[str, bytes]):
    """0x-hex -> its int4 field."""

    def __missing__(self, hex_value: str) -> bytes:
        out = self[hex_value] = _I4.pack(4, int(hex_value, 16))
        return out


class _Texts(dict[str, bytes]):
    def __missing__(self, value: str) -> bytes:
        out = self[value] = _text(value)
        return out


class _Emitters(dict[str, tuple[str, bytes]]):
    """A log's address -> (checksummed, its text field)."""

    def __missing__(self, address: str) -> tuple[str, bytes]:
        checked = checksum(address)
        out = self[address] = (checked, _text(checked))
        return out


class _Amounts(dict[str, tuple[int, str, bytes]]):
    """A Transfer's data word -> (value, its decimal text, its numeric field)."""

    def __missing__(self, data: str) -> tuple[int, str, bytes]:
        value = int(data[2:66], 16)
        out = self[data] = (value, str(value), _numeric(value))
        return out


class _JsonbHeads(dict[int, bytes]):
    def __missing__(self, size: int) -> bytes:
        out = self[size] = (size + 1).to_bytes(4, "big") + b"\x01"
        return out


class _ArrayHeads(dict[int, bytes]):
    """Size of a Transfer's topics 1 and 2 as fields -> the topics array's field length, header and topic 0."""

    def __missing__(self, size: int) -> bytes:
        topic0 = _text(TRANSFER_TOPIC0)
        head = Struct(">iiiiii").pack(20 + len(topic0) + size, 1, 0, _VARCHAR_OID, 3, 1)
        out = self[size] = head + topic0
        return out


_ARRAY_HEADS = _ArrayHeads()
_JSONB_HEADS = _JsonbHeads()


def decode_range(batch: FetchedRange, fast: bool = True) -> DecodedBatch:
    """``batch``'s rows; with ``fast``, its standard Transfers as COPY data and summed deltas (see the module)."""
    chain_id = batch.chain_id
    out = DecodedBatch(chain_id, batch.from_block, batch.to_block, batch.end_hash)
    times: dict[int, tuple[int]] = {}
    for number, blk in batch.blocks.items():
        t = _ts(blk["timestamp"])
        times[number] = t
        out.blocks.append((chain_id, number, blk["hash"], blk["parentHash"], t))
    first = batch.blocks.get(batch.from_block)
    if first is not None:
        out.first_hash, out.first_parent = first["hash"], first["parentHash"]
    logs = batch.logs
    if fast:
        logs = _decode_transfers(batch, out, times)
    events, transfers = out.events, out.transfers
    ev_append, tt_append = events.append, transfers.append
    numbers: dict[str, int] = {}  # "0x..." -> int: a busy block repeats its number thousands of times
    tx_indexes: dict[str, int] = {}  # the same for transaction indexes (a batchTransfer emits hundreds of logs)
    holder = _holder_fields
    for lg in logs:
        topics: list[str] = lg["topics"]
        data: str = lg["data"]
        block_hash: str = lg["blockHash"]
        hex_n = lg["blockNumber"]
        n = numbers.get(hex_n)
        if n is None:
            n = numbers[hex_n] = int(hex_n, 16)
        log_index = int(lg["logIndex"], 16)
        tx_hash = lg["transactionHash"]
        emitter = checksum(lg["address"])
        if len(topics) == 3 and topics[0] == TRANSFER_TOPIC0:
            # The hot path: slice the words directly.
            frm = holder(topics[1])[0]
            to = holder(topics[2])[0]
            value = int(data[2:66], 16)
            hex_i = lg["transactionIndex"]
            tx_index = tx_indexes.get(hex_i)
            if tx_index is None:
                tx_index = tx_indexes[hex_i] = int(hex_i, 16)
            ev_append(
                (
                    chain_id,
                    block_hash,
                    log_index,
                    n,
                    tx_hash,
                    tx_index,
                    emitter,
                    "Transfer",
                    topics,
                    data,
                    f'{{"from": "{frm}", "to": "{to}", "value": "{value}"}}',
                    None,
                )
            )
            tt_append((chain_id, block_hash, log_index, n, times[n], tx_hash, emitter, frm, to, value))
            continue
        try:
            decoded = decode_log(topics, data)
        except UndecodableLog:
            decoded = None
        arg_map: Args
        if decoded is None:
            name, arg_map, subject = "Unknown", {}, None
        else:
            name, arg_map = decoded
            if name == "IdentityRegistered":
                reading = batch.countries.get((block_hash, log_index))
                arg_map.update(reading.args() if reading is not None else {"country": None})
            subject = subject_of(name, arg_map, emitter)
        events.append(
            (
                chain_id,
                block_hash,
                log_index,
                n,
                tx_hash,
                int(lg["transactionIndex"], 16),
                emitter,
                name,
                topics,
                data,
                json.dumps(arg_map),
                subject,
            )
        )
    return out


# The other events the fast path encodes, by topic 0: (name, kind). Kinds: 0 IdentityRegistered (investor, identity;
# the country reading joins the args), 1 IdentityRemoved, 2 CountryUpdated (investor, country as a topic),
# 3 AddressFrozen (user, frozen flag as a topic, owner), 4 TokensFrozen / TokensUnfrozen (user; amount in data).
_OTHER_KINDS = {
    BY_NAME[name].topic0: (name, kind)
    for name, kind in (
        ("IdentityRegistered", 0),
        ("IdentityRemoved", 1),
        ("CountryUpdated", 2),
        ("AddressFrozen", 3),
        ("TokensFrozen", 4),
        ("TokensUnfrozen", 4),
    )
}
_TOPIC_COUNT = (3, 3, 3, 4, 2)  # each kind's standard shape; any other goes the generic way (same rows)
_ARRAY_HEADER = Struct(">iiiiii")


class _CountryArgs(dict[CountryReading | None, str]):
    """A country reading -> the text its args add to an IdentityRegistered's (as json.dumps writes the merged dict)."""

    def __missing__(self, reading: CountryReading | None) -> str:
        args = reading.args() if reading is not None else {"country": None}
        out = self[reading] = ", " + json.dumps(args)[1:-1]
        return out


def _other_args(kind: int, topics: list[str], data: str, country: str) -> tuple[str, tuple[str, bytes, bytes]]:
    """(args JSON exactly as the generic path's json.dumps writes it, the subject's _holder_fields) of a standard
    identity or freeze event. Raises ValueError where the generic decoder fails (the log then goes that way)."""
    subject = _holder_fields(topics[1])
    if kind <= 1:
        args = f'{{"investor": "{subject[0]}", "identity": "{_holder_fields(topics[2])[0]}"'
        return args + (country if kind == 0 else "") + "}", subject
    if kind == 2:
        return f'{{"investor": "{subject[0]}", "country": {int(topics[2], 16)}}}', subject
    if kind == 3:
        frozen = "true" if int(topics[2], 16) != 0 else "false"
        return f'{{"user": "{subject[0]}", "frozen": {frozen}, "owner": "{_holder_fields(topics[3])[0]}"}}', subject
    return f'{{"user": "{subject[0]}", "amount": "{int(data[2:66], 16)}"}}', subject


def _decode_transfers(batch: FetchedRange, out: DecodedBatch, times: dict[int, tuple[int]]) -> list[dict[str, Any]]:
    """Standard ERC-20 Transfers of ``batch`` (three topics, one data word) -> ``out``'s COPY pieces and deltas,
    and the identity and freeze events in their standard shapes (``_OTHER_KINDS``) -> more chain_events pieces,
    their counts and touched keys; returns the other logs, in order. A chain_events row is its 12 fields' pieces
    (constant ones shared), a token_transfers row its 10; each distinct block, transaction, log index, address and
    amount is encoded once per batch (holders once per process: ``_holder_fields``)."""
    rest: list[dict[str, Any]] = []
    chain = _I4.pack(4, batch.chain_id)
    ev_prefix, tt_prefix = _FIELDS12 + chain, _FIELDS10 + chain
    transfer_name = _text("Transfer")
    data_len = (66).to_bytes(4, "big")
    per_block: dict[str, tuple[int, bytes, bytes, bytes]] = {}  # hash -> (number, hash field, number, +time)
    int4s, texts, emitters, amounts = _Int4(), _Texts(), _Emitters(), _Amounts()
    array_heads, jsonb_heads, holder = _ARRAY_HEADS, _JSONB_HEADS, _holder_fields
    deltas, minted = out.deltas, out.minted
    other_kinds, topic_count, countries = _OTHER_KINDS, _TOPIC_COUNT, batch.countries
    country_args = _CountryArgs()
    by_event, touched = out.fast_by_event, out.fast_touched
    ev: list[bytes] = []
    tt: list[bytes] = []
    ev_ext, tt_ext = ev.extend, tt.extend
    t0, zero, null = TRANSFER_TOPIC0, ZERO_ADDRESS, NULL
    k = total = k_ev = others = 0
    for lg in batch.logs:
        topics: list[str] = lg["topics"]
        data: str = lg["data"]
        if len(topics) != 3 or topics[0] != t0 or len(data) != 66 or not data.isascii():
            other = other_kinds.get(topics[0]) if topics else None
            if other is None or len(topics) != topic_count[other[1]]:
                rest.append(lg)
                continue
            name, kind = other
            bh = lg["blockHash"]
            country = ""
            if kind == 0:
                country = country_args[countries.get((bh, int(lg["logIndex"], 16)))]
            try:
                args_text, (subject, subject_f, _) = _other_args(kind, topics, data, country)
            except ValueError:
                rest.append(lg)
                continue
            blk = per_block.get(bh)
            if blk is None:
                n = int(lg["blockNumber"], 16)
                bn_f = _I8.pack(8, n)
                blk = per_block[bh] = (n, _text(bh), bn_f, bn_f + _I8.pack(8, times[n][0]))
            token, token_f = emitters[lg["address"]]
            elements = b"".join([texts[t] for t in topics])
            args = args_text.encode()
            ev_ext(
                (
                    ev_prefix,
                    blk[1],
                    int4s[lg["logIndex"]],
                    blk[2],
                    texts[lg["transactionHash"]],
                    int4s[lg["transactionIndex"]],
                    token_f,
                    texts[name],
                    _ARRAY_HEADER.pack(20 + len(elements), 1, 0, _VARCHAR_OID, len(topics), 1),
                    elements,
                    texts[data],
                    jsonb_heads[len(args)],
                    args,
                    subject_f,
                )
            )
            by_event[name] = by_event.get(name, 0) + 1
            touched[(name, token, subject)] = None
            others += 1
            k_ev += 1
            if k_ev == CHUNK_ROWS:
                out.event_copy.append(b"".join(ev))
                ev.clear()
                k_ev = 0
            continue
        bh = lg["blockHash"]
        blk = per_block.get(bh)
        if blk is None:
            n = int(lg["blockNumber"], 16)
            bn_f = _I8.pack(8, n)
            blk = per_block[bh] = (n, _text(bh), bn_f, bn_f + _I8.pack(8, times[n][0]))
        n, bh_f, bn_f, bnt_f = blk
        li_f = int4s[lg["logIndex"]]
        tx_f = texts[lg["transactionHash"]]
        token, token_f = emitters[lg["address"]]
        frm, frm_f, t1_f = holder(topics[1])
        to, to_f, t2_f = holder(topics[2])
        value, value_text, value_f = amounts[data]
        args = f'{{"from": "{frm}", "to": "{to}", "value": "{value_text}"}}'.encode()
        ev_ext(
            (
                ev_prefix,
                bh_f,
                li_f,
                bn_f,
                tx_f,
                int4s[lg["transactionIndex"]],
                token_f,
                transfer_name,
                array_heads[len(t1_f) + len(t2_f)],
                t1_f,
                t2_f,
                data_len,
                data.encode(),
                jsonb_heads[len(args)],
                args,
                null,
            )
        )
        tt_ext((tt_prefix, bh_f, li_f, bnt_f, tx_f, token_f, frm_f, to_f, value_f))
        if frm == zero:
            minted[token] = minted.get(token, 0) + value
        else:
            d = deltas.get((token, frm))
            if d is None:
                deltas[(token, frm)] = [-value, n]
            else:
                d[0] -= value
                d[1] = n
        if to == zero:
            minted[token] = minted.get(token, 0) - value
        else:
            d = deltas.get((token, to))
            if d is None:
                deltas[(token, to)] = [value, n]
            else:
                d[0] += value
                d[1] = n
        k += 1
        k_ev += 1
        if k_ev == CHUNK_ROWS:
            out.event_copy.append(b"".join(ev))
            ev.clear()
            k_ev = 0
        if k == CHUNK_ROWS:
            out.transfer_copy.append(b"".join(tt))
            tt.clear()
            total += k
            k = 0
    if ev:
        out.event_copy.append(b"".join(ev))
    if k:
        out.transfer_copy.append(b"".join(tt))
        total += k
    out.fast = total
    out.fast_other = others
    if total:
        by_event["Transfer"] = total
    return rest
