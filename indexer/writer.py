"""The chain's writer: the follower, plus what operators need from the process holding the lock.

After each follow step it records the chain's health (indexer/health.py: a failed step adds to the error
run, a good step clears it and any earlier stop) and gives backfill requests a slice of time
(indexer/backfill_requests.py), so `rwa index backfill` works next to a running `rwa index run`.
"""

from __future__ import annotations

import asyncio

from indexer import backfill_requests, health
from indexer.errors import InconsistentFetch, ReorgDetected, ReorgTooDeep
from indexer.follower import ChainFollower


class ChainWriter(ChainFollower):
    _clean = False  # health row known to be clear (saves an UPDATE per poll)

    async def step(self, stop: asyncio.Event | None = None) -> bool:
        try:
            busy = await super().step(stop)
            worked = await self._requests(stop)
        except (ReorgTooDeep, ReorgDetected, InconsistentFetch):
            raise  # a stop is recorded by the service; a reorg race is not a failure
        except Exception as exc:
            self._clean = False
            await health.record_error(self.conn, self.chain_id, exc)
            raise
        if not self._clean:
            self._clean = await health.record_healthy(self.conn, self.chain_id)
        return busy or worked

    async def _requests(self, stop: asyncio.Event | None) -> bool:
        if stop is not None and stop.is_set():
            return False
        finalized = await self.conn.fetchval(
            "SELECT finalized_block FROM indexer_cursors WHERE chain_id = $1", self.chain_id
        )
        if finalized is None:
            return False
        return await backfill_requests.execute(
            self.conn,
            self.client,
            self.chain_id,
            self.config,
            self.ranger,
            finalized=finalized,
            ceiling=finalized,
            budget_s=backfill_requests.SLICE_S,
            stop=stop,
        )
