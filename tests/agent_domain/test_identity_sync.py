"""The identity registries follow KYC (resolvers/identity/registry_sync.py): decisions enqueue versioned register/
delete operations, never two in flight for one (registry, wallet), and the completion handler re-checks the desired
state so approve -> suspend -> re-approve ends registered whatever the timing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select, update

from models.identity import KycCase, KycStatus, Wallet
from models.operations import ChainOperation, OperationState
from models.tokens import IdentityEntry
from resolvers.identity import registry_sync
from resolvers.identity.kyc import expire_lapsed
from resolvers.identity.registry_sync import onchain_identity, reconcile, sync_wallets
from tests.agent_domain.helpers import complete
from tests.trading.factories import make_market, make_trader


async def ops_of(session, wallet: str) -> list[ChainOperation]:  # type: ignore[no-untyped-def]
    return list(
        (
            await session.execute(
                select(ChainOperation)
                .where(ChainOperation.business_ref.like("identity:%:" + wallet + ":%"))
                .order_by(ChainOperation.created_at)
                .execution_options(populate_existing=True)
            )
        ).scalars()
    )


async def set_kyc(session, user_id, status: KycStatus) -> None:  # type: ignore[no-untyped-def]
    await session.execute(
        update(KycCase)
        .where(KycCase.user_id == user_id)
        .values(status=status, country="FR", expires_at=datetime(2100, 1, 1, tzinfo=UTC))
    )


async def investor(session_factory, session, m, registered: bool):  # type: ignore[no-untyped-def]
    t = await make_trader(session_factory, m, registered=registered)
    await set_kyc(session, t.user_id, KycStatus.APPROVED)
    return t


async def index_identity(session, m, wallet: str, registered: bool) -> None:  # type: ignore[no-untyped-def]
    entry = await session.get(IdentityEntry, (m.chain_id, m.registry, wallet))
    entry.registered = registered
    await session.flush()


async def test_approved_wallet_is_registered_with_its_country(session_factory, session):  # type: ignore[no-untyped-def]
    m = await make_market(session_factory)
    t = await make_trader(session_factory, m, registered=False)
    await session.execute(update(KycCase).where(KycCase.user_id == t.user_id).values(country="DE"))
    [op] = await sync_wallets(session, [t.wallet])
    assert (op.kind, op.function, op.contract, op.chain_id) == (
        "identity.register",
        "registerIdentity",
        m.registry,
        m.chain_id,
    )
    assert op.args == [t.wallet, onchain_identity(t.user_id), "276"]
    assert op.business_ref == f"identity:{m.chain_id}:{m.registry}:{t.wallet}:1"
    # a second decision while it is in flight adds nothing
    assert await sync_wallets(session, [t.wallet]) == []


async def test_approve_suspend_reapprove_while_in_flight_ends_registered(session_factory, session):  # type: ignore[no-untyped-def]
    m = await make_market(session_factory)
    t = await investor(session_factory, session, m, registered=False)
    [register] = await sync_wallets(session, [t.wallet])
    await set_kyc(session, t.user_id, KycStatus.SUSPENDED)
    assert await sync_wallets(session, [t.wallet]) == []  # waits for the register in flight
    # the register lands; the handler sees SUSPENDED and queues the delete (version 2)
    await index_identity(session, m, t.wallet, True)
    await complete(session, register, confirmed=True)
    [_, delete_op] = await ops_of(session, t.wallet)
    assert (delete_op.kind, delete_op.business_ref[-2:]) == ("identity.delete", ":2")
    await set_kyc(session, t.user_id, KycStatus.APPROVED)
    assert await sync_wallets(session, [t.wallet]) == []  # the delete is in flight
    await index_identity(session, m, t.wallet, False)
    await complete(session, delete_op, confirmed=True)
    ops = await ops_of(session, t.wallet)
    assert [o.kind for o in ops] == ["identity.register", "identity.delete", "identity.register"]
    assert ops[-1].business_ref.endswith(":3") and ops[-1].state is OperationState.PENDING


async def test_burst_collapses_to_no_operation(session_factory, session):  # type: ignore[no-untyped-def]
    """approve -> suspend -> re-approve while the register is in flight: the register suffices."""
    m = await make_market(session_factory)
    t = await investor(session_factory, session, m, registered=False)
    [register] = await sync_wallets(session, [t.wallet])
    await set_kyc(session, t.user_id, KycStatus.SUSPENDED)
    await sync_wallets(session, [t.wallet])
    await set_kyc(session, t.user_id, KycStatus.APPROVED)
    await sync_wallets(session, [t.wallet])
    await index_identity(session, m, t.wallet, True)
    await complete(session, register, confirmed=True)
    assert [o.kind for o in await ops_of(session, t.wallet)] == ["identity.register"]


async def test_failed_operation_does_not_loop(session_factory, session):  # type: ignore[no-untyped-def]
    m = await make_market(session_factory)
    t = await investor(session_factory, session, m, registered=False)
    [register] = await sync_wallets(session, [t.wallet])
    await complete(session, register, confirmed=False, reason="caller is not an agent")
    assert len(await ops_of(session, t.wallet)) == 1
    # neither a later decision nor the reconcile re-sends the same change at once...
    assert await sync_wallets(session, [t.wallet]) == []
    assert await reconcile(session) == 0
    # ...but after the back-off they do
    later = datetime.now(UTC) + registry_sync.RETRY_FAILED_AFTER + timedelta(seconds=1)
    assert await reconcile(session, now=later) == 1
    assert [o.business_ref[-2:] for o in await ops_of(session, t.wallet)] == [":1", ":2"]


async def test_unlink_and_expiry_delete_only_what_the_platform_registered(session_factory, session):  # type: ignore[no-untyped-def]
    m = await make_market(session_factory)
    t = await investor(session_factory, session, m, registered=True)  # registered, KYC approved: nothing to do
    assert await sync_wallets(session, [t.wallet]) == []
    await session.execute(delete(Wallet).where(Wallet.address == t.wallet))
    # unlinked, but the platform never registered it (no operation of ours): left alone
    assert await sync_wallets(session, [t.wallet]) == []
    # a linked wallet whose approval lapsed: the expiry job deletes it
    u = await investor(session_factory, session, m, registered=True)
    await session.execute(
        update(KycCase).where(KycCase.user_id == u.user_id).values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
    )
    assert await expire_lapsed(session) >= 1
    [op] = await ops_of(session, u.wallet)
    assert (op.kind, op.args) == ("identity.delete", [u.wallet])


async def test_reconcile_registers_approved_wallets_in_a_new_registry(session_factory, session):  # type: ignore[no-untyped-def]
    m = await make_market(session_factory)
    t = await investor(session_factory, session, m, registered=True)
    other = await make_market(session_factory)  # a new token with its own registry
    assert await reconcile(session) >= 1
    ops = await ops_of(session, t.wallet)
    assert [(o.kind, o.contract) for o in ops] == [("identity.register", other.registry)]
    assert await reconcile(session) == 0 or all(
        o.contract != other.registry for o in (await ops_of(session, t.wallet))[1:]
    )


async def test_registered_with_another_country_is_updated(session_factory, session):  # type: ignore[no-untyped-def]
    m = await make_market(session_factory)
    t = await investor(session_factory, session, m, registered=True)  # KYC country FR (250)
    entry = await session.get(IdentityEntry, (m.chain_id, m.registry, t.wallet))
    entry.country = 840
    await session.flush()
    assert await reconcile(session) == 1
    [op] = await ops_of(session, t.wallet)
    assert (op.kind, op.function, op.args) == ("identity.update_country", "updateCountry", [t.wallet, "250"])
    entry.country = 250
    await session.flush()
    await complete(session, op, confirmed=True)
    assert len(await ops_of(session, t.wallet)) == 1 and await reconcile(session) == 0
    # a country the indexer could not read (NULL) is left alone
    entry.country = None
    await session.flush()
    assert await sync_wallets(session, [t.wallet]) == [] and await reconcile(session) == 0
