"""Run the indexer in its own process (crash and leader-election tests kill it with SIGKILL).

    python -m tests.indexer.indexer_proc DATABASE_URL RPC_URL [--until BLOCK] [--batch-events N]

Indexes chain 1 until the cursor reaches BLOCK (exit 0), or forever without --until.
"""

from __future__ import annotations

import argparse
import asyncio
import os

import asyncpg

from core.settings import Settings
from indexer.config import IndexerConfig
from indexer.lock import asyncpg_dsn
from indexer.service import run_indexer


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("database_url")
    parser.add_argument("rpc_url")
    parser.add_argument("--until", type=int)
    parser.add_argument("--batch-events", type=int, default=500)
    args = parser.parse_args()
    os.environ["RPC_URLS_1"] = args.rpc_url
    settings = Settings(DATABASE_URL=args.database_url, REDIS_URL=None)  # type: ignore[call-arg]
    config = IndexerConfig(
        poll_interval_s=0.05,
        finality_depth={1: 8},
        lock_retry_s=0.2,
        error_backoff_s=0.2,
        batch_events=args.batch_events,
        logs_per_call=max(1, args.batch_events // 2),
        initial_span=5,
    )
    stop = asyncio.Event()

    async def watch() -> None:
        conn = await asyncpg.connect(asyncpg_dsn(args.database_url))
        try:
            while True:
                cur = await conn.fetchval("SELECT indexed_block FROM indexer_cursors WHERE chain_id = 1")
                if cur is not None and cur >= args.until:
                    stop.set()
                    return
                await asyncio.sleep(0.05)
        finally:
            await conn.close()

    watcher = asyncio.create_task(watch()) if args.until is not None else None
    await run_indexer(settings, [1], stop=stop, config=config)
    if watcher is not None:
        await watcher


if __name__ == "__main__":
    asyncio.run(main())
