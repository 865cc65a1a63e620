"""Compliance actions on chain (COMPLIANCE): freeze/unfreeze a wallet on a token (whole: setAddressFrozen; partial:
freezePartialTokens/unfreezePartialTokens) and pause/unpause a token. Each is one agent operation (kind
"compliance.<action>", signed by the token agent) with an audit row, enqueued in the caller's transaction; the API
shows the result only once the indexer has stored the event (holdings.frozen / frozen_amount, tokens.paused).

Rules, checked against the indexed state: pausing a paused token, unpausing an unpaused one, freezing a frozen wallet,
unfreezing one that is not frozen (CONFLICT), freezing more than the wallet's unfrozen balance or unfreezing more than
it has frozen (BAD_USER_INPUT) are refused rather than sent for nothing or to revert. One action at a time per (token, subject): another one still in flight is CONFLICT
OPERATION_IN_FLIGHT (the second would be estimated against the state before the first, and could revert).
`idempotencyKey` (optional, per token and subject): the same key returns the operation it created.
"""

from __future__ import annotations

import enum
import uuid
from decimal import Decimal, InvalidOperation

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from agent.outbox import enqueue
from core.errors import BadUserInput, Conflict, NotFound
from models.operations import UNDER_WAY_STATE_NAMES, ChainOperation
from models.tokens import Holding, Token, TokenKind
from resolvers.audit import record
from resolvers.idempotency_keys import check_key
from resolvers.identity.wallets import checksum
from resolvers.raw_sql import pg


class Action(str, enum.Enum):
    FREEZE = "freeze"
    UNFREEZE = "unfreeze"
    FREEZE_PARTIAL = "freeze_partial"
    UNFREEZE_PARTIAL = "unfreeze_partial"
    PAUSE = "pause"
    UNPAUSE = "unpause"


FUNCTION = {
    Action.FREEZE: "setAddressFrozen",
    Action.UNFREEZE: "setAddressFrozen",
    Action.FREEZE_PARTIAL: "freezePartialTokens",
    Action.UNFREEZE_PARTIAL: "unfreezePartialTokens",
    Action.PAUSE: "pause",
    Action.UNPAUSE: "unpause",
}
MAX_KEY = 64
MAX_REASON = 500
OPEN = UNDER_WAY_STATE_NAMES


def _reason(reason: str) -> str:
    why = " ".join((reason or "").split())
    if not 1 <= len(why) <= MAX_REASON:
        raise BadUserInput(f"reason must have 1 to {MAX_REASON} characters", field="reason")
    return why


def _units(amount: Decimal | None, decimals: int) -> int:
    try:
        if amount is None or not amount.is_finite() or amount <= 0:
            raise BadUserInput("amount must be a positive number of tokens", field="amount")
        exponent = amount.normalize().as_tuple().exponent
    except InvalidOperation as exc:
        raise BadUserInput("amount is not a number", field="amount") from exc
    if isinstance(exponent, int) and -exponent > decimals:
        raise BadUserInput(f"amount has more than the token's {decimals} decimals", field="amount")
    units = int(amount.scaleb(decimals))
    if units >= 2**256:
        raise BadUserInput("amount is too large", field="amount")
    return units


async def act(
    session: AsyncSession,
    action: Action,
    token_id: uuid.UUID,
    *,
    actor_id: uuid.UUID,
    reason: str,
    wallet: str | None = None,
    amount: Decimal | None = None,
    idempotency_key: str | None = None,
    request_id: str | None = None,
) -> ChainOperation:
    """Queue one compliance action (see the module docstring). Does not commit."""
    why = _reason(reason)
    check_key(idempotency_key, field="idempotencyKey", max_chars=MAX_KEY)
    token = (await session.execute(select(Token).where(Token.id == token_id).with_for_update())).scalar_one_or_none()
    if token is None:
        raise NotFound("token not found", field="tokenId")
    if token.kind is not TokenKind.SECURITY:
        raise BadUserInput("only security tokens are frozen or paused by compliance", field="tokenId")
    on_token = action in (Action.PAUSE, Action.UNPAUSE)
    if on_token:
        subject, args = "token", []
    else:
        if not wallet:
            raise BadUserInput("wallet is required", field="wallet")
        subject = checksum(wallet)
    prefix = f"compliance:{token.chain_id}:{token.address}:{subject}:"
    ref = f"{prefix}{action.value}:{idempotency_key or uuid.uuid4()}"
    existing = (
        await session.execute(select(ChainOperation).where(ChainOperation.business_ref == ref))
    ).scalar_one_or_none()
    if existing is not None:
        return existing
    conn = await pg(session)
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", prefix)
    if await conn.fetchval(
        "SELECT count(*) FROM chain_operations WHERE business_ref LIKE $1 || '%' AND state::text = ANY($2::text[])",
        prefix,
        list(OPEN),
    ):
        raise Conflict(
            "another compliance action on this token and subject is still on its way to the chain",
            reason="OPERATION_IN_FLIGHT",
        )
    holding = None if on_token else await session.get(Holding, (token.chain_id, token.address, subject))
    units = 0
    if action is Action.PAUSE and token.paused:
        raise Conflict("the token is already paused", reason="ALREADY_PAUSED")
    if action is Action.UNPAUSE and not token.paused:
        raise Conflict("the token is not paused", reason="NOT_PAUSED")
    frozen_flag = bool(holding.frozen) if holding is not None else False
    if action is Action.FREEZE:
        if frozen_flag:
            raise Conflict("the wallet is already frozen on this token", reason="ALREADY_FROZEN")
        args = [subject, True]
    elif action is Action.UNFREEZE:
        if not frozen_flag:
            raise Conflict("the wallet is not frozen on this token", reason="NOT_FROZEN")
        args = [subject, False]
    elif action is Action.FREEZE_PARTIAL:
        units = _units(amount, token.decimals)
        free = int(holding.balance) - int(holding.frozen_amount) if holding else 0
        if units > free:
            raise BadUserInput("amount exceeds the wallet's unfrozen balance", field="amount", available=str(free))
        args = [subject, units]
    elif action is Action.UNFREEZE_PARTIAL:
        units = _units(amount, token.decimals)
        frozen = int(holding.frozen_amount) if holding else 0
        if units > frozen:
            raise BadUserInput("amount exceeds the wallet's frozen tokens", field="amount", frozen=str(frozen))
        args = [subject, units]
    op = await enqueue(
        session,
        kind=f"compliance.{action.value}",
        chain_id=token.chain_id,
        contract=token.address,
        abi_name="SecurityToken",
        function=FUNCTION[action],
        args=args,
        business_ref=ref,
        actor_id=actor_id,
    )
    details = {"chainId": token.chain_id, "token": token.address, "reason": why, "operation": str(op.id)}
    if not on_token:
        details["wallet"] = subject
    if units:
        details["units"] = str(units)
    record(
        session,
        actor_id=actor_id,
        action=f"compliance.{action.value}",
        target_type="token",
        target_id=token.id,
        request_id=request_id,
        details=details,
    )
    await session.flush()
    return op
