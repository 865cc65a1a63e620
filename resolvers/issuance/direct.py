"""Direct issuance and redemption, for the cases without an offering (a fund's in-kind transfer, a corporate action,
a redemption at maturity).

- issue: the asset's ISSUER mints quantities to named investors (each needs a linked wallet that the token's
  identity registry lists). Up to the approval threshold (ISSUANCE_APPROVAL_THRESHOLD whole tokens) it goes to the
  agent at once (SUBMITTED); above it, it waits for COMPLIANCE (PENDING_APPROVAL -> approve -> SUBMITTED, or
  REJECTED). Mints are `batchMint` operations (kind "issuance.mint", business_ref "issuance:<id>:mint:<n>").
- redeem: the ISSUER (or ADMIN) burns an investor's tokens (`burn`, kind "issuance.burn") while the asset is
  ACTIVE, SUSPENDED or REDEEMING; when the last token of a REDEEMING asset is burned, the asset is RETIRED.
The issuance is SETTLED when all its operations are confirmed (indexed and final), FAILED if one failed.
Idempotent per (requester, clientKey). Nothing here commits.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from agent.outbox import enqueue
from core.errors import BadUserInput, Conflict, NotFound
from models.assets import Asset, AssetStatus, AssetTransition
from models.identity import Role
from models.issuance import IssuanceKind, IssuanceState, TokenIssuance, TokenIssuanceLine
from models.operations import ChainOperation, OperationState
from models.tokens import Holding, Token, TokenKind
from resolvers.audit import record
from resolvers.idempotency_keys import check_key
from resolvers.issuance.closing import MINT_BATCH
from resolvers.issuance.offerings import Actor, _check_issuer
from resolvers.raw_sql import pg
from resolvers.trading.gate import to_units
from resolvers.trading.markets import _places

MAX_LINES = 5000
MAX_REASON = 200
ISSUE_KIND = "issuance.mint"
BURN_KIND = "issuance.burn"

# each user's first linked wallet that the token's registry lists and that is not frozen
_WALLETS = """
SELECT DISTINCT ON (wa.user_id) wa.user_id, wa.address FROM wallets wa
JOIN tokens t ON t.id = $2
JOIN identities ie ON ie.investor = wa.address AND ie.chain_id = t.chain_id
                      AND ie.registry_address = t.identity_registry AND ie.registered
