"""Deposit sweeps: only CONFIRMED/OVERPAID payments' addresses, not below the dust threshold, gas topped up from the
treasury first, one operation in flight per address, swept by the deposit key to the treasury."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from core.settings import Environment, Settings
from jobs.sweeps import signing_price
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


async def test_refunded_payments_are_swept_too(session_factory, session):  # type: ignore[no-untyped-def]
    """refundPayment pays the payer from the treasury. A payment refunded before a sweep pass reached it (on rwa
    dev: OVERPAID, refunded 2 s later) was never swept: 15 USDC stayed on its deposit address while the treasury
    had paid 15 out."""
    base = 8_000_000
    refunded = await deposit(session_factory, session, PaymentState.REFUNDED, 15 * 10**6, base + 1)
    partly = await deposit(session_factory, session, PaymentState.PARTIALLY_REFUNDED, 20 * 10**6, base + 2)

    async def balance(_: int, address: str) -> int:
        return 10**18

    async def price(_: int) -> int:
        return 10**9

    assert await sweep_pass(session, Decimal(1), lambda _: TREASURY, balance, price, chain_id=1) == {
        "topups": 0,
        "sweeps": 2,
    }
    assert (await op_by_ref(session, f"sweep:1:{refunded}:1")).args == [TREASURY, str(15 * 10**6)]
    assert (await op_by_ref(session, f"sweep:1:{partly}:1")).args == [TREASURY, str(20 * 10**6)]


class QuotingNode:
    """The three quotes signing_price reads: latest block (base fee), eth_gasPrice, eth_maxPriorityFeePerGas."""

    def __init__(self, base_fee: int | None, gas_price: int, tip: int | None) -> None:
        self.answers = [
            {"number": "0x10", **({"baseFeePerGas": hex(base_fee)} if base_fee is not None else {})},
            hex(gas_price),
            hex(tip) if tip is not None else RuntimeError("method not found"),
        ]

    async def batch(self, calls, return_exceptions: bool = False):  # type: ignore[no-untyped-def]
        assert [c[0] for c in calls] == ["eth_getBlockByNumber", "eth_gasPrice", "eth_maxPriorityFeePerGas"]
        return self.answers


@pytest.mark.parametrize(
    ("chain_id", "node", "sweep_fee"),
    [
        # anvil as Polygon (rwa dev's chain 137): the node quotes 1 gwei, the agent tips the spec's 30 gwei
        (137, QuotingNode(base_fee=7, gas_price=1_000_000_007, tip=1_000_000_000), 30 * 10**9 + 14),
        (1, QuotingNode(base_fee=20 * 10**9, gas_price=21 * 10**9, tip=None), 42 * 10**9),
        (56, QuotingNode(base_fee=None, gas_price=3 * 10**9, tip=None), 3 * 10**9),  # legacy gas price
    ],
)
async def test_a_topup_pays_for_the_sweep_the_agent_signs(chain_id: int, node: QuotingNode, sweep_fee: int) -> None:
    """The top-up was priced with eth_gasPrice; the agent signs at 2 x base fee + the chain's tip. On rwa dev's
    Polygon chain a deposit got 0.00024 of the 0.0015 its sweep (50,942 gas at 30 gwei) needed: the broadcast was
    refused ("insufficient funds for gas") on every retry, and the open sweep blocked any further top-up."""
    settings = Settings(RWA_ENV=Environment.TEST)
    price = await signing_price(node, settings, chain_id)
    assert price == sweep_fee
    topped_up = TRANSFER_GAS * FEE_HEADROOM * price  # what sweep_pass sends an empty deposit address
    assert topped_up >= 52_000 * sweep_fee  # a stablecoin transfer's gas at the price the agent signs
