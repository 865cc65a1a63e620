"""The whole loop on a real anvil chain, with the real executor and indexer in-process: a trade between two KYC
approved investors settles on chain (SETTLED only once the transfer is indexed and final; `verify` agrees), a
settlement whose seller moved the tokens away FAILS with the revert reason and its cash reversed, a KYC approval
registers the wallet in the identity registry and a suspension deletes it, a withdrawal is paid by the treasury.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from chains.deploy import transact
from chains.rpc import RpcClient
from indexer.verify import verify_token
from models.identity import KycCase, KycStatus, User, Wallet
from models.tokens import Token, TokenKind
from models.trading import Market, OrderType, SettlementInstruction, Side, Trade
from models.withdrawals import Withdrawal, WithdrawalState
from resolvers import ledger
from resolvers.identity.registry_sync import sync_users, sync_wallets
from resolvers.payments import withdrawals
from resolvers.trading.orders import OrderRequest, place_order
from tests.agent.conftest import World, running, settings, world  # noqa: F401  (fixtures)
from tests.indexer.conftest import idx_db, indexer_template_db, node  # noqa: F401  (fixtures)

QUOTE = "USDC"


async def until(check, timeout: float = 60.0, tasks: tuple = ()) -> Any:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        for t in tasks:
            if t.done():
                t.result()
                raise AssertionError(f"{t.get_name()} ended early")
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.1)


class Platform:
    """Rows of the platform around the deployed stack: a market, investors with KYC, wallets and cash."""

    def __init__(self, w: World) -> None:
        self.w = w
        self.engine = create_async_engine(w.db_url)
        self.sf = async_sessionmaker(self.engine, expire_on_commit=False)

    async def setup(self) -> None:
        async with self.sf() as s:
            await s.execute(update(Token).where(Token.kind == TokenKind.STABLECOIN).values(symbol=QUOTE))
            token = (await s.execute(select(Token).where(Token.kind == TokenKind.SECURITY))).scalar_one()
            self.token_id = token.id
            self.market_id = uuid.uuid4()
            s.add(
                Market(
                    id=self.market_id,
                    symbol="TREF/USDC",
                    base_token_id=token.id,
                    chain_id=1,
                    token_address=token.address,
                    base_decimals=18,
                    quote_currency=QUOTE,
                    tick_size=Decimal("0.01"),
                    lot_size=Decimal("1"),
                    min_notional=Decimal(0),
                    maker_fee_bps=0,
                    taker_fee_bps=0,
                    book_sequence=0,
                )
            )
            await s.commit()

    async def investor(self, wallet: str, cash: str = "0", country: str = "US", sync: bool = False) -> uuid.UUID:
        user_id = uuid.uuid4()
        async with self.sf() as s:
            s.add(User(id=user_id, email=f"i-{user_id.hex[:10]}@example.com", password_hash="x"))
            await s.flush()
            s.add(
                KycCase(
                    id=uuid.uuid4(),
                    user_id=user_id,
                    status=KycStatus.APPROVED,
                    country=country,
                    expires_at=datetime(2100, 1, 1, tzinfo=UTC),
                )
            )
            s.add(Wallet(id=uuid.uuid4(), user_id=user_id, address=wallet))
            await s.flush()
            if Decimal(cash):
                await ledger.credit_deposit(s, user_id, Decimal(cash), QUOTE, f"test:{user_id}")
            if sync:
                await sync_wallets(s, [wallet])
            await s.commit()
        return user_id

    async def order(self, user_id: uuid.UUID, side: Side, qty: str, price: str) -> Any:
        async with self.sf() as s:
            placed = await place_order(
                s, user_id, OrderRequest(self.market_id, side, OrderType.LIMIT, Decimal(qty), Decimal(price))
            )
            await s.commit()
            return placed.order

    async def trade_of(self, seller_wallet: str) -> tuple[Trade, SettlementInstruction]:
        async with self.sf() as s:
            i = (
                await s.execute(
                    select(SettlementInstruction)
                    .where(SettlementInstruction.from_wallet == seller_wallet)
                    .order_by(SettlementInstruction.created_at.desc())
                    .limit(1)
                )
            ).scalar_one()
            t = (await s.execute(select(Trade).where(Trade.id == i.trade_id))).scalar_one()
            return t, i

    async def indexed(self, sql: str, *args: Any) -> Any:
        rows = await self.w.sql(sql, *args)
        return rows[0][0] if rows else None


async def test_trade_settles_on_chain_and_a_revert_fails_it(world: World) -> None:  # noqa: F811
    p = Platform(world)
    await p.setup()
    seller_w, buyer_w, mover_w = world.d.accounts[1], world.d.accounts[2], world.d.accounts[3]
    seller = await p.investor(seller_w)
    buyer = await p.investor(buyer_w, cash="1000")
    token = world.d.stack.token
    async with running(world) as tasks:
        await until(
            lambda: p.indexed(
                "SELECT count(*) FROM identities WHERE registered AND investor = ANY($1)", [seller_w, buyer_w]
            ),
            tasks=tasks,
        )
        await until(lambda: p.indexed("SELECT balance FROM holdings WHERE holder = $1", seller_w), tasks=tasks)
        await p.order(buyer, Side.BUY, "5", "10.00")
        sell = await p.order(seller, Side.SELL, "5", "10.00")
        assert sell.status.value == "FILLED", sell
        trade, instruction = await p.trade_of(seller_w)

        async def settled() -> bool:
            return await p.indexed("SELECT settlement::text FROM trades WHERE id = $1", trade.id) == "SETTLED"

        await until(settled, tasks=tasks)
        op = (
            await world.sql("SELECT * FROM chain_operations WHERE business_ref = $1", f"settlement:{instruction.id}")
        )[0]
        fin = await p.indexed("SELECT finalized_block FROM indexer_cursors WHERE chain_id = 1")
        assert op["state"] == "CONFIRMED" and op["confirmed_block"] <= fin
        assert await token.functions.balanceOf(buyer_w).call() == 5 * 10**18
        assert len(world.transfers_on_chain(seller_w)) == 1  # one transfer for the one instruction
        assert op["function"] == "settlementTransfer"
        tx = await p.indexed("SELECT tx_hash FROM settlement_instructions WHERE id = $1", instruction.id)
        assert tx == op["mined_tx_hash"]

        # the seller can sell everything it holds now that the transfer is indexed
        left = (10**24 - 5 * 10**18) // 10**18
        rest = await p.order(seller, Side.SELL, str(left), "99.00")
        assert rest.status.value == "NEW", rest.reason

    # a settlement that reverts: the seller (mover) moves its tokens away before the agent sends
    await transact(token.functions.mint(mover_w, 3 * 10**18), world.d.agent)
    mover = await p.investor(mover_w)
    async with running(world, agent=False) as tasks:
        await until(
            lambda: p.indexed("SELECT balance FROM holdings WHERE holder = $1 AND balance > 0", mover_w), tasks=tasks
        )
        await p.order(buyer, Side.BUY, "3", "10.00")
        await p.order(mover, Side.SELL, "3", "10.00")
    failed_trade, _ = await p.trade_of(mover_w)
    await transact(token.functions.transfer(seller_w, 3 * 10**18), mover_w)
    async with running(world) as tasks:

        async def failed() -> bool:
            return await p.indexed("SELECT settlement::text FROM trades WHERE id = $1", failed_trade.id) == "FAILED"

        await until(failed, tasks=tasks)
        await until(
            lambda: p.indexed("SELECT count(*) FROM holdings WHERE holder = $1 AND balance = 0", mover_w), tasks=tasks
        )
    reason = await p.indexed("SELECT failure_reason FROM trades WHERE id = $1", failed_trade.id)
    assert reason == "insufficient unfrozen balance"
    async with p.sf() as s:
        assert (await ledger.balances(s, buyer))[0].available == Decimal(1000 - 50)  # the failed 30 came back

    # a settlement after the token was paused: reverts (settlementTransfer keeps the token's rules), FAILED
    async with running(world, agent=False) as tasks:
        await p.order(buyer, Side.BUY, "2", "10.00")
        await p.order(seller, Side.SELL, "2", "10.00")
    paused_trade, _ = await p.trade_of(seller_w)
    await transact(token.functions.pause(), world.d.agent)
    async with running(world) as tasks:

        async def refused() -> bool:
            return await p.indexed("SELECT settlement::text FROM trades WHERE id = $1", paused_trade.id) == "FAILED"

        await until(refused, tasks=tasks)
    assert await p.indexed("SELECT failure_reason FROM trades WHERE id = $1", paused_trade.id) == "token is paused"
    await transact(token.functions.unpause(), world.d.agent)
    async with running(world, agent=False) as tasks:
        await until(lambda: p.indexed("SELECT NOT paused FROM tokens WHERE address = $1", token.address), tasks=tasks)
    async with RpcClient([world.node.url], chain_id=1) as rpc:
        report = await verify_token(p.engine, rpc, 1, token.address)
    assert report.mismatches == [] and report.holders_checked >= 3
    await p.engine.dispose()


async def test_identity_follows_kyc_and_withdrawal_is_paid(world: World) -> None:  # noqa: F811
    p = Platform(world)
    await p.setup()
    registry, usdc = world.d.stack.registry, world.d.stack.stablecoin
    newcomer = world.d.accounts[5]
    # the treasury (the agent key here) holds stablecoin to pay out
    await transact(usdc.functions.mint(world.d.accounts[0], 10_000 * 10**6), world.d.agent)
    async with running(world) as tasks:
        user = await p.investor(newcomer, cash="100", country="DE", sync=True)

        async def registered() -> bool:
            return bool(await p.indexed("SELECT registered FROM identities WHERE investor = $1", newcomer))

        await until(registered, tasks=tasks)
        assert await registry.functions.isVerified(newcomer).call()
        assert await registry.functions.investorCountry(newcomer).call() == 276
        # registered and verified: a withdrawal to that wallet is paid by the treasury
        async with p.sf() as s:
            w, _ = await withdrawals.request(
                s, world.settings, user, withdrawals.WithdrawalRequest(QUOTE, Decimal("12.5"), newcomer, "e2e")
            )
            await s.commit()

        async def paid() -> bool:
            async with p.sf() as s:
                row = await s.get(Withdrawal, w.id, populate_existing=True)
                return row.state is WithdrawalState.COMPLETED

        await until(paid, tasks=tasks)
        assert await usdc.functions.balanceOf(newcomer).call() == 12_500_000
        # suspended: the wallet leaves the registry
        async with p.sf() as s:
            await s.execute(update(KycCase).where(KycCase.user_id == user).values(status=KycStatus.SUSPENDED))
            await sync_users(s, [user])
            await s.commit()

        async def deleted() -> bool:
            return await p.indexed("SELECT registered FROM identities WHERE investor = $1", newcomer) is False

        await until(deleted, tasks=tasks)
    assert not await registry.functions.isVerified(newcomer).call()
    kinds = [
        r["kind"]
        for r in await world.sql(
            "SELECT kind FROM chain_operations WHERE business_ref LIKE 'identity:%' ORDER BY created_at"
        )
    ]
    assert kinds == ["identity.register", "identity.delete"]
    await p.engine.dispose()