LEFT JOIN holdings h ON h.holder = wa.address AND h.chain_id = t.chain_id AND h.token_address = t.address
WHERE wa.user_id = ANY($1::uuid[]) AND NOT coalesce(h.frozen, false)
ORDER BY wa.user_id, wa.linked_at, wa.address"""


@dataclass(frozen=True)
class Line:
    user_id: uuid.UUID
    quantity: Decimal


async def _security_token(session: AsyncSession, token_id: uuid.UUID) -> tuple[Token, Asset]:
    token = await session.get(Token, token_id)
    if token is None or token.kind is not TokenKind.SECURITY or token.asset_id is None:
        raise NotFound("security token not found", field="tokenId")
    asset = await session.get(Asset, token.asset_id)
    assert asset is not None
    return token, asset


def _check_quantity(quantity: Decimal, decimals: int, field: str) -> int:
    if not quantity.is_finite() or quantity <= 0:
        raise BadUserInput("amount must be positive", field=field)
    if _places(quantity) > decimals:
        raise BadUserInput(f"amount has more than the token's {decimals} decimals", field=field)
    return to_units(quantity, decimals)


async def _earlier(
    session: AsyncSession,
    actor: Actor,
    client_key: str | None,
    kind: IssuanceKind,
    token_id: uuid.UUID,
    lines: list[tuple[uuid.UUID, Decimal]],
) -> TokenIssuance | None:
    """The issuance this caller made earlier with `client_key`, when the request is the same one again (kind, token
    and lines); the key reused for another request is CONFLICT IDEMPOTENCY_KEY_REUSED (returning the earlier one
    would tell the caller that a request it never made was carried out)."""
    if check_key(client_key, field="clientKey", max_chars=64) is None:
        return None
    earlier = (
        await session.execute(
            select(TokenIssuance).where(
                TokenIssuance.requested_by == actor.user_id, TokenIssuance.client_key == client_key
            )
        )
    ).scalar()
    if earlier is None:
        return None
    stored = (
        await session.execute(
            select(TokenIssuanceLine.user_id, TokenIssuanceLine.quantity)
            .where(TokenIssuanceLine.issuance_id == earlier.id)
            .order_by(TokenIssuanceLine.line)
        )
    ).all()
    if earlier.kind is not kind or earlier.token_id != token_id or [tuple(r) for r in stored] != lines:
        raise Conflict(
            "clientKey was already used for a different issuance or redemption", reason="IDEMPOTENCY_KEY_REUSED"
        )
    return earlier


async def _add_issuance(
    session: AsyncSession,
    actor: Actor,
    token: Token,
    kind: IssuanceKind,
    total: Decimal,
    client_key: str | None,
    state: IssuanceState,
) -> TokenIssuance:
    """The issuance row (flushed: its lines refer to its id) that an issue or a redemption adds."""
    issuance = TokenIssuance(
        id=uuid.uuid4(),
        kind=kind,
        token_id=token.id,
        chain_id=token.chain_id,
        token_address=token.address,
        total_quantity=total,
        requested_by=actor.user_id,
        client_key=client_key,
        state=state,
    )
    session.add(issuance)
    await session.flush()
    return issuance


async def issue_tokens(
    session: AsyncSession,
    actor: Actor,
    token_id: uuid.UUID,
    lines: list[Line],
    *,
    approval_threshold: Decimal,
    client_key: str | None = None,
) -> TokenIssuance:
    asked = [(ln.user_id, ln.quantity) for ln in lines]
    if (earlier := await _earlier(session, actor, client_key, IssuanceKind.ISSUE, token_id, asked)) is not None:
        return earlier
    token, asset = await _security_token(session, token_id)
    _check_issuer(actor, asset.issuer_id)
    if asset.status is not AssetStatus.ACTIVE:
        raise Conflict(f"the asset is {asset.status.value}; issuance needs an ACTIVE asset", reason="ASSET_NOT_ACTIVE")
    if not 0 < len(lines) <= MAX_LINES:
        raise BadUserInput(f"allocations must have 1 to {MAX_LINES} entries", field="allocations")
    units = [_check_quantity(ln.quantity, token.decimals, f"allocations.{i}.amount") for i, ln in enumerate(lines)]
    wallets = {
        r[0]: r[1] for r in await (await pg(session)).fetch(_WALLETS, list({ln.user_id for ln in lines}), token.id)
    }
    for i, ln in enumerate(lines):
        if ln.user_id not in wallets:
            raise BadUserInput(
                "this investor has no linked wallet that the token's identity registry lists (or it is frozen)",
                field=f"allocations.{i}.userId",
                reason="NO_VERIFIED_WALLET",
            )
    total = sum((ln.quantity for ln in lines), Decimal(0))
    needs_approval = total > approval_threshold
    state = IssuanceState.PENDING_APPROVAL if needs_approval else IssuanceState.SUBMITTED
    issuance = await _add_issuance(session, actor, token, IssuanceKind.ISSUE, total, client_key, state)
    for i, (ln, u) in enumerate(zip(lines, units)):
        session.add(
            TokenIssuanceLine(
                issuance_id=issuance.id,
                line=i,
                user_id=ln.user_id,
                wallet_address=wallets[ln.user_id],
                quantity=ln.quantity,
                units=u,
                op_ref=f"issuance:{issuance.id}:mint:{i // MINT_BATCH}",
            )
        )
    await session.flush()
    record(
        session,
        actor_id=actor.user_id,
        action="issuance.request",
        target_type="token_issuance",
        target_id=issuance.id,
        request_id=actor.request_id,
        details={"token": str(token.id), "total": str(total), "lines": str(len(lines)), "state": issuance.state.value},
    )
    if not needs_approval:
        await _submit(session, actor, issuance)
    return issuance


async def _submit(session: AsyncSession, actor: Actor, issuance: TokenIssuance) -> None:
    lines = list(
        (
            await session.execute(
                select(TokenIssuanceLine)
                .where(TokenIssuanceLine.issuance_id == issuance.id)
                .order_by(TokenIssuanceLine.line)
            )
        ).scalars()
    )
    batches: dict[str, list[TokenIssuanceLine]] = {}
    for ln in lines:
        batches.setdefault(ln.op_ref, []).append(ln)
    for ref, batch in batches.items():
        if issuance.kind is IssuanceKind.ISSUE:
            kind, function = ISSUE_KIND, "batchMint"
            args: list[Any] = [[b.wallet_address for b in batch], [int(b.units) for b in batch]]
        else:
            [b] = batch
            kind, function, args = BURN_KIND, "burn", [b.wallet_address, int(b.units)]
        await enqueue(
            session,
            kind=kind,
            chain_id=issuance.chain_id,
            contract=issuance.token_address,
            abi_name="SecurityToken",
            function=function,
            args=args,
            business_ref=ref,
            actor_id=actor.user_id,
        )


async def _locked(session: AsyncSession, issuance_id: uuid.UUID) -> TokenIssuance:
    await session.flush()  # the re-read below must not drop this session's pending changes
    issuance = (
        await session.execute(
            select(TokenIssuance)
            .where(TokenIssuance.id == issuance_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).scalar_one_or_none()
    if issuance is None:
        raise NotFound("issuance not found")
    return issuance


async def decide_issuance(
    session: AsyncSession, actor: Actor, issuance_id: uuid.UUID, *, approve: bool, reason: str | None = None
) -> TokenIssuance:
    """COMPLIANCE approves (-> SUBMITTED, the mints go to the agent) or rejects a PENDING_APPROVAL issuance."""
    issuance = await _locked(session, issuance_id)
    if issuance.state is not IssuanceState.PENDING_APPROVAL:
        raise Conflict(f"the issuance is {issuance.state.value}", reason="INVALID_STATE")
    if issuance.requested_by == actor.user_id and not actor.has(Role.ADMIN):
        raise Conflict("the requester cannot approve their own issuance", reason="FOUR_EYES")
    why = None if reason is None else " ".join(reason.split())
    if why is not None and not 0 < len(why) <= MAX_REASON:
        raise BadUserInput(f"reason must have 1 to {MAX_REASON} characters", field="reason")
    issuance.decided_by = actor.user_id
    issuance.state = IssuanceState.SUBMITTED if approve else IssuanceState.REJECTED
    issuance.reason = why
    record(
        session,
        actor_id=actor.user_id,
        action="issuance.approve" if approve else "issuance.reject",
        target_type="token_issuance",
        target_id=issuance.id,
        request_id=actor.request_id,
        details={"reason": why} if why else {},
    )
    if approve:
        await _submit(session, actor, issuance)
    return issuance


async def redeem_tokens(
    session: AsyncSession,
    actor: Actor,
    token_id: uuid.UUID,
    user_id: uuid.UUID,
    quantity: Decimal,
    client_key: str | None = None,
) -> TokenIssuance:
    """Burn `quantity` of an investor's tokens from the linked wallet that holds the most (unfrozen balance)."""
    asked = [(user_id, quantity)]
    if (earlier := await _earlier(session, actor, client_key, IssuanceKind.REDEEM, token_id, asked)) is not None:
        return earlier
    token, asset = await _security_token(session, token_id)
    _check_issuer(actor, asset.issuer_id)
    if asset.status not in (AssetStatus.ACTIVE, AssetStatus.SUSPENDED, AssetStatus.REDEEMING):
        raise Conflict(
            f"the asset is {asset.status.value}; redemption needs ACTIVE, SUSPENDED or REDEEMING",
            reason="ASSET_NOT_REDEEMABLE",
        )
    units = _check_quantity(quantity, token.decimals, "amount")
    row = await (await pg(session)).fetchrow(
        """SELECT h.holder, h.balance - h.frozen_amount AS free FROM holdings h
           JOIN wallets wa ON wa.address = h.holder AND wa.user_id = $1
           WHERE h.chain_id = $2 AND h.token_address = $3 ORDER BY free DESC, h.holder LIMIT 1""",
        user_id,
        token.chain_id,
        token.address,
    )
    if row is None or int(row["free"]) < units:
        raise Conflict("the investor's wallets do not hold that many unfrozen tokens", reason="INSUFFICIENT_BALANCE")
    issuance = await _add_issuance(
        session, actor, token, IssuanceKind.REDEEM, quantity, client_key, IssuanceState.SUBMITTED
    )
    session.add(
        TokenIssuanceLine(
            issuance_id=issuance.id,
            line=0,
            user_id=user_id,
            wallet_address=row["holder"],
            quantity=quantity,
            units=units,
            op_ref=f"issuance:{issuance.id}:burn:0",
        )
    )
    await session.flush()
    record(
        session,
        actor_id=actor.user_id,
        action="issuance.redeem",
        target_type="token_issuance",
        target_id=issuance.id,
        request_id=actor.request_id,
        details={"token": str(token.id), "user": str(user_id), "amount": str(quantity)},
    )
    await _submit(session, actor, issuance)
    return issuance


