"""The agent's on-chain operations for ADMIN/COMPLIANCE: list (filters, connection), retry, cancel; and the
compliance actions that create them (freeze/unfreeze wallets, partial freezes, pause/unpause tokens). Types and
fields only; the work is in agent/operations.py and resolvers/compliance/actions.py."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeAlias

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from agent import operations
from models.identity import Role
from models.operations import ChainOperation as ChainOperationModel
from models.operations import OperationState as OperationStateModel
from resolvers.compliance.actions import Action, act
from resolvers.pagination import keyset_page
from schema.mutations import mutation
from schema.node import Node, register_node
from schema.pagination import Connection
from schema.permissions import requires
from schema.scalars import BigInt

strawberry.enum(
    OperationStateModel,
    description=(
        "PENDING -> SIGNED -> BROADCAST -> MINED -> CONFIRMED (its event indexed at or below the finalized block) | "
        "FAILED (reverted at estimation or when mined) | CANCELED (by an operator). REPLACED: canceled by an operator "
        "after signing; a 0-value transaction of the sender fills its nonce, then CANCELED once that is final (or "
        "MINED if its own transaction wins). BATCHED: carried by a batch operation's transaction (kind batch.<kind>), "
        "CONFIRMED with it or sent alone if it reverts."
    ),
)
OperationState: TypeAlias = OperationStateModel
STAFF = (Role.ADMIN, Role.COMPLIANCE)


@strawberry.type(description="One decision on its way to a chain (the agent's outbox).")
class ChainOperation(Node):
    kind: str
    chain_id: int
    contract: str
    function: str
    args: JSON
    signer: str = strawberry.field(description="Role of the signing key: agent, treasury, deposit:<index>.")
    business_ref: str = strawberry.field(description="Unique per decision, e.g. settlement:<instruction id>.")
    state: OperationState
    attempts: int
    sender: str | None
    nonce: BigInt | None
    tx_hash: str | None = strawberry.field(description="The latest signed transaction's hash.")
    tx_hashes: list[str] = strawberry.field(description="Every hash broadcast for it (fee-bump replacements too).")
    mined_tx_hash: str | None
    mined_block: BigInt | None
    confirmed_block: BigInt | None
    revert_reason: str | None
    last_error: str | None
    created_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime
    broadcast_at: datetime | None
    confirmed_at: datetime | None

    @classmethod
    def of(cls, o: Any) -> ChainOperation:
        return cls(
            id=o.id,
            kind=o.kind,
            chain_id=o.chain_id,
            contract=o.contract,
            function=o.function,
            args=o.args,
            signer=o.signer,
            business_ref=o.business_ref,
            state=o.state,
            attempts=o.attempts,
            sender=o.sender,
            nonce=o.nonce,
            tx_hash=o.tx_hash,
            tx_hashes=list(o.tx_hashes or []),
            mined_tx_hash=o.mined_tx_hash,
            mined_block=o.mined_block,
            confirmed_block=o.confirmed_block,
            revert_reason=o.revert_reason,
            last_error=o.last_error,
            created_by=o.created_by,
            created_at=o.created_at,
            updated_at=o.updated_at,
            broadcast_at=o.broadcast_at,
            confirmed_at=o.confirmed_at,
        )


@strawberry.type
class Query:
    @strawberry.field(
        extensions=requires(*STAFF),
        description=(
            "On-chain operations, newest first. kind: an exact kind (settlement.transfer) or a prefix ending in '.' "
            "(identity.)."
        ),
    )
    async def operations(
        self,
        info: Info,
        state: list[OperationState] | None = None,
        kind: str | None = None,
        chain_id: int | None = None,
        business_ref: str | None = None,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[ChainOperation]:
        stmt = operations.filtered(operations.OperationFilter(state, kind, chain_id, business_ref))
        page = await keyset_page(
            await info.context.session(),
            stmt,
            [ChainOperationModel.created_at, ChainOperationModel.id],
            descending=True,
            first=first,
            after=after,
            last=last,
            before=before,
        )
        return Connection.from_page(page, ChainOperation.of)


async def _act(
    info: Info,
    action: Action,
    token_id: uuid.UUID,
    reason: str,
    wallet: str | None = None,
    amount: Decimal | None = None,
    idempotency_key: str | None = None,
) -> ChainOperation:
    ctx = info.context
    actor = ctx.viewer.require_user()
    op = await act(
        await ctx.session(),
        action,
        token_id,
        actor_id=actor,
        reason=reason,
        wallet=wallet,
        amount=amount,
        idempotency_key=idempotency_key,
        request_id=ctx.request_id,
    )
    return ChainOperation.of(op)


_KEY_DOC = "Optional; the same key (per token and wallet) returns the operation it created."


@strawberry.type
class Mutation:
    @mutation(
        result="operation",
        extensions=requires(*STAFF),
        description=(
            "FAILED/CANCELED -> PENDING (sent again, new nonce), or a PENDING one in backoff now. CONFLICT COMPENSATED "
            "for settlements and payouts whose failure was already compensated."
        ),
    )
    async def retry_operation(self, info: Info, id: uuid.UUID) -> ChainOperation:
        ctx = info.context
        actor = ctx.viewer.require_user()
        return ChainOperation.of(
            await operations.retry(await ctx.session(), id, actor_id=actor, request_id=ctx.request_id)
        )

    @mutation(
        result="operation",
        extensions=requires(*STAFF),
        description=(
            "PENDING -> CANCELED; the decision is compensated as for a revert (a settlement's trade FAILS and its cash "
            "is reversed; a payout's cash is given back). SIGNED/BROADCAST (e.g. refused by the node for lack of gas, "
            "holding its sender's nonce) -> REPLACED: the agent fills the nonce with a 0-value self-transfer (the "
            "sender needs gas for it) and the op becomes CANCELED, compensated, once that is final; if its own "
            "transaction lands first it completes normally. CONFLICT INVALID_STATE for MINED, BATCHED, REPLACED "
            "and final operations."
        ),
    )
    async def cancel_operation(self, info: Info, id: uuid.UUID, reason: str) -> ChainOperation:
        ctx = info.context
        actor = ctx.viewer.require_user()
        return ChainOperation.of(
            await operations.cancel(await ctx.session(), id, reason, actor_id=actor, request_id=ctx.request_id)
        )

    @mutation(
        result="operation",
        extensions=requires(Role.COMPLIANCE),
        description=("Freeze a wallet on a token (setAddressFrozen true): no transfer from or to it until unfrozen."),
    )
    async def freeze_wallet(
        self, info: Info, token_id: uuid.UUID, wallet: str, reason: str, idempotency_key: str | None = None
    ) -> ChainOperation:
        return await _act(info, Action.FREEZE, token_id, reason, wallet, idempotency_key=idempotency_key)

    @mutation(extensions=requires(Role.COMPLIANCE), description="setAddressFrozen false.", result="operation")
    async def unfreeze_wallet(
        self, info: Info, token_id: uuid.UUID, wallet: str, reason: str, idempotency_key: str | None = None
    ) -> ChainOperation:
        return await _act(info, Action.UNFREEZE, token_id, reason, wallet, idempotency_key=idempotency_key)

    @mutation(
        result="operation",
        extensions=requires(Role.COMPLIANCE),
        description=(
            "Freeze `amount` tokens (whole units, up to the token's decimals) of a wallet (freezePartialTokens)."
        ),
    )
    async def freeze_tokens(
        self,
        info: Info,
        token_id: uuid.UUID,
        wallet: str,
        amount: Decimal,
        reason: str,
        idempotency_key: str | None = None,
    ) -> ChainOperation:
        return await _act(info, Action.FREEZE_PARTIAL, token_id, reason, wallet, amount, idempotency_key)

    @mutation(extensions=requires(Role.COMPLIANCE), description="unfreezePartialTokens.", result="operation")
    async def unfreeze_tokens(
        self,
        info: Info,
        token_id: uuid.UUID,
        wallet: str,
        amount: Decimal,
        reason: str,
        idempotency_key: str | None = None,
    ) -> ChainOperation:
        return await _act(info, Action.UNFREEZE_PARTIAL, token_id, reason, wallet, amount, idempotency_key)

    @mutation(extensions=requires(Role.COMPLIANCE), description="Pause every transfer of a token.", result="operation")
    async def pause_token(
        self, info: Info, token_id: uuid.UUID, reason: str, idempotency_key: str | None = None
    ) -> ChainOperation:
        return await _act(info, Action.PAUSE, token_id, reason, idempotency_key=idempotency_key)

    @mutation(extensions=requires(Role.COMPLIANCE), description="Unpause a paused token.", result="operation")
    async def unpause_token(
        self, info: Info, token_id: uuid.UUID, reason: str, idempotency_key: str | None = None
    ) -> ChainOperation:
        return await _act(info, Action.UNPAUSE, token_id, reason, idempotency_key=idempotency_key)


async def load_operation(info: Info, id: uuid.UUID) -> ChainOperation | None:
    """`node(id)` for a ChainOperation: ADMIN/COMPLIANCE only, like `operations`."""
    viewer = info.context.viewer
    if viewer.user_id is None or not viewer.has_role(*(r.value for r in STAFF)):
        return None
    op = await (await info.context.session()).get(ChainOperationModel, id)
    return None if op is None else ChainOperation.of(op)


register_node("ChainOperation", "chain_operations", load_operation)
