"""indexer/copy_binary.py: the writer's own binary COPY payloads store exactly what asyncpg's codecs store."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import asyncpg
import pytest

from indexer.copy_binary import copy_source, encode_events, encode_transfers
from indexer.decode import EVENT_COLUMNS, TRANSFER_COLUMNS
from indexer.lock import asyncpg_dsn
from indexer.write import prepare_connection

H = "0x" + "ab" * 32
T0 = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
ADDR = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
HOLDER = "0x" + "00" * 12 + "70997970c51812dc3a010c7d01b50e0d17dc79c8"
AMOUNTS = [0, 1, 9999, 10_000, 10**18, 10**20, 123_456_789 * 10**40, 2**256 - 1, 5 * 10**76]


def _events() -> list[tuple[object, ...]]:
    rows: list[tuple[object, ...]] = []
    topic_sets: list[list[str]] = [[], [T0], [T0, HOLDER], [T0, HOLDER, HOLDER], [T0, HOLDER, "0x" + "0" * 64, H]]
    for i, topics in enumerate(topic_sets * 3):
        args = {"from": ADDR, "value": str(AMOUNTS[i % len(AMOUNTS)]), "note": "é ✓"} if i % 2 else {}
        rows.append(
            (
                137 if i % 3 else 1,
                f"0x{i:064x}",
                i * 1000,
                2**40 + i,
                H,
                i,
                ADDR,
                ("Transfer", "Unknown", "IdentityRegistered")[i % 3],
                topics,
                "0x" + "0" * (64 * (i % 3)),
                json.dumps(args, ensure_ascii=i % 4 == 1),
                None if i % 2 else HOLDER[:42],
            )
        )
    return rows


def _transfers() -> list[tuple[object, ...]]:
    times: list[object] = [
        None,
        datetime(2026, 1, 1, 12, 30, 1, 250, tzinfo=UTC),
        ((1_767_270_601 - 946_684_800) * 10**6,),
    ]
    return [
        (1, f"0x{i:064x}", i, 10 + i, times[i % 3], H, ADDR, ADDR, HOLDER[:42], value)
        for i, value in enumerate(AMOUNTS)
    ]


@pytest.fixture
async def conn(idx_db: str) -> asyncpg.Connection:
    c = await asyncpg.connect(asyncpg_dsn(idx_db))
    await prepare_connection(c)
    yield c
    await c.close()


@pytest.mark.parametrize("chunk", [1, 4, 2_000])
async def test_payloads_store_what_asyncpg_stores(conn: asyncpg.Connection, chunk: int) -> None:
    cases = (
        ("chain_events", EVENT_COLUMNS, _events(), encode_events),
        ("token_transfers", TRANSFER_COLUMNS, _transfers(), encode_transfers),
    )
    for table, columns, rows, encode in cases:
        await conn.execute(f"CREATE TEMP TABLE a_{table} (LIKE {table}); CREATE TEMP TABLE b_{table} (LIKE {table})")
        await conn.copy_records_to_table(f"a_{table}", records=rows, columns=columns)
        source = copy_source(rows, lambda r, e=encode: e(r, chunk))
        await conn.copy_to_table(f"b_{table}", source=source, columns=columns, format="binary")
        a = [tuple(r) for r in await conn.fetch(f"SELECT * FROM a_{table} ORDER BY block_hash")]
        b = [tuple(r) for r in await conn.fetch(f"SELECT * FROM b_{table} ORDER BY block_hash")]
        assert len(a) == len(rows)
        assert a == b
        # byte for byte as Postgres sends the values back, not only equal after decoding
        same = await conn.fetchval(
            f"SELECT count(*) FROM (SELECT * FROM a_{table} EXCEPT ALL SELECT * FROM b_{table}) d"
        )
        assert same == 0


async def test_amounts_keep_their_scale(conn: asyncpg.Connection) -> None:
    """Trailing zero digits are dropped from the payload, not from the value: 10**20 reads back as 10**20."""
    rows = _transfers()
    await conn.execute("CREATE TEMP TABLE t (LIKE token_transfers)")
    await conn.copy_to_table("t", source=copy_source(rows, encode_transfers), columns=TRANSFER_COLUMNS, format="binary")
    got = await conn.fetch("SELECT value::text AS v FROM t ORDER BY log_index")
    assert [r["v"] for r in got] == [str(a) for a in AMOUNTS]