async def _finish_if_done(session: AsyncSession, op: ChainOperation, failed_reason: str | None) -> None:
    issuance = await _locked(session, uuid.UUID(op.business_ref.split(":")[1]))
    if issuance.state is not IssuanceState.SUBMITTED:
        return
    if failed_reason is not None:
        issuance.state, issuance.reason = IssuanceState.FAILED, " ".join(failed_reason.split())[:MAX_REASON]
    else:
        await session.flush()
        refs = list(
            (
                await session.execute(
                    select(TokenIssuanceLine.op_ref).where(TokenIssuanceLine.issuance_id == issuance.id).distinct()
                )
            ).scalars()
        )
        open_ops = (
            await session.execute(
                select(func.count())
                .select_from(ChainOperation)
                .where(
                    ChainOperation.business_ref.in_(refs),
                    ChainOperation.id != op.id,
                    ChainOperation.state != OperationState.CONFIRMED,
                )
            )
        ).scalar_one()
        if open_ops:
            return
        issuance.state = IssuanceState.SETTLED
        if issuance.kind is IssuanceKind.REDEEM:
            await _retire_if_redeemed(session, issuance)
    record(
        session,
        actor_id=None,
        action=f"issuance.{issuance.state.value.lower()}",
        target_type="token_issuance",
        target_id=issuance.id,
        details={"operation": str(op.id), **({"reason": issuance.reason} if failed_reason else {})},
    )


