"""Settlement of a trade, in the matching transaction.

Cash leg (at match time, in the ledger): buyer -> seller AVAILABLE, both fees -> the platform FEES account. A
resting (maker) buyer pays from its RESERVED cash; a taker buyer pays straight from AVAILABLE (the gate checked it
under the market lock, and reserving then releasing within one transaction would only cost statements) and only
the part of it that rests is reserved. If the ledger refuses, the whole placement rolls back (CONFLICT).

Token leg: a PENDING transfer instruction (seller wallet -> buyer wallet, raw units) and, in the same transaction,
its on-chain operation in the agent's outbox (kind "settlement.transfer", business_ref "settlement:<instruction id>":
SecurityToken.settlementTransfer(seller, buyer, units) signed by the token agent: an agent-executed transfer under
every rule of the token, so a pause, a frozen wallet, a receiver no longer verified or tokens moved away since the
match make it revert, unlike forcedTransfer's regulatory override). The trade's `settlement` follows it:
PENDING until the operation completes (agent/effects/settlement.py calls `apply_transfer_result` in the executor's
transaction): SETTLED when the transfer is indexed and final, FAILED (with the revert reason, the cash leg reversed,
an audit row) when it reverted or was canceled.

Fees are rounded down to the ledger's 18 places, so fills never consume more than a buy reserved
(`buy_reservation`, rounded up).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_CEILING, ROUND_DOWN, Decimal, localcontext
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import BadUserInput, NotFound
from core.transactions import transient_retry
from models.ledger import AccountKind
from models.trading import InstructionStatus, Market, SettlementInstruction, SettlementStatus, Side, Trade
from resolvers import ledger, unit_of_work
from resolvers.assets.validation import trim
from resolvers.audit import record
from resolvers.ledger import Platform, UserAccount
from resolvers.raw_sql import pg
from resolvers.trading.book import MarketSpec
from resolvers.trading.gate import to_units
from resolvers.trading.ids import new_id

log = logging.getLogger("rwa.trading")
QUANTUM = Decimal("1e-18")
BPS = Decimal(10000)


TRANSFER_KIND = "settlement.transfer"


def business_ref(instruction_id: uuid.UUID) -> str:
    return f"settlement:{instruction_id}"


def instruction_of(ref: str) -> uuid.UUID:
    """The instruction id of a settlement operation's business_ref."""
    return uuid.UUID(ref.removeprefix("settlement:"))


def fee(notional: Decimal, bps: int) -> Decimal:
    """Rounded toward zero: a fee never charges, and a rebate (negative bps) never pays, more than exact."""
    with localcontext(prec=100):
        return (notional * bps / BPS).quantize(QUANTUM, rounding=ROUND_DOWN)


def notional_of(price: Decimal, quantity: Decimal) -> Decimal:
    with localcontext(prec=100):
        return price * quantity


def buy_reservation(market: Market | MarketSpec, price: Decimal, quantity: Decimal) -> Decimal:
    bps = max(market.maker_fee_bps, market.taker_fee_bps)
    with localcontext(prec=100):
        return (price * quantity * (BPS + bps) / BPS).quantize(QUANTUM, rounding=ROUND_CEILING)


@dataclass(frozen=True)
class SettledTrade:
    id: uuid.UUID
    seq: int
    market_id: uuid.UUID
    taker_side: Side
    price: Decimal
    quantity: Decimal
    buyer_cost: Decimal  # what left the buyer's reservation: notional + buyer fee
    maker_fee: Decimal
    taker_fee: Decimal
    status: SettlementStatus
    created_at: datetime
    market_sequence: int = 0  # 1, 2, 3... per market (the trades stream's sequence)

    def event(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "sequence": self.market_sequence,
            "marketId": self.market_id,
            "takerSide": self.taker_side,
            "price": self.price,
            "quantity": self.quantity,
            "createdAt": self.created_at,
        }


def settlement_legs_cte(chain_id: str, token_address: str) -> str:
    """The token legs (`i`) and their agent operations (`op`) of the trades in CTE `f` (columns id, instruction,
    from_wallet, to_wallet, units, op), for TRADES_CTE and the sequencer's batch write (batch_sql.WRITE);
    ``chain_id``/``token_address`` name the statement's parameters."""
    return f"""
     i AS (INSERT INTO settlement_instructions (id, trade_id, chain_id, token_address, from_wallet, to_wallet, amount,
                                                status)
           SELECT f.instruction, f.id, {chain_id}, {token_address}, f.from_wallet, f.to_wallet, f.units, 'PENDING'
           FROM f WHERE f.from_wallet IS NOT NULL AND f.to_wallet IS NOT NULL),
     op AS (INSERT INTO chain_operations (id, kind, chain_id, contract, abi_name, function, args, value, signer,
                                          business_ref, state, attempts, tx_hashes)
            SELECT f.op, 'settlement.transfer', {chain_id}, {token_address}, 'SecurityToken', 'settlementTransfer',
                   jsonb_build_array(f.from_wallet, f.to_wallet, f.units::text), 0, 'agent',
                   'settlement:' || f.instruction::text, 'PENDING', 0, '{{}}'
            FROM f WHERE f.from_wallet IS NOT NULL AND f.to_wallet IS NOT NULL
            ON CONFLICT (business_ref) DO NOTHING)"""


