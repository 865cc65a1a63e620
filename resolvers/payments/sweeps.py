"""Deposit sweeps: the stablecoin on CONFIRMED payments' deposit addresses moves to the treasury.

A pass (jobs/sweeps.py, periodic) takes the deposit addresses of STABLECOIN payments in CONFIRMED or OVERPAID (the
funds are final and credited), or REFUNDED / PARTIALLY_REFUNDED (the treasury paid the refund; a payment in any
other state, e.g. DETECTED, UNDERPAID, LATE or EXPIRED, is never touched) whose indexed token balance is at least SWEEP_MIN_AMOUNT (dust stays until more arrives) and that have no
sweep or top-up operation in flight, and for each:

    the address lacks gas for one transfer  -> "gas.topup": the treasury sends it what it lacks (a value transfer)
    otherwise                               -> "sweep.deposit": Stablecoin.transfer(treasury, whole balance), signed
                                               by the deposit key (HD index, signer "deposit:<index>")

One pass queues all its operations in one transaction (the agent sends each signer's operations in a batch); the
next pass sweeps the addresses whose top-up has landed. Business refs: "gas:<chain>:<address>:<n>",
"sweep:<chain>:<address>:<n>".
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from agent.outbox import enqueue
from models.operations import UNDER_WAY_STATE_NAMES
from resolvers.raw_sql import pg

TRANSFER_GAS = 80_000  # a stablecoin transfer uses ~35-52k, estimated with the agent's margin
# the agent signs at maxFeePerGas (about 2 x base fee + tip) and may bump it: the node wants gas x max fee up front
FEE_HEADROOM = 3
# REFUNDED / PARTIALLY_REFUNDED too: a refund is paid by the treasury, so what the payer sent is the platform's
# whatever the refund; left out, a payment refunded before a pass reached it (seconds after OVERPAID, or a LATE or
# EXPIRED one refunded after review) kept its funds on the deposit address for good
SWEEPABLE = ("CONFIRMED", "OVERPAID", "REFUNDED", "PARTIALLY_REFUNDED")
# REPLACED too (an operator's cancel under way): the original sweep may still land, so no second one behind it
_OPEN = UNDER_WAY_STATE_NAMES


@dataclass(frozen=True)
class Candidate:
    chain_id: int
    token: str
    address: str
    index: int
    units: int
    versions: int


_CANDIDATES = """
SELECT p.chain_id, p.token_address, p.deposit_address, p.derivation_index, h.balance,
       (SELECT count(*) FROM chain_operations o
        WHERE o.business_ref LIKE 'sweep:' || p.chain_id || ':' || p.deposit_address || ':%'
           OR o.business_ref LIKE 'gas:' || p.chain_id || ':' || p.deposit_address || ':%') AS versions
FROM payments p
JOIN holdings h ON h.chain_id = p.chain_id AND h.token_address = p.token_address AND h.holder = p.deposit_address
WHERE p.method = 'STABLECOIN' AND p.state::text = ANY($1::text[]) AND ($2::int IS NULL OR p.chain_id = $2)
  AND h.balance > 0 AND h.balance >= $3 * power(10::numeric, p.decimals)
  AND NOT EXISTS (SELECT 1 FROM chain_operations o
                  WHERE (o.business_ref LIKE 'sweep:' || p.chain_id || ':' || p.deposit_address || ':%'
                         OR o.business_ref LIKE 'gas:' || p.chain_id || ':' || p.deposit_address || ':%')
                    AND o.state::text = ANY($4::text[]))
ORDER BY p.chain_id, h.balance DESC
LIMIT $5"""


async def candidates(
    session: AsyncSession, min_amount: Decimal, *, chain_id: int | None = None, limit: int = 200
) -> list[Candidate]:
    rows = await (await pg(session)).fetch(_CANDIDATES, list(SWEEPABLE), chain_id, min_amount, list(_OPEN), limit)
    return [Candidate(r[0], r[1], r[2], int(r[3]), int(r[4]), int(r[5])) for r in rows]


async def sweep_pass(
    session: AsyncSession,
    min_amount: Decimal,
    treasury: Callable[[int], str],
    native_balance: Callable[[int, str], Awaitable[int]],
    gas_price: Callable[[int], Awaitable[int]],
    *,
    chain_id: int | None = None,
) -> dict[str, int]:
    """Queue the top-ups and sweeps one pass needs (see the module docstring). Does not commit. Returns counts."""
    queued = {"topups": 0, "sweeps": 0}
    for c in await candidates(session, min_amount, chain_id=chain_id):
        need = TRANSFER_GAS * FEE_HEADROOM * await gas_price(c.chain_id)
        have = await native_balance(c.chain_id, c.address)
        n = c.versions + 1
        if have < need:
            await enqueue(
                session,
                kind="gas.topup",
                chain_id=c.chain_id,
                contract=c.address,
                abi_name="",
                function="",
                args=[],
                value=need - have,
                signer="treasury",
                business_ref=f"gas:{c.chain_id}:{c.address}:{n}",
            )
            queued["topups"] += 1
        else:
            await enqueue(
                session,
                kind="sweep.deposit",
                chain_id=c.chain_id,
                contract=c.token,
                abi_name="Stablecoin",
                function="transfer",
                args=[treasury(c.chain_id), c.units],
                signer=f"deposit:{c.index}",
                business_ref=f"sweep:{c.chain_id}:{c.address}:{n}",
            )
            queued["sweeps"] += 1
    return queued
