"""indexer/decode.py's fast path: standard Transfers go straight to COPY data and summed deltas, identity and freeze
events to COPY data too, and both store exactly what the row-tuple path stores (the reference:
decode_range(fast=False), encoded by indexer/copy_binary.py)."""

from __future__ import annotations

import json

import asyncpg
import pytest

from indexer import decode as decode_mod
from indexer.copy_binary import copy_source, encode_events, encode_transfers
from indexer.countries import EVENT, LATEST, UNKNOWN, CountryReading
from indexer.decode import EVENT_COLUMNS, TRANSFER_COLUMNS, DecodedBatch, decode_range
from indexer.events import BY_NAME, TRANSFER_TOPIC0, ZERO_ADDRESS, checksum
from indexer.fetch import FetchedRange
from indexer.lock import asyncpg_dsn
from indexer.write import PendingBalances, prepare_connection

TOKEN = "0x5fbdb2315678afecb367f032d93f642f64180aa3"
OTHER = "0xe7f1725e7734ce288f8367e1bb143e90bb3f0512"
HOLDERS = ["0x" + f"{i:02x}" * 20 for i in range(1, 9)] + [ZERO_ADDRESS]
AMOUNTS = [0, 1, 9999, 10_000, 10**18, 10**20, 2**256 - 1, 5 * 10**76, 123_456_789 * 10**40]


def _topic(address: str) -> str:
    return "0x" + "0" * 24 + address[2:]


def _word(value: int) -> str:
    return "0x" + f"{value:064x}"