# The trades of one incoming order, with their token legs (when both wallets are known) and the legs' agent operations,
# as the rest of one statement that first inserts the order itself (orders.py: the caller prepends its `o` CTE;
# $1 is the order's id, $2 its market, $5 its side, $16 the trades' time; `trades_params` are $17..$31): a trade's foreign
# keys (to the order, and the instruction's to the trade) are checked at the end of the statement, when all rows
# exist. Trades go in fill order (ORDER BY n), so the per-market trade sequence (a BEFORE INSERT trigger) follows it.
# The operation row is what agent.outbox.enqueue writes (a test compares them), inlined: enqueue's ORM insert + read
# back cost ~4-6 ms per trade on these machines, on the matching hot path.
TRADES_CTE = """
     f AS (SELECT * FROM unnest($17::uuid[], $18::uuid[], $19::uuid[], $20::uuid[], $21::numeric[], $22::numeric[],
                                $23::numeric[], $24::numeric[], $25::uuid[], $26::varchar[], $27::varchar[],
                                $28::numeric[], $29::uuid[])
                  WITH ORDINALITY AS f(id, maker, buyer, seller, price, quantity, maker_fee, taker_fee, instruction,
                                       from_wallet, to_wallet, units, op, n)),
     t AS (INSERT INTO trades (id, market_id, maker_order_id, taker_order_id, buyer_id, seller_id, taker_side, price,
                               quantity, maker_fee, taker_fee, settlement, created_at)
           SELECT f.id, $2, f.maker, $1, f.buyer, f.seller, $5, f.price, f.quantity, f.maker_fee, f.taker_fee,
                  'PENDING', $16
           FROM f ORDER BY f.n RETURNING id, seq, market_sequence),""" + settlement_legs_cte("$30", "$31")


@dataclass(frozen=True, slots=True)
class PricedFill:
    """One fill of an incoming order, priced (fees at each side's rate), with the ids of the rows it becomes."""

    trade_id: uuid.UUID
    maker_order_id: uuid.UUID
    buyer_id: uuid.UUID
    seller_id: uuid.UUID
    price: Decimal
    quantity: Decimal
    notional: Decimal
    maker_fee: Decimal
    taker_fee: Decimal
    from_wallet: str | None  # the token leg's wallets: both or neither (no instruction without both)
    to_wallet: str | None
    units: int
    instruction_id: uuid.UUID
    operation_id: uuid.UUID


def price_fill(
    market: Market | MarketSpec,
    *,
    maker_order_id: uuid.UUID,
    buyer_id: uuid.UUID,
    seller_id: uuid.UUID,
    price: Decimal,
    quantity: Decimal,
    buyer_wallet: str | None,
    seller_wallet: str | None,
    maker_fee_bps: int | None = None,
    taker_fee_bps: int | None = None,
) -> PricedFill:
    """The fees default to the market's; a designated market maker's tier may differ (a negative maker fee is a
    rebate, paid from the FEES account: the movement still balances)."""
    notional = notional_of(price, quantity)  # Numeric(38, 18) products need more than 28 digits
    both = bool(buyer_wallet and seller_wallet)
    return PricedFill(
        new_id(),
        maker_order_id,
        buyer_id,
        seller_id,
        price,
        quantity,
        notional,
        fee(notional, market.maker_fee_bps if maker_fee_bps is None else maker_fee_bps),
        fee(notional, market.taker_fee_bps if taker_fee_bps is None else taker_fee_bps),
        seller_wallet if both else None,
        buyer_wallet if both else None,
        to_units(quantity, market.base_decimals),
        new_id(),
        new_id(),
    )


def trades_params(market: Market | MarketSpec, fills: list[PricedFill]) -> tuple[Any, ...]:
    """TRADES_CTE's parameters $17..$31."""
    return (
        [f.trade_id for f in fills],
        [f.maker_order_id for f in fills],
        [f.buyer_id for f in fills],
        [f.seller_id for f in fills],
        [f.price for f in fills],
        [f.quantity for f in fills],
        [f.maker_fee for f in fills],
        [f.taker_fee for f in fills],
        [f.instruction_id for f in fills],
        [f.from_wallet for f in fills],
        [f.to_wallet for f in fills],
        [Decimal(f.units) for f in fills],
        [f.operation_id for f in fills],
        market.chain_id,
        market.token_address,
    )


