"""The reconciler refreshes planner statistics of tables filled faster than autovacuum analyzes them (without them
its payment/transfer join went quadratic), and leaves fresh ones alone."""

from __future__ import annotations

import asyncio

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from resolvers.payments.reconcile import refresh_stale_statistics


async def _stats_visible(factory: async_sessionmaker[AsyncSession], table: str, rows: int) -> None:
    for _ in range(100):  # cumulative statistics are flushed by the writing backend shortly after its commit
        async with factory() as s:
            mods = (
                await s.execute(
                    text("SELECT n_mod_since_analyze FROM pg_stat_user_tables WHERE relname = :t"), {"t": table}
                )
            ).scalar()
        if mods is not None and mods >= rows:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"statistics of {table} never showed {rows} modifications")


async def test_stale_tables_are_analyzed_once(factory: async_sessionmaker[AsyncSession]) -> None:
    async with factory() as s:
        await s.execute(text("CREATE TABLE stats_probe (id int PRIMARY KEY, v text)"))
        await s.execute(text("INSERT INTO stats_probe SELECT g, md5(g::text) FROM generate_series(1, 1500) g"))
        await s.commit()
    await _stats_visible(factory, "stats_probe", 1500)
    async with factory() as s:
        assert await refresh_stale_statistics(s, ("stats_probe", "payments")) == ["stats_probe"]
        await s.commit()
        analyzed = (await s.execute(text("SELECT reltuples FROM pg_class WHERE relname = 'stats_probe'"))).scalar()
        assert analyzed == 1500
        assert await refresh_stale_statistics(s, ("stats_probe",)) == []  # fresh now
        # grows by less than its size: left to autovacuum
        await s.execute(text("INSERT INTO stats_probe SELECT g, 'x' FROM generate_series(1501, 2700) g"))
        await s.commit()
    await _stats_visible(factory, "stats_probe", 1200)
    async with factory() as s:
        assert await refresh_stale_statistics(s, ("stats_probe",)) == []
