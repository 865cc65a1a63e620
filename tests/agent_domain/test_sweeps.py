"""Deposit sweeps: only CONFIRMED/OVERPAID payments' addresses, not below the dust threshold, gas topped up from the
treasury first, one operation in flight per address, swept by the deposit key to the treasury."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from models.operations import OperationState
from models.payments import Payment, PaymentMethod, PaymentState
from models.tokens import Holding
from resolvers.payments.sweeps import FEE_HEADROOM, TRANSFER_GAS, sweep_pass
from tests.agent_domain.helpers import complete, op_by_ref
from tests.trading.factories import make_user, random_address

TOKEN, TREASURY = random_address(), random_address()


async def deposit(session_factory, session, state: PaymentState, units: int, index: int) -> str:  # type: ignore[no-untyped-def]
    user = await make_user(session_factory)
    address = random_address()
    session.add(
        Payment(
            id=uuid.uuid4(),
            user_id=user,
            method=PaymentMethod.STABLECOIN,
            state=state,
            amount=Decimal(1),
            currency="USDC",
            idempotency_key=f"k{index}",
            chain_id=1,
            token_address=TOKEN,
            decimals=6,
            deposit_address=address,
            derivation_index=index,
            amount_units=units,
            expires_at=datetime.now(UTC) + timedelta(hours=1),
        )
    )
    session.add(Holding(chain_id=1, token_address=TOKEN, holder=address, balance=units, updated_block=1))
    await session.flush()
    return address


async def test_sweep_pass(session_factory, session):  # type: ignore[no-untyped-def]
    base = 7_000_000
    ok = await deposit(session_factory, session, PaymentState.CONFIRMED, 50 * 10**6, base + 1)
    over = await deposit(session_factory, session, PaymentState.OVERPAID, 3 * 10**6, base + 2)
    dust = await deposit(session_factory, session, PaymentState.CONFIRMED, 999_999, base + 3)
    for state in (
        PaymentState.DETECTED,
        PaymentState.UNDERPAID,
        PaymentState.LATE,
        PaymentState.EXPIRED,
        PaymentState.AWAITING_FUNDS,
    ):
        await deposit(session_factory, session, state, 100 * 10**6, base + 10 + list(PaymentState).index(state))
    gas: dict[str, int] = {over: 10**18}

    async def balance(_: int, address: str) -> int:
        return gas.get(address, 0)

    async def price(_: int) -> int:
        return 10**9

    queued = await sweep_pass(session, Decimal(1), lambda _: TREASURY, balance, price, chain_id=1)
    assert queued == {"topups": 1, "sweeps": 1}
    topup = await op_by_ref(session, f"gas:1:{ok}:1")
    assert (topup.kind, topup.signer, topup.contract, int(topup.value)) == (
        "gas.topup",
        "treasury",
        ok,
        TRANSFER_GAS * FEE_HEADROOM * 10**9,
    )
    sweep = await op_by_ref(session, f"sweep:1:{over}:1")
    assert (sweep.signer, sweep.function, sweep.args) == (f"deposit:{base + 2}", "transfer", [TREASURY, "3000000"])
    # in flight: nothing more; dust and unconfirmed payments never
    assert await sweep_pass(session, Decimal(1), lambda _: TREASURY, balance, price, chain_id=1) == {
        "topups": 0,
        "sweeps": 0,
    }
    assert dust not in str([topup.business_ref, sweep.business_ref])
    # the top-up landed: the next pass sweeps that address
    await complete(session, topup, confirmed=True)
    assert topup.state is OperationState.CONFIRMED
    gas[ok] = TRANSFER_GAS * FEE_HEADROOM * 10**9
    assert await sweep_pass(session, Decimal(1), lambda _: TREASURY, balance, price, chain_id=1) == {
        "topups": 0,
        "sweeps": 1,
    }
    assert (await op_by_ref(session, f"sweep:1:{ok}:2")).args == [TREASURY, str(50 * 10**6)]