def buyer_cost(fill: PricedFill, taker_side: Side) -> Decimal:
    """What the fill takes from the buyer: notional + the buyer's fee."""
    return fill.notional + (fill.taker_fee if taker_side is Side.BUY else fill.maker_fee)


def settle_movement(market: Market | MarketSpec, fill: PricedFill, taker_side: Side) -> ledger.Movement:
    """The fill's cash leg: buyer -> seller, both fees -> FEES. A taker buyer pays from AVAILABLE, a maker buyer from
    its RESERVED cash; the ledger refuses (CONFLICT, INSUFFICIENT_FUNDS) what a balance does not cover."""
    buyer_is_taker = taker_side is Side.BUY
    buyer_fee, seller_fee = (fill.taker_fee, fill.maker_fee) if buyer_is_taker else (fill.maker_fee, fill.taker_fee)
    buyer_pays_from = AccountKind.AVAILABLE if buyer_is_taker else AccountKind.RESERVED
    legs: list[tuple[ledger.AccountRef, Decimal]] = [
        (UserAccount(fill.buyer_id, buyer_pays_from), -(fill.notional + buyer_fee)),
        (UserAccount(fill.seller_id), fill.notional - seller_fee),
    ]
    if buyer_fee + seller_fee:
        legs.append((Platform(AccountKind.FEES), buyer_fee + seller_fee))
    details = {"market": str(market.id), "price": str(fill.price), "quantity": str(fill.quantity)}
    return ledger.Movement("SETTLE", f"trade:{fill.trade_id}:settle", legs, details)


def settled(
    market_id: uuid.UUID, fill: PricedFill, taker_side: Side, now: datetime, seq: int, market_sequence: int
) -> SettledTrade:
    return SettledTrade(
        fill.trade_id,
        seq,
        market_id,
        taker_side,
        fill.price,
        fill.quantity,
        buyer_cost(fill, taker_side),
        fill.maker_fee,
        fill.taker_fee,
        SettlementStatus.PENDING,
        now,
        market_sequence,
    )


MAX_FAILURE_REASON = 80


@transient_retry
async def record_transfer_result(
    session: AsyncSession,
    instruction_id: uuid.UUID,
    *,
    confirmed: bool,
    tx_hash: str | None = None,
    reason: str | None = None,
    actor_id: uuid.UUID | None = None,
    request_id: str | None = None,
) -> SettlementStatus:
    """`apply_transfer_result`, committed (a finished instruction changes nothing and rolls back)."""
    status, changed = await apply_transfer_result(
        session,
        instruction_id,
        confirmed=confirmed,
        tx_hash=tx_hash,
        reason=reason,
        actor_id=actor_id,
        request_id=request_id,
    )
    await (unit_of_work.commit(session) if changed else session.rollback())
    return status


def failure_reason(reason: str | None) -> str:
    """A revert reason as a trade's failure_reason: one line, at most MAX_FAILURE_REASON characters."""
    why = " ".join((reason or "TRANSFER_FAILED").split()) or "TRANSFER_FAILED"
    return why if len(why) <= MAX_FAILURE_REASON else why[: MAX_FAILURE_REASON - 3] + "..."


async def apply_transfer_result(
    session: AsyncSession,
    instruction_id: uuid.UUID,
    *,
    confirmed: bool,
    tx_hash: str | None = None,
    reason: str | None = None,
    actor_id: uuid.UUID | None = None,
    request_id: str | None = None,
) -> tuple[SettlementStatus, bool]:
    """The on-chain transfer of a trade completed: the instruction becomes CONFIRMED | FAILED and the trade
    SETTLED | FAILED (with `reason`, default TRANSFER_FAILED, and its cash compensated: `_reverse_cash`).
    Idempotent: a finished instruction does not change (returns its status and False). Does not commit."""
    why = None if confirmed else " ".join((reason or "TRANSFER_FAILED").split())
    if why is not None and not 0 < len(why) <= MAX_FAILURE_REASON:
        raise BadUserInput(f"reason must have 1 to {MAX_FAILURE_REASON} characters", field="reason")
    instruction = (
        await session.execute(
            select(SettlementInstruction).where(SettlementInstruction.id == instruction_id).with_for_update()
        )
    ).scalar_one_or_none()
    if instruction is None:
        raise NotFound("settlement instruction not found")
    if (done := instruction.status) in (InstructionStatus.CONFIRMED, InstructionStatus.FAILED):
        return (SettlementStatus.SETTLED if done is InstructionStatus.CONFIRMED else SettlementStatus.FAILED), False
    instruction.status = InstructionStatus.CONFIRMED if confirmed else InstructionStatus.FAILED
    instruction.tx_hash = tx_hash or instruction.tx_hash
    status = SettlementStatus.SETTLED if confirmed else SettlementStatus.FAILED
    trade = (
        await session.execute(select(Trade).where(Trade.id == instruction.trade_id).with_for_update())
    ).scalar_one()
    trade.settlement, trade.failure_reason = status, why
    if why is not None:
        reversal = await _reverse_cash(session, trade)
        log.warning("trade %s settlement FAILED (%s); cash reversed: %s", trade.id, why, reversal)
        record(
            session,
            actor_id=actor_id,
            action="trade.settlement_failed",
            target_type="trade",
            target_id=trade.id,
            request_id=request_id,
            details={"reason": why, "instruction": str(instruction.id), **reversal},
        )
    else:
        record(
            session,
            actor_id=actor_id,
            action="trade.settled",
            target_type="trade",
            target_id=trade.id,
            request_id=request_id,
            details={"instruction": str(instruction.id), "txHash": instruction.tx_hash},
        )
    await session.flush()
    return status, True


