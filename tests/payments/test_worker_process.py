"""`rwa worker` as operators run it: a dramatiq process on the RedisBroker whose scheduler runs the periodic
actors; here it expires an overdue payment, and stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from decimal import Decimal
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models.identity import User
from models.payments import PaymentMethod
from resolvers.payments import intents, notify
from tests.payments.conftest import TEST_MNEMONIC

RWA = str(Path(sys.executable).with_name("rwa"))


async def test_rwa_worker_runs_the_schedule(
    pay_db: str, redis_url: str, factory: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    from core.hd_wallet import DepositWallet

    user_id = uuid.uuid4()
    async with factory() as s:
        s.add(User(id=user_id, email=f"w-{user_id.hex[:8]}@example.com", password_hash="x"))
        await s.flush()
        p, _ = await intents.create_payment(
            s,
            DepositWallet(TEST_MNEMONIC),
            user_id=user_id,
            amount=Decimal("5"),
            currency="EUR",
            method=PaymentMethod.BANK_TRANSFER,
            idempotency_key="w",
            expires_in=1,
        )
        await notify.commit(s, None, "")
    env = {
        **os.environ,
        "DATABASE_URL": pay_db,
        "REDIS_URL": redis_url,
        "RWA_ENV": "test",
        "RWA_REDIS_PREFIX": f"rwa-test:{uuid.uuid4().hex[:8]}:",
        "RWA_DATA_DIR": str(tmp_path),
        "LOG_JSON": "0",
    }
    proc = subprocess.Popen(
        [RWA, "worker", "--threads", "2"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        state = None
        for _ in range(300):
            async with factory() as s:
                state = (await s.execute(text("SELECT state FROM payments WHERE id = :p"), {"p": p.id})).scalar()
            if state == "EXPIRED" or proc.poll() is not None:
                break
            await asyncio.sleep(0.1)
        assert state == "EXPIRED", (proc.poll(), proc.stdout.read1(20000).decode() if proc.poll() is not None else "")  # type: ignore[union-attr]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    out = proc.stdout.read().decode()  # type: ignore[union-attr]
    # the group got SIGTERM: `rwa` itself ends by the signal, the dramatiq processes shut down cleanly
    assert proc.returncode in (0, -signal.SIGTERM) and "Worker has been shut down" in out, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
