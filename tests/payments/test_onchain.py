"""Stablecoin payments end to end on anvil: the real indexer (in-process) writes token_transfers, the reconciler
matches them. Every test checks the ledger: credited at most once, balanced at all times."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from sqlalchemy import select

from indexer.service import backfill
from models.payments import OutgoingTransfer, PaymentState
from resolvers.payments.reconcile import expire_payments, reconcile_chain
from resolvers.payments.refunds import accept_late, refund
from tests.payments.conftest import INDEXER_CONFIG, USDC, Rig

S = PaymentState


async def reconcile(rig: Rig) -> None:
    await reconcile_chain(rig.factory, 1)


async def test_deposit_detected_then_confirmed_and_credited_once(rig: Rig) -> None:
    p = await rig.create("125.50")
    block = await rig.pay(p, 125_500_000)
    await rig.wait_indexed(block)
    await reconcile(rig)
    seen = await rig.payment(p.id)
    assert seen.state is S.DETECTED and seen.received_units == 125_500_000 and seen.final_units == 0
    assert await rig.credits(p.id) == 0 and await rig.available() == 0

    await rig.wait_final(block)
    await reconcile(rig)
    done = await rig.payment(p.id)
    assert done.state is S.CONFIRMED and done.credited_amount == Decimal("125.5") and done.confirmed_at
    assert await rig.available() == Decimal("125.5") and await rig.credits(p.id) == 1

    # duplicate passes, concurrent passes and a replayed indexer range change nothing
    await asyncio.gather(reconcile(rig), reconcile(rig), reconcile(rig))
    rig.stop.set()
    await rig.indexer  # type: ignore[misc]
    rig.indexer = None
    await backfill(rig.settings, 1, block - 2, block + 2, config=INDEXER_CONFIG)
    await reconcile(rig)
    assert await rig.credits(p.id) == 1 and await rig.available() == Decimal("125.5")
    assert await rig.scalar("SELECT count(*) FROM payment_matches WHERE payment_id = :p", p=p.id) == 1
    assert await rig.ledger_balanced()
    history = await rig.scalar(
        "SELECT string_agg(to_state, ',' ORDER BY id) FROM payment_transitions WHERE payment_id = :p", p=p.id
    )
    assert history == "AWAITING_FUNDS,DETECTED,CONFIRMED"


async def test_underpaid_waits_for_top_ups_that_sum(rig: Rig) -> None:
    p = await rig.create("100")
    b1 = await rig.pay(p, 60 * USDC)
    await rig.wait_final(b1)
    await reconcile(rig)
    assert (await rig.payment(p.id)).state is S.UNDERPAID and await rig.credits(p.id) == 0
    await rig.pay(p, 30 * USDC)
    b3 = await rig.pay(p, 10 * USDC)
    await rig.wait_indexed(b3)
    await reconcile(rig)
    assert (await rig.payment(p.id)).state is S.DETECTED  # full amount seen, not all final yet
    await rig.wait_final(b3)
    await reconcile(rig)
    done = await rig.payment(p.id)
    assert done.state is S.CONFIRMED and done.received_amount == 100 and await rig.available() == 100
    assert await rig.credits(p.id) == 1 and await rig.ledger_balanced()


async def test_overpaid_credits_the_intended_amount_and_flags_the_excess(rig: Rig) -> None:
    p = await rig.create("50")
    block = await rig.pay(p, 80 * USDC)
    await rig.wait_final(block)
    await reconcile(rig)
    done = await rig.payment(p.id)
    assert done.state is S.OVERPAID and done.credited_amount == 50 and done.refundable_amount == 30
    assert await rig.available() == 50 and await rig.credits(p.id) == 1
    assert (
        await rig.scalar(
            "SELECT balance FROM ledger_accounts WHERE owner_id IS NULL AND kind = 'REFUNDS_PAYABLE' "
            "AND currency = 'USDC'"
        )
        == 30
    )
    # ADMIN refunds the excess: an outgoing transfer back to the payer, the user's cash untouched
    async with rig.factory() as s:
        row, payment = await refund(s, p.id, Decimal(30), "overpayment", rig.user_id)
        await s.commit()
        out = (await s.execute(select(OutgoingTransfer).where(OutgoingTransfer.refund_id == row.id))).scalar_one()
    assert payment.state is S.PARTIALLY_REFUNDED and out.to_address == rig.payer and out.amount_units == 30 * USDC
    assert out.chain_id == 1 and out.token_address == rig.stablecoin.address and out.state == "PENDING"
    assert await rig.available() == 50 and await rig.ledger_balanced()


async def test_expired_without_funds_then_a_late_transfer_is_held_for_review(rig: Rig) -> None:
    p = await rig.create("20", expires_in=1)
    idle = await rig.create("5", expires_in=1)
    await asyncio.sleep(2.5)  # block timestamps have a 1 s resolution; the indexer polls past expiry + 1 s
    assert await expire_payments(rig.factory) == 2
    assert await expire_payments(rig.factory) == 0  # idempotent
    assert (await rig.payment(idle.id)).state is S.EXPIRED
    block = await rig.pay(p, 20 * USDC)
    await rig.wait_indexed(block)
    await reconcile(rig)
    assert (await rig.payment(p.id)).state is S.EXPIRED  # seen, not final: nothing decided yet
    await rig.wait_final(block)
    await reconcile(rig)
    late = await rig.payment(p.id)
    assert late.state is S.LATE and late.refundable_amount == 20 and await rig.credits(p.id) == 0
    assert await rig.available() == 0 and await rig.ledger_balanced()
    async with rig.factory() as s:  # reviewed and accepted: credited once
        await accept_late(s, p.id, rig.user_id, "customer paid a minute late")
        await s.commit()
    assert (await rig.payment(p.id)).state is S.CONFIRMED and await rig.available() == 20
    assert await rig.credits(p.id) == 1 and await rig.ledger_balanced()
    assert (await rig.payment(idle.id)).state is S.EXPIRED


async def test_underpaid_at_expiry_expires_with_the_funds_held(rig: Rig) -> None:
    p = await rig.create("40", expires_in=4)
    block = await rig.pay(p, 15 * USDC)
    await rig.wait_final(block)
    await reconcile(rig)
    assert (await rig.payment(p.id)).state is S.UNDERPAID
    await asyncio.sleep(5.5)  # expiry, plus the 1 s the indexer must have polled past it
    await expire_payments(rig.factory)
    gone = await rig.payment(p.id)
    assert gone.state is S.EXPIRED and gone.refundable_amount == 15 and await rig.credits(p.id) == 0
    assert await rig.ledger_balanced()


async def test_reorg_removing_the_deposit_returns_it_to_awaiting_funds(rig: Rig) -> None:
    p = await rig.create("70")
    rig.node.mine(5)  # keep the reorg away from the deployment and the mint
    block = await rig.pay(p, 70 * USDC)
    rig.node.mine(1)
    await rig.wait_indexed(block + 1)
    await reconcile(rig)
    assert (await rig.payment(p.id)).state is S.DETECTED
    rig.node.reorg(2)  # the transfer's block (head - 1) and the head are replaced; its tx is dropped
    await rig.wait_indexed(block + 1)

    async def dropped() -> bool:
        return await rig.scalar("SELECT count(*) FROM token_transfers WHERE to_address = :a", a=p.deposit_address) == 0

    await rig.wait(dropped)
    await reconcile(rig)
    back = await rig.payment(p.id)
    assert back.state is S.AWAITING_FUNDS and back.received_units == 0 and await rig.credits(p.id) == 0
    assert await rig.scalar("SELECT count(*) FROM payment_matches WHERE payment_id = :p", p=p.id) == 0
    rig.node.mine(12)
    await rig.wait_final(rig.node.block_number() - 9)
    await reconcile(rig)
    assert (await rig.payment(p.id)).state is S.AWAITING_FUNDS and await rig.available() == 0
    # paid again for real: confirmed and credited once
    again = await rig.pay(p, 70 * USDC)
    await rig.wait_final(again)
    await reconcile(rig)
    assert (await rig.payment(p.id)).state is S.CONFIRMED and await rig.credits(p.id) == 1
    assert await rig.available() == 70 and await rig.ledger_balanced()


async def test_a_transfer_mined_before_expiry_is_not_expired_by_indexer_lag(rig: Rig) -> None:
    """The transfer landed on time but the reconciler had not run when the expiry job did: not EXPIRED/LATE."""
    p = await rig.create("12", expires_in=3)
    block = await rig.pay(p, 12 * USDC)
    await rig.wait_indexed(block)
    await asyncio.sleep(4.5)
    assert await expire_payments(rig.factory) == 0
    await rig.wait_final(block)
    await reconcile(rig)
    assert (await rig.payment(p.id)).state is S.CONFIRMED and await rig.credits(p.id) == 1