async def _reverse_cash(session: AsyncSession, trade: Trade) -> dict[str, str]:
    """Undo a failed trade's cash leg (the token never moved, and the seller's tokens were only held by the now
    FAILED instruction, which the gate stops counting): the buyer gets back what it paid (notional + its fee) as
    AVAILABLE cash (a still-open maker buy keeps exactly the reservation its remaining quantity needs), the FEES
    account gives back both fees, and the seller gives back what it received from AVAILABLE cash. What the seller
    no longer has (spent since) is booked to RECEIVABLES, owed to the platform, so the ledger still sums to zero and
    no user balance goes negative. Idempotent per trade (reference trade:<id>:reverse)."""
    currency = (await session.execute(select(Market.quote_currency).where(Market.id == trade.market_id))).scalar_one()
    notional = notional_of(trade.price, trade.quantity)
    buyer_fee, seller_fee = (
        (trade.taker_fee, trade.maker_fee) if trade.taker_side is Side.BUY else (trade.maker_fee, trade.taker_fee)
    )
    buyer, seller = UserAccount(trade.buyer_id), UserAccount(trade.seller_id)
    receivable, fees = Platform(AccountKind.RECEIVABLES), Platform(AccountKind.FEES)
    owed = notional - seller_fee
    balances = await ledger.locked_balances(session, currency, [buyer, seller, receivable, fees])
    taken = min(owed, balances[seller])
    legs: list[tuple[ledger.AccountRef, Decimal]] = [
        (buyer, notional + buyer_fee),
        (seller, -taken),
        (receivable, -(owed - taken)),
        (fees, -(buyer_fee + seller_fee)),
    ]
    await ledger.post(
        session,
        kind="SETTLE_REVERSAL",
        reference=f"trade:{trade.id}:reverse",
        currency=currency,
        legs=[(ref, amount) for ref, amount in legs if amount],
        details={"trade": str(trade.id), "market": str(trade.market_id)},
    )
    amounts = {
        "refundedToBuyer": notional + buyer_fee,
        "takenFromSeller": taken,
        "owedBySeller": owed - taken,
        "feesReversed": buyer_fee + seller_fee,
    }
    return {"currency": currency, **{k: str(trim(v)) for k, v in amounts.items()}}


async def release_reservation(
    session: AsyncSession, order_id: uuid.UUID, user_id: uuid.UUID, amount: Decimal, currency: str
) -> None:
    """Give back what a finished buy order still holds (once per order: the reference is idempotent)."""
    if amount > 0:
        await ledger.release(session, user_id, amount, currency, reference=f"order:{order_id}:release")


@dataclass(frozen=True)
class ChainLeg:
    """Where a trade's token leg is on chain: the transfer's tx hash and block (None until sent / mined), and the
    state of its operation (None when the trade has no on-chain leg)."""

    tx_hash: str | None
    block_number: int | None
    operation_state: str | None


_CHAIN_LEGS = """
SELECT s.trade_id, coalesce(o.mined_tx_hash, s.tx_hash, o.tx_hash) AS tx_hash,
       coalesce(o.mined_block, (SELECT min(tt.block_number) FROM token_transfers tt
                                WHERE tt.chain_id = s.chain_id AND tt.tx_hash = s.tx_hash)) AS block,
       o.state::text AS state
FROM settlement_instructions s
LEFT JOIN chain_operations o ON o.business_ref = 'settlement:' || s.id::text
WHERE s.trade_id = ANY($1::uuid[])"""


async def chain_legs(session: AsyncSession, trade_ids: list[uuid.UUID]) -> dict[uuid.UUID, ChainLeg]:
    """trade id -> its ChainLeg, for a page of trades in one statement."""
    if not trade_ids:
        return {}
    rows = await (await pg(session)).fetch(_CHAIN_LEGS, trade_ids)
    return {r["trade_id"]: ChainLeg(r["tx_hash"], r["block"], r["state"]) for r in rows}
