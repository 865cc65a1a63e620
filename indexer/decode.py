"""Decode stage: a FetchedRange becomes the row tuples the writer copies into Postgres.

Pure and synchronous (testable without a node or a database). Column orders are the
``*_COLUMNS`` tuples below; the writer copies them as they are.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from indexer.events import TRANSFER_TOPIC0, Args, UndecodableLog, checksum, decode_log, subject_of
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


def _ts(hex_ts: str) -> tuple[int]:
    """A block time as the writer connection's timestamptz value: (microseconds since 2000-01-01 UTC,), which
    asyncpg writes as is (indexer/write.py's codec; a datetime went through astimezone and two infinity
    comparisons: ~1 us per transfer row of a 200,000-row COPY)."""
    return ((int(hex_ts, 16) - PG_EPOCH_S) * 1_000_000,)


@lru_cache(maxsize=1 << 15)
def _topic_holder(topic: str) -> str:
    """The checksummed address in an indexed address topic, cached by the topic itself: a hit skips the slice
    and the concatenation in front of checksum's own cache. With transaction indexes parsed once per
    transaction, decode of the Ponder comparison's 200,000 Transfers: 0.82-0.90 s -> 0.75-0.84 s of CPU
    (load 11). 32,768 entries (~7 MB at most): a history with more holders falls through to checksum's."""
    return checksum("0x" + topic[26:])


def decode_range(batch: FetchedRange) -> DecodedBatch:
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

    events, transfers = out.events, out.transfers
    ev_append, tt_append = events.append, transfers.append
    numbers: dict[str, int] = {}  # "0x..." -> int: a busy block repeats its number thousands of times
    tx_indexes: dict[str, int] = {}  # the same for transaction indexes (a batchTransfer emits hundreds of logs)
    holder = _topic_holder
    for lg in batch.logs:
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
            frm = holder(topics[1])
            to = holder(topics[2])
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
