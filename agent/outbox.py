"""Enqueue an on-chain operation in the caller's transaction: one row per business reference, idempotently.

Called by domain code (resolvers, jobs) in the transaction of the decision it carries out, so the decision and its
operation commit (or roll back) together. A second call with the same `business_ref` returns the existing row
unchanged (whatever its arguments): a replayed decision never makes a second transaction. Never commits.
"""

from __future__ import annotations

import uuid
from typing import Any

from eth_utils import to_checksum_address
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from models.operations import ChainOperation, OperationState


def normalize_args(args: list[Any]) -> list[Any]:
    """JSON-safe call arguments: ints (and bools kept as bools) as decimal strings, lists recursively."""
    out: list[Any] = []
    for a in args:
        if isinstance(a, bool):
            out.append(a)
        elif isinstance(a, int):
            out.append(str(a))
        elif isinstance(a, (list, tuple)):
            out.append(normalize_args(list(a)))
        elif isinstance(a, (bytes, bytearray)):
            out.append("0x" + bytes(a).hex())
        elif isinstance(a, str):
            out.append(a)
        else:
            raise TypeError(f"unsupported operation argument type {type(a).__name__}")
    return out


def _row(
    *,
    kind: str,
    chain_id: int,
    contract: str,
    abi_name: str,
    function: str,
    args: list[Any],
    business_ref: str,
    signer: str = "agent",
    actor_id: uuid.UUID | None = None,
    value: int = 0,
) -> dict[str, Any]:
    """The checked column values of a new operation."""
    if not business_ref or len(business_ref) > 200:
        raise ValueError("business_ref must be 1..200 characters")
    if not kind or len(kind) > 40:
        raise ValueError("kind must be 1..40 characters")
    if not signer or len(signer) > 20:
        raise ValueError("signer must be 1..20 characters")
    if value < 0:
        raise ValueError("value must be >= 0")
    if not function and not value:
        raise ValueError("an operation calls a function or sends a value")
    return dict(
        id=uuid.uuid4(),
        kind=kind,
        chain_id=int(chain_id),
        contract=to_checksum_address(contract),
        abi_name=abi_name,
        function=function,
        args=normalize_args(args),
        value=int(value),
        signer=signer,
        business_ref=business_ref,
        state=OperationState.PENDING,
        attempts=0,
        tx_hashes=[],
        created_by=actor_id,
    )


async def enqueue_many(session: AsyncSession, operations: list[dict[str, Any]]) -> None:
    """`enqueue` for each of `operations` (its keyword arguments as dicts) in one INSERT, without reading the rows
    back: for a decision that makes many operations at once (an offering's mint batches). Does not commit."""
    if operations:
        await session.execute(
            insert(ChainOperation)
            .values([_row(**op) for op in operations])
            .on_conflict_do_nothing(index_elements=["business_ref"])
        )


async def enqueue(
    session: AsyncSession,
    *,
    kind: str,
    chain_id: int,
    contract: str,
    abi_name: str,
    function: str,
    args: list[Any],
    business_ref: str,
    signer: str = "agent",
    actor_id: uuid.UUID | None = None,
    value: int = 0,
) -> ChainOperation:
    """Insert the operation unless `business_ref` exists; return the (new or existing) row. Does not commit."""
    stmt = (
        insert(ChainOperation)
        .values(
            **_row(
                kind=kind,
                chain_id=chain_id,
                contract=contract,
                abi_name=abi_name,
                function=function,
                args=args,
                business_ref=business_ref,
                signer=signer,
                actor_id=actor_id,
                value=value,
            )
        )
        .on_conflict_do_nothing(index_elements=["business_ref"])
    )
    await session.execute(stmt)
    row = (
        await session.execute(
            select(ChainOperation)
            .where(ChainOperation.business_ref == business_ref)
            .execution_options(populate_existing=True)
        )
    ).scalar_one()
    return row
