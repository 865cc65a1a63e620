"""The gap this closes, end to end on anvil: a deposit sweep signed while its address has no gas is refused by the
node (insufficient funds) and holds the deposit key's nonce. The operator sees it in `rwa agent status`, cancels it
(REPLACED: nothing is compensated while its tx could still land), the address gets gas for the 0-value cancel at that
nonce, the sweep is CANCELED (its failure audited, as for a revert), and the next pass sweeps the balance."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from pydantic import SecretStr
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from agent.operations import cancel
from agent.status import collect
from chains.deploy import transact
from core.hd_wallet import DepositWallet
from models.identity import AuditLog, User
from models.payments import Payment, PaymentMethod, PaymentState
from models.tokens import Token, TokenKind
from resolvers.payments.sweeps import sweep_pass
from tests.agent.conftest import World, running, settings, world  # noqa: F401  (fixtures)
from tests.agent_domain.test_end_to_end import until
from tests.agent_domain.test_sweep_end_to_end import MNEMONIC
from tests.indexer.conftest import idx_db, indexer_template_db, node  # noqa: F401  (fixtures)


async def test_a_sweep_refused_for_gas_is_canceled_and_the_key_sweeps_again(world: World) -> None:  # noqa: F811
    world.settings.hd_wallet_mnemonic = SecretStr(MNEMONIC)
    usdc, treasury = world.d.stack.stablecoin, world.d.accounts[0]
    paid = DepositWallet(MNEMONIC).address(21)
    await transact(usdc.functions.mint(paid, 40 * 10**6), world.d.agent)
    engine = create_async_engine(world.db_url)
    sf = async_sessionmaker(engine, expire_on_commit=False)
    async with sf() as s:
        await s.execute(update(Token).where(Token.kind == TokenKind.STABLECOIN).values(symbol="USDC"))
        user = uuid.uuid4()
        s.add(User(id=user, email=f"s-{user.hex[:8]}@example.com", password_hash="x"))
        await s.flush()
        s.add(
            Payment(
                id=uuid.uuid4(),
                user_id=user,
                method=PaymentMethod.STABLECOIN,
                state=PaymentState.CONFIRMED,
                amount=Decimal(40),
                currency="USDC",
                idempotency_key="k21",
                chain_id=1,
                token_address=usdc.address,
                decimals=6,
                deposit_address=paid,
                derivation_index=21,
                amount_units=40 * 10**6,
                expires_at=datetime.now(UTC) + timedelta(hours=1),
            )
        )
        await s.commit()
    before = await usdc.functions.balanceOf(treasury).call()

    async def one_pass(native_wei: int) -> dict[str, int]:
        async def native(_: int, address: str) -> int:
            return native_wei

        async def price(_: int) -> int:
            return 10**9

        async with sf() as s:
            queued = await sweep_pass(s, Decimal(1), lambda _: treasury, native, price, chain_id=1)
            await s.commit()
            return queued

    async def indexed() -> bool:
        rows = await world.sql(
            "SELECT balance FROM holdings WHERE token_address = $1 AND holder = $2", usdc.address, paid
        )
        return bool(rows) and int(rows[0][0]) == 40 * 10**6

    first, second = f"sweep:1:{paid}:1", f"sweep:1:{paid}:2"
    async with running(world) as tasks:
        await until(indexed, tasks=tasks)
        # the pass believed the address had gas (a stale read); it has none: the node refuses the signed sweep
        assert await one_pass(10**18) == {"topups": 0, "sweeps": 1}
        ops = await world.wait_ops(
            lambda o: first in o and o[first]["state"] == "SIGNED" and bool(o[first]["last_error"]), tasks=tasks
        )
        assert "insufficient funds" in ops[first]["last_error"] and ops[first]["sender"] == paid
        [row] = [r for r in await collect(world.settings, engine, [1]) if r.address == paid]
        assert not row.healthy and [x["businessRef"] for x in row.refused] == [first]

        async with sf() as s:
            assert (await cancel(s, ops[first]["id"], "deposit address has no gas")).state.value == "REPLACED"
            await s.commit()
        # while the cancel is under way the original sweep may still land: a pass queues no second one behind it
        assert await one_pass(10**18) == {"topups": 0, "sweeps": 0}
        await world.wait_ops(lambda o: "cancel tx refused" in (o[first]["last_error"] or ""), tasks=tasks)
        world.node.rpc("anvil_setBalance", paid, hex(10**16))  # enough gas for the cancel (and a later sweep)
        ops = await world.wait_ops(lambda o: o[first]["state"] == "CANCELED", tasks=tasks)
        assert await usdc.functions.balanceOf(paid).call() == 40 * 10**6  # the canceled sweep moved nothing

        assert await one_pass(10**16) == {"topups": 0, "sweeps": 1}
        ops = await world.wait_ops(lambda o: second in o and o[second]["state"] == "CONFIRMED", tasks=tasks)
    assert ops[second]["nonce"] == ops[first]["nonce"] + 1  # the key's next nonce: the cancel filled the stuck one
    assert await usdc.functions.balanceOf(paid).call() == 0
    assert await usdc.functions.balanceOf(treasury).call() == before + 40 * 10**6
    async with sf() as s:
        failed = await s.scalar(
            select(func.count())
            .select_from(AuditLog)
            .where(AuditLog.action == "sweep.deposit.failed", AuditLog.target_id == str(ops[first]["id"]))
        )
        canceled = await s.scalar(
            select(func.count())
            .select_from(AuditLog)
            .where(AuditLog.action == "operation.cancel", AuditLog.target_id == str(ops[first]["id"]))
        )
    assert (failed, canceled) == (1, 1)
    await engine.dispose()
