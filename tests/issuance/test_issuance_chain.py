"""Primary issuance on a real anvil chain: an offering closes, the agent mints in a batch, the indexer sees the mint,
the operation is confirmed at finality and the subscriptions settle; a direct issuance and a redemption go the same
way. Afterwards indexed holdings equal balanceOf (`rwa index verify`'s check) and the cash adds up."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from chains.deploy import transact
from chains.rpc import RpcClient
from indexer.verify import verify_token
from models.assets import Asset, AssetStatus, AssetType
from models.identity import KycCase, KycStatus, User, Wallet
from models.issuance import AllocationRule
from resolvers import ledger
from resolvers.issuance import closing, direct, offerings, subscriptions
from resolvers.issuance.offerings import Actor
from tests.agent.conftest import World, running, settings, world  # noqa: F401  (fixtures)
from tests.indexer.conftest import idx_db, indexer_template_db, node  # noqa: F401  (fixtures)

QUOTE = "USDT"


async def _seed(w: World) -> tuple[uuid.UUID, uuid.UUID, list[uuid.UUID]]:
    """An issuer with an ACTIVE asset owning the deployed token, and three KYC-approved investors whose wallets the
    registry lists (accounts 1-3), each with 1,000 USDT."""
    engine = create_async_engine(w.db_url)
    issuer, investors = uuid.uuid4(), [uuid.uuid4() for _ in range(3)]
    try:
        async with AsyncSession(engine, expire_on_commit=False) as s:
            for uid, roles in [(issuer, ["ISSUER"])] + [(i, ["INVESTOR"]) for i in investors]:
                s.add(User(id=uid, email=f"{uid.hex[:10]}@example.com", password_hash="x", roles=roles))
            await s.flush()
            asset = Asset(
                id=uuid.uuid4(),
                issuer_id=issuer,
                name="Bond 2031",
                type=AssetType.OTHER,
                status=AssetStatus.ACTIVE,
                jurisdiction="DE",
                currency="EUR",
                attributes={},
            )
            s.add(asset)
            await s.flush()
            token_id = (
                await s.execute(
                    text("UPDATE tokens SET asset_id = :a WHERE address = :t RETURNING id"),
                    {"a": asset.id, "t": w.d.stack.token.address},
                )
            ).scalar_one()
            for uid, account in zip(investors, w.d.accounts[1:4]):
                s.add(
                    KycCase(
                        id=uuid.uuid4(),
                        user_id=uid,
                        status=KycStatus.APPROVED,
                        country="DE",
                        expires_at=datetime(2100, 1, 1, tzinfo=UTC),
                    )
                )
                s.add(Wallet(id=uuid.uuid4(), user_id=uid, address=account))
            await s.flush()
            for uid in investors:
                await ledger.credit_deposit(s, uid, Decimal(1000), QUOTE, f"seed:{uid}")
            await s.commit()
    finally:
        await engine.dispose()
    return issuer, token_id, investors


async def _unit(w: World, work):  # type: ignore[no-untyped-def]
    engine = create_async_engine(w.db_url)
    try:
        async with AsyncSession(engine, expire_on_commit=False, autoflush=False) as s:
            result = await work(s)
            await s.commit()
            return result
    finally:
        await engine.dispose()


async def _closed_first_come(w: World, amounts: dict[int, int]) -> tuple[str, uuid.UUID, list[uuid.UUID]]:
    """A FIRST_COME offering (1 USDT per token, cap 500) that the investors at `amounts`' indexes subscribed to,
    closed with the agent not running yet: (the mint's business_ref, the issuer, the investors)."""
    issuer, token_id, investors = await _seed(w)
    now = datetime.now(UTC)
    spec = offerings.OfferingSpec(
        token_id=token_id,
        name="Placement",
        quote_currency=QUOTE,
        price=Decimal(1),
        min_ticket=Decimal(1),
        target=Decimal(1),
        hard_cap=Decimal(500),
        opens_at=now - timedelta(minutes=1),
        closes_at=now + timedelta(hours=1),
        allocation_rule=AllocationRule.FIRST_COME,
    )
    boss = Actor(issuer, frozenset({"ISSUER"}))
    async with running(w, agent=False):  # subscriptions need the registry's identities indexed
        await _identities_indexed(w)
    offering = await _unit(w, lambda s: offerings.create_offering(s, boss, spec))
    await _unit(w, lambda s: offerings.open_offering(s, boss, offering.id))
    for i, amount in amounts.items():
        await _unit(
            w,
            lambda s, uid=investors[i], amount=amount: subscriptions.subscribe(
                s, Actor(uid, frozenset({"INVESTOR"})), subscriptions.SubscribeRequest(offering.id, Decimal(amount))
            ),
        )
    await _unit(w, lambda s: closing.close_offering(s, boss, offering.id))
    await _unit(w, lambda s: closing.release_leftovers(s, offering.id))
    return f"offering:{offering.id}:mint:0", issuer, investors


async def _identities_indexed(w: World, count: int = 3) -> None:
    for _ in range(200):
        if len(await w.sql("SELECT 1 FROM identities WHERE registered")) >= count:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the registry's identities were not indexed")


async def test_offering_mints_through_the_agent_and_settles(world: World) -> None:  # noqa: F811
    w = world
    issuer, token_id, investors = await _seed(w)
    now = datetime.now(UTC)
    spec = offerings.OfferingSpec(
        token_id=token_id,
        name="Bond 2031 placement",
        quote_currency=QUOTE,
        price=Decimal("2.5"),
        min_ticket=Decimal(10),
        target=Decimal(100),
        hard_cap=Decimal(1000),
        opens_at=now - timedelta(minutes=1),
        closes_at=now + timedelta(hours=1),
        allocation_rule=AllocationRule.PRO_RATA,
        lot_size=Decimal("0.5"),
        fee_bps=50,
    )
    boss = Actor(issuer, frozenset({"ISSUER"}))
    async with running(w) as tasks:
        await _identities_indexed(w)  # subscriptions need the registry's identities indexed
        offering = await _unit(w, lambda s: offerings.create_offering(s, boss, spec))
        await _unit(w, lambda s: offerings.open_offering(s, boss, offering.id))
        for uid, amount in zip(investors, (600, 600, 300)):
            sub = await _unit(
                w,
                lambda s, uid=uid, amount=amount: subscriptions.subscribe(
                    s, Actor(uid, frozenset({"INVESTOR"})), subscriptions.SubscribeRequest(offering.id, Decimal(amount))
                ),
            )
            assert sub.state.value == "ACTIVE", sub.reason
        await _unit(w, lambda s: closing.close_offering(s, boss, offering.id))
        await _unit(w, lambda s: closing.release_leftovers(s, offering.id))
        ops = await w.wait_ops(
            lambda ops: (
                all(o["state"] == "CONFIRMED" for k, o in ops.items() if k.startswith("offering:"))
                and any(k.startswith("offering:") for k in ops)
            ),
            timeout=90,
            tasks=tasks,
        )
        # a direct issuance (below the threshold) and a redemption, through the same agent
        issued = await _unit(
            w,
            lambda s: direct.issue_tokens(
                s, boss, token_id, [direct.Line(investors[2], Decimal(7))], approval_threshold=Decimal(100)
            ),
        )
        await w.wait_ops(
            lambda ops: ops.get(f"issuance:{issued.id}:mint:0", {}).get("state") == "CONFIRMED", timeout=90, tasks=tasks
        )
        redeemed = await _unit(w, lambda s: direct.redeem_tokens(s, boss, token_id, investors[2], Decimal(2)))
        await w.wait_ops(
            lambda ops: ops.get(f"issuance:{redeemed.id}:burn:0", {}).get("state") == "CONFIRMED",
            timeout=90,
            tasks=tasks,
        )

    [op] = [o for k, o in ops.items() if k.startswith("offering:")]
    assert op["function"] == "batchMint" and len(op["tx_hashes"]) >= 1
    subs = {r["user_id"]: r for r in await w.sql("SELECT * FROM offering_subscriptions")}
    assert {r["state"] for r in subs.values()} == {"SETTLED"}
    # lots of 0.5 token at 1.25 USDT: demand 480 + 480 + 240 lots, hard cap 1000 USDT = 800 lots, so pro-rata
    # 320 / 320 / 160 lots = 160 / 160 / 80 tokens for 400 / 400 / 200 USDT
    assert [subs[u]["allocated_cash"] for u in investors] == [Decimal(400), Decimal(400), Decimal(200)]
    minted = [int(subs[u]["allocated_units"]) for u in investors]
    assert minted == [160 * 10**18, 160 * 10**18, 80 * 10**18]
    rows = await w.sql("SELECT state FROM offerings")
    assert [r["state"] for r in rows] == ["SETTLED"]
    # cash: investors paid exactly their allocation, the issuer got it less 0.5 %
    engine = create_async_engine(w.db_url)
    try:
        async with AsyncSession(engine) as s:
            got = {u: {b.currency: b for b in await ledger.balances(s, u)}[QUOTE] for u in [issuer, *investors]}
    finally:
        await engine.dispose()
    assert [(got[u].available, got[u].reserved) for u in investors] == [
        (Decimal(600), 0),
        (Decimal(600), 0),
        (Decimal(800), 0),
    ]
    assert got[issuer].available == Decimal(995)
    # the index agrees with the chain (what `rwa index verify` checks), supply included
    rpc = RpcClient([w.node.url], chain_id=1)
    engine = create_async_engine(w.db_url)
    try:
        report = await verify_token(engine, rpc, 1, w.d.stack.token.address)
    finally:
        await engine.dispose()
        await rpc.aclose()
    assert not report.mismatches
    assert report.total_supply == report.indexed_sum
    investor3 = w.d.accounts[3]
    final3 = await w.sql(
        "SELECT balance FROM holdings WHERE token_address = $1 AND holder = $2", w.d.stack.token.address, investor3
    )
    assert int(final3[0]["balance"]) == 85 * 10**18  # 80 allocated + 7 issued - 2 redeemed
    states = {r["kind"]: r["state"] for r in await w.sql("SELECT kind, state FROM token_issuances")}
    assert states == {"ISSUE": "SETTLED", "REDEEM": "SETTLED"}


async def test_close_during_a_reorg_mints_once_and_pays_once(world: World) -> None:  # noqa: F811
    w = world
    ref, _, _ = await _closed_first_come(w, {1: 50, 2: 50})
    w.node.mine(3)  # the reorg below must only remove blocks holding this test's mint
    async with running(w, miner=False) as tasks:
        ops = await w.wait_ops(lambda o: o[ref]["state"] == "MINED", tasks=tasks)
        gone = ops[ref]
        w.node.mine(1)
        w.node.reorg(2)  # the mint's block replaced by an empty one before it was final
        await w.wait_ops(lambda o: o[ref]["mined_block_hash"] not in (None, gone["mined_block_hash"]), tasks=tasks)
    async with running(w) as tasks:
        await w.wait_ops(lambda o: o[ref]["state"] == "CONFIRMED", tasks=tasks)
        for _ in range(100):  # the handler ran in the confirming transaction
            if [r["state"] for r in await w.sql("SELECT state FROM offerings")] == ["SETTLED"]:
                break
            await asyncio.sleep(0.1)
    assert [r["state"] for r in await w.sql("SELECT state FROM offerings")] == ["SETTLED"]
    from eth_utils import keccak

    topic = "0x" + keccak(text="Transfer(address,address,uint256)").hex()
    for account in w.d.accounts[2:4]:
        mints = w.node.rpc(
            "eth_getLogs",
            {
                "address": w.d.stack.token.address,
                "fromBlock": "0x0",
                "toBlock": "latest",
                "topics": [topic, "0x" + "0" * 64, "0x" + "0" * 24 + account[2:].lower()],
            },
        )
        assert len(mints) == 1  # minted exactly once, after the reorg
    assert {r["state"] for r in await w.sql("SELECT state FROM offering_subscriptions")} == {"SETTLED"}
    paid = await w.sql("SELECT count(*) AS n FROM ledger_transactions WHERE reference = $1", f"{ref}:settle")
    assert paid[0]["n"] == 1


async def test_a_mint_the_chain_refuses_releases_the_cash(world: World) -> None:  # noqa: F811
    w = world
    ref, issuer, investors = await _closed_first_come(w, {1: 40})
    # the investor's identity is deleted on chain after the close: the token refuses to mint to the wallet
    await transact(w.d.stack.registry.functions.deleteIdentity(w.d.accounts[2]), w.d.agent)
    async with running(w) as tasks:
        ops = await w.wait_ops(lambda o: o[ref]["state"] == "FAILED", tasks=tasks)
    assert ops[ref]["revert_reason"]
    [sub] = await w.sql("SELECT state, reason FROM offering_subscriptions")
    assert sub["state"] == "FAILED"
    engine = create_async_engine(w.db_url)
    try:
        async with AsyncSession(engine) as s:
            cash = {b.currency: b for b in await ledger.balances(s, investors[1])}[QUOTE]
            paid = {b.currency: b for b in await ledger.balances(s, issuer)}.get(QUOTE)
    finally:
        await engine.dispose()
    assert (cash.available, cash.reserved) == (Decimal(1000), 0) and paid is None
    assert [r["state"] for r in await w.sql("SELECT state FROM offerings")] == ["SETTLED"]
