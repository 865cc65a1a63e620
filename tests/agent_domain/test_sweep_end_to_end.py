"""A deposit sweep on a real anvil chain with the real executor and indexer: the deposit address of a CONFIRMED
payment has no gas, so the treasury tops it up (a value transfer, confirmed at finality with no event), then the next
pass sweeps its whole USDC balance to the treasury, signed by the deposit key; an UNDERPAID payment's address is
left alone."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from pydantic import SecretStr
from sqlalchemy import update
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from chains.deploy import transact
from chains.rpc import RpcClient
from core.hd_wallet import DepositWallet
from models.identity import User
from models.payments import Payment, PaymentMethod, PaymentState
from models.tokens import Token, TokenKind
from resolvers.payments.sweeps import sweep_pass
from tests.agent.conftest import World, running, settings, world  # noqa: F401  (fixtures)
from tests.agent_domain.test_end_to_end import until
from tests.indexer.conftest import idx_db, indexer_template_db, node  # noqa: F401  (fixtures)

MNEMONIC = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about"


async def test_topup_then_sweep_to_the_treasury(world: World) -> None:  # noqa: F811
    world.settings.hd_wallet_mnemonic = SecretStr(MNEMONIC)  # the executor signs deposit:<index> with it
    wallet = DepositWallet(MNEMONIC)
    usdc, treasury = world.d.stack.stablecoin, world.d.accounts[0]
    engine = create_async_engine(world.db_url)
    sf = async_sessionmaker(engine, expire_on_commit=False)
    paid, waiting = wallet.address(11), wallet.address(12)
    await transact(usdc.functions.mint(paid, 40 * 10**6), world.d.agent)
    await transact(usdc.functions.mint(waiting, 5 * 10**6), world.d.agent)
    async with sf() as s:
        await s.execute(update(Token).where(Token.kind == TokenKind.STABLECOIN).values(symbol="USDC"))
        user = uuid.uuid4()
        s.add(User(id=user, email=f"s-{user.hex[:8]}@example.com", password_hash="x"))
        await s.flush()
        for index, address, state in ((11, paid, PaymentState.CONFIRMED), (12, waiting, PaymentState.UNDERPAID)):
            s.add(
                Payment(
                    id=uuid.uuid4(),
                    user_id=user,
                    method=PaymentMethod.STABLECOIN,
                    state=state,
                    amount=Decimal(40),
                    currency="USDC",
                    idempotency_key=f"k{index}",
                    chain_id=1,
                    token_address=usdc.address,
                    decimals=6,
                    deposit_address=address,
                    derivation_index=index,
                    amount_units=40 * 10**6,
                    expires_at=datetime.now(UTC) + timedelta(hours=1),
                )
            )
        await s.commit()
    before = await usdc.functions.balanceOf(treasury).call()

    async with RpcClient([world.node.url], chain_id=1) as rpc:

        async def native(_: int, address: str) -> int:
            return int(await rpc.call("eth_getBalance", [address, "latest"]), 16)

        async def price(_: int) -> int:
            return int(await rpc.call("eth_gasPrice", []), 16)

        async def one_pass() -> dict[str, int]:
            async with sf() as s:
                queued = await sweep_pass(s, Decimal(1), lambda _: treasury, native, price, chain_id=1)
                await s.commit()
                return queued

        async def holding(address: str) -> int:
            rows = await world.sql(
                "SELECT balance FROM holdings WHERE token_address = $1 AND holder = $2", usdc.address, address
            )
            return int(rows[0][0]) if rows else -1

        async def indexed() -> bool:
            return await holding(paid) == 40 * 10**6

        async def swept() -> bool:
            return await holding(paid) == 0

        async with running(world) as tasks:
            await until(indexed, tasks=tasks)
            assert await one_pass() == {"topups": 1, "sweeps": 0}
            await world.wait_ops(
                lambda o: f"gas:1:{paid}:1" in o and o[f"gas:1:{paid}:1"]["state"] == "CONFIRMED", tasks=tasks
            )
            assert await one_pass() == {"topups": 0, "sweeps": 1}
            ops = await world.wait_ops(
                lambda o: f"sweep:1:{paid}:2" in o and o[f"sweep:1:{paid}:2"]["state"] == "CONFIRMED", tasks=tasks
            )
            await until(swept, tasks=tasks)
    sweep = ops[f"sweep:1:{paid}:2"]
    assert sweep["signer"] == "deposit:11" and sweep["sender"] == paid
    assert await usdc.functions.balanceOf(paid).call() == 0
    assert await usdc.functions.balanceOf(treasury).call() == before + 40 * 10**6
    assert await usdc.functions.balanceOf(waiting).call() == 5 * 10**6  # UNDERPAID: never touched
    assert not [r for r in ops if waiting in r]
    await engine.dispose()
