"""Test-only root fields, added to the real schema (every production extension included) by the `probe_schema`
fixture (tests/platform/conftest.py), so platform tests do not depend on what the product schema looks like."""

from __future__ import annotations

import asyncio
import logging

import strawberry

log = logging.getLogger("rwa.probe")


@strawberry.type
class ProbeNode:
    """A self-nesting type, so depth limits can be tested."""

    value: int = 1

    @strawberry.field
    def child(self) -> ProbeNode:
        return ProbeNode()


@strawberry.type
class ProbeQuery:
    @strawberry.field
    def probe_node(self) -> ProbeNode:
        return ProbeNode()

    @strawberry.field
    async def probe_crash(self) -> int:
        raise RuntimeError("connection to db-secret-host:5432 failed; password=hunter2")

    @strawberry.field
    async def probe_deadlock(self) -> int:
        """What an ORM write path outside a retried unit raises when Postgres picks it as a deadlock victim."""
        import asyncpg
        from sqlalchemy.exc import DBAPIError

        orig = asyncpg.exceptions.DeadlockDetectedError("deadlock detected")
        raise DBAPIError("UPDATE users SET ...", {}, orig)

    @strawberry.field
    async def probe_log(self, tag: str) -> str:
        """Logs before and after yielding to the loop, so concurrent requests interleave their log lines."""
        log.info("probe before", extra={"tag": tag})
        await asyncio.sleep(0.01)
        log.warning("probe after", extra={"tag": tag})
        return tag