def _fetched() -> FetchedRange:
    """Three blocks: Transfers (mints and burns among them) of two tokens, several per transaction, and logs the fast
    path leaves to the generic one: a 4-topic (ERC-721) Transfer, a Transfer with two data words, a Paused."""
    blocks = {
        n: {"hash": f"0x{n:064x}", "parentHash": f"0x{n - 1:064x}", "timestamp": hex(1_767_270_600 + 12 * n)}
        for n in (100, 101, 102)
    }
    logs = []
    i = 0
    for n in (100, 101, 102):
        for li in range(12):
            frm, to = HOLDERS[(i * 5) % len(HOLDERS)], HOLDERS[(i * 3 + 1) % len(HOLDERS)]
            log = {
                "blockNumber": hex(n),
                "blockHash": blocks[n]["hash"],
                "logIndex": hex(li),
                "transactionHash": f"0x{(n * 100 + li // 4):064x}",
                "transactionIndex": hex(li // 4),
                "address": (TOKEN, OTHER)[i % 2],
                "topics": [TRANSFER_TOPIC0, _topic(frm), _topic(to)],
                "data": _word(AMOUNTS[i % len(AMOUNTS)]),
                "removed": False,
            }
            if li == 5:
                log["topics"] = [*log["topics"], _word(7)]  # ERC-721: the id is a topic
                log["data"] = "0x"
            elif li == 6:
                log["data"] += "0" * 64
            elif li == 7:
                log["topics"] = [BY_NAME["Paused"].topic0]
                log["data"] = _topic(frm)
            logs.append(log)
            i += 1
    return FetchedRange(1, 100, 102, logs, blocks)


def _with_other_events() -> FetchedRange:
    """_fetched() plus, in block 103, every identity and freeze event the fast path encodes (IdentityRegistered with
    each kind of country reading, and none) and the same events in shapes it leaves to the generic path: an extra
    topic, a short data word, a topic that is no address, a bad hex number."""
    fetched = _fetched()
    h = f"0x{103:064x}"
    fetched.blocks[103] = {"hash": h, "parentHash": f"0x{102:064x}", "timestamp": hex(1_767_270_600 + 12 * 103)}
    fetched.to_block = 103
    t = {name: BY_NAME[name].topic0 for name in BY_NAME}
    a, b, c = HOLDERS[0], HOLDERS[3], HOLDERS[7]
    shapes = [
        ("IdentityRegistered", [_topic(a), _topic(b)], "0x"),  # country read at its block
        ("IdentityRegistered", [_topic(b), _topic(c)], "0x"),  # read at the latest block
        ("IdentityRegistered", [_topic(c), _topic(a)], "0x"),  # unknown
        ("IdentityRegistered", [_topic(a), _topic(c)], "0x"),  # no reading at all
        ("IdentityRemoved", [_topic(b), _topic(c)], "0x"),
        ("CountryUpdated", [_topic(a), _word(840)], "0x"),
        ("CountryUpdated", [_topic(b), _word(0)], "0x"),
        ("AddressFrozen", [_topic(c), _word(1), _topic(a)], "0x"),
        ("AddressFrozen", [_topic(c), _word(0), _topic(ZERO_ADDRESS)], "0x"),
        ("TokensFrozen", [_topic(b)], _word(5)),
        ("TokensUnfrozen", [_topic(b)], _word(2**256 - 1)),
        ("TokensFrozen", [_topic(b)], _word(10**18) + "0" * 64),  # a second data word: ignored by both paths
        # the generic path's: an extra topic, no data, a topic that is no address, a bad number
        ("IdentityRegistered", [_topic(a), _topic(b), _word(1)], "0x"),
        ("TokensUnfrozen", [_topic(b)], "0x"),
        ("IdentityRemoved", ["0x" + "zz" * 32, _topic(c)], "0x"),
        ("CountryUpdated", [_topic(a), "0x" + "g" * 64], "0x"),
    ]
    for li, (name, topics, data) in enumerate(shapes):
        fetched.logs.append(
            {
                "blockNumber": hex(103),
                "blockHash": h,
                "logIndex": hex(li),
                "transactionHash": f"0x{(10_300 + li // 3):064x}",
                "transactionIndex": hex(li // 3),
                "address": (TOKEN, OTHER)[li % 2],
                "topics": [t[name], *topics],
                "data": data,
                "removed": False,
            }
        )
    fetched.countries = {
        (h, 0): CountryReading(276, EVENT),
        (h, 1): CountryReading(826, LATEST, 120),
        (h, 2): CountryReading(None, UNKNOWN, None),
        (h, 12): CountryReading(40, EVENT),
    }
    return fetched


def _touched(batch: DecodedBatch) -> set[tuple[str, str, str]]:
    return {(ev[7], ev[6], ev[11]) for ev in batch.events if ev[11] is not None} | set(batch.fast_touched)


def test_fast_path_takes_standard_transfers_only_and_sums_their_deltas() -> None:
    slow = decode_range(_fetched(), fast=False)
    fast = decode_range(_fetched(), fast=True)
    assert slow.fast == 0 and not slow.event_copy
    assert fast.fast == 27 and len(fast.events) == 9 and fast.n_events == len(slow.events) == 36
    assert fast.n_transfers == len(slow.transfers) == 30  # the 2-word Transfers decode; the ERC-721 ones do not
    assert fast.blocks == slow.blocks
    expected, got = PendingBalances(), PendingBalances()
    expected.add(slow.transfers)
    got.add(fast.transfers)
    got.merge(fast.deltas, fast.minted)
    assert got.deltas == expected.deltas and got.minted == expected.minted


def test_fast_path_encodes_standard_identity_and_freeze_events_with_their_counts_and_keys() -> None:
    slow = decode_range(_with_other_events(), fast=False)
    fast = decode_range(_with_other_events())
    assert fast.fast == 27 and fast.fast_other == 12 and len(fast.events) == 9 + 4
    assert fast.n_events == len(slow.events) == 36 + 16 and fast.n_transfers == len(slow.transfers) == 30
    by_event: dict[str, int] = {}
    for ev in slow.events:
        by_event[ev[7]] = by_event.get(ev[7], 0) + 1
    for ev in fast.events:
        by_event[ev[7]] = by_event.get(ev[7], 0) - 1
    assert {k: v for k, v in by_event.items() if v} == fast.fast_by_event
    assert fast.fast_by_event["IdentityRegistered"] == 4 and fast.fast_by_event["Transfer"] == 27
    assert _touched(fast) == _touched(slow)
    generic = sorted(ev[7] for ev in fast.events if ev[7] != "Transfer")
    assert generic == ["IdentityRegistered"] + ["Paused"] * 3 + ["Unknown"] * 6  # 3 of them ERC-721 Transfers


def test_fast_path_pieces_hold_at_most_chunk_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(decode_mod, "CHUNK_ROWS", 5)
    fast = decode_range(_fetched())
    assert len(fast.event_copy) == len(fast.transfer_copy) == 6  # 27 rows: 5 pieces of 5 and one of 2


@pytest.fixture
async def conn(idx_db: str) -> asyncpg.Connection:
    c = await asyncpg.connect(asyncpg_dsn(idx_db))
    await prepare_connection(c)
    yield c
    await c.close()


@pytest.mark.parametrize("fetched", [_fetched, _with_other_events])
async def test_fast_path_stores_what_the_tuple_path_stores(conn: asyncpg.Connection, fetched) -> None:  # type: ignore[no-untyped-def]
    slow = decode_range(fetched(), fast=False)
    fast = decode_range(fetched(), fast=True)
    cases = (
        ("chain_events", EVENT_COLUMNS, encode_events, slow.events, fast.events, fast.event_copy),
        ("token_transfers", TRANSFER_COLUMNS, encode_transfers, slow.transfers, fast.transfers, fast.transfer_copy),
    )
    for table, columns, encode, rows, rest, encoded in cases:
        await conn.execute(f"CREATE TEMP TABLE a_{table} (LIKE {table}); CREATE TEMP TABLE b_{table} (LIKE {table})")
        await conn.copy_to_table(f"a_{table}", source=copy_source(rows, encode), columns=columns, format="binary")
        await conn.copy_to_table(
            f"b_{table}", source=copy_source(rest, encode, encoded), columns=columns, format="binary"
        )
        order = "ORDER BY block_number, log_index"
        a = [tuple(r) for r in await conn.fetch(f"SELECT * FROM a_{table} {order}")]
        b = [tuple(r) for r in await conn.fetch(f"SELECT * FROM b_{table} {order}")]
        assert len(a) == len(rows) and a == b
        diff = f"SELECT count(*) FROM (SELECT * FROM a_{table} EXCEPT ALL SELECT * FROM b_{table}) d"
        assert await conn.fetchval(diff) == 0  # byte for byte as Postgres sends them back
    # checksummed addresses, decimal amounts, the Transfer's args as the generic decoder writes them
    row = await conn.fetchrow("SELECT * FROM b_chain_events WHERE block_number = 100 AND log_index = 4")
    assert row["address"] == "0x5FbDB2315678afecb367f032d93F642f64180aa3" and row["subject"] is None
    args = {"from": checksum(HOLDERS[2]), "to": checksum(HOLDERS[4]), "value": str(10**18)}
    assert json.loads(row["args"]) == args