async def _retire_if_redeemed(session: AsyncSession, issuance: TokenIssuance) -> None:
    """The last tokens of a REDEEMING asset are burned: the asset is RETIRED. Supply comes from the indexed holdings
    (the burn is indexed and final when this runs)."""
    token = await session.get(Token, issuance.token_id)
    assert token is not None and token.asset_id is not None
    asset = (await session.execute(select(Asset).where(Asset.id == token.asset_id).with_for_update())).scalar_one()
    if asset.status is not AssetStatus.REDEEMING:
        return
    outstanding = (
        await session.execute(
            select(func.coalesce(func.sum(Holding.balance), 0))
            .join(Token, (Token.chain_id == Holding.chain_id) & (Token.address == Holding.token_address))
            .where(Token.asset_id == asset.id)
        )
    ).scalar_one()
    if int(outstanding) == 0:
        session.add(
            AssetTransition(
                asset_id=asset.id,
                from_status=asset.status,
                to_status=AssetStatus.RETIRED,
                action="retire",
                actor_id=None,
                reason="all tokens redeemed",
            )
        )
        asset.status = AssetStatus.RETIRED
        record(
            session,
            actor_id=None,
            action="asset.retire",
            target_type="asset",
            target_id=asset.id,
            details={"reason": "all tokens redeemed", "issuance": str(issuance.id)},
        )


async def operation_confirmed(session: AsyncSession, op: ChainOperation) -> None:
    await _finish_if_done(session, op, None)


async def operation_failed(session: AsyncSession, op: ChainOperation, reason: str) -> None:
    await _finish_if_done(session, op, reason or "OPERATION_FAILED")
