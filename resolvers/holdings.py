"""Indexed token holdings and transfers, and a holder's balance as of a past block.

Who may read them (one rule for every field here, including the Token type's fields that call these):
- staff (ADMIN, COMPLIANCE, ISSUER) read every holder of every token;
- any other signed-in caller (an INVESTOR) only with `holder` set to one of the wallets they linked;
- API keys act with their owner's roles (read-only), so a staff key reads everything, an investor's key
  only that investor's wallets.

Reads are single lean SELECTs into plain dataclasses, paginated by keyset (resolvers/pagination.py):
holdings by (balance, holder) descending, transfers by (block number, log index, block hash).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from chains.errors import UnknownChain
from chains.inputs import checksum_address, parse_chain
from core.errors import BadUserInput, Forbidden
from models.identity import Role, Wallet
from models.index_status import indexed_block_for
from models.tokens import Holding, TokenTransfer
from resolvers.pagination import Page, keyset_page
from resolvers.viewer import Viewer

STAFF_ROLES = (Role.ADMIN.value, Role.COMPLIANCE.value, Role.ISSUER.value)


# --- input ---------------------------------------------------------------------------------------


def parse_chain_id(chain_id: int, field: str = "chainId") -> int:
    try:
        return parse_chain(chain_id).chain_id
    except UnknownChain as exc:
        raise BadUserInput(f"unknown chain {chain_id}; known chains: {', '.join(exc.known)}", field=field) from None


def parse_address(value: str, field: str) -> str:
    """0x + 40 hex digits; mixed case must be a valid EIP-55 checksum. Returns the checksummed form."""
    try:
        return checksum_address(value)
    except ValueError as exc:
        raise BadUserInput(str(exc), field=field) from None


def parse_block(value: int | None, field: str) -> int | None:
    if value is not None and value < 0:
        raise BadUserInput(f"{field} must be >= 0", field=field)
    return value


# --- authorization -------------------------------------------------------------------------------


async def authorize_holder_view(session: AsyncSession, viewer: Viewer, holder: str | None) -> None:
    """Raise unless the caller may see holdings/transfers/balances of `holder` (None: of every holder)."""
    user_id = viewer.require_user()
    if viewer.has_role(*STAFF_ROLES):
        return
    if holder is None:
        raise Forbidden("only staff may list every holder; pass holder: one of your linked wallets")
    linked = (
        await session.execute(select(Wallet.id).where(Wallet.user_id == user_id, Wallet.address == holder).limit(1))
    ).first()
    if linked is None:
        raise Forbidden("holder is not one of your linked wallets")


# --- rows ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HoldingRow:
    chain_id: int
    token: str
    holder: str
    balance: int
    frozen_amount: int
    frozen: bool
    updated_block: int


@dataclass(frozen=True, slots=True)
class TransferRow:
    chain_id: int
    token: str
    block_number: int
    block_hash: str
    log_index: int
    block_time: datetime | None
    tx_hash: str
    from_address: str
    to_address: str
    value: int


@dataclass(frozen=True, slots=True)
class BalanceRow:
    chain_id: int
    token: str
    holder: str
    balance: int
    at_block: int
    indexed_block: int


# --- queries -------------------------------------------------------------------------------------


async def token_holdings(
    session: AsyncSession,
    viewer: Viewer,
    *,
    chain_id: int,
    token: str,
    holder: str | None = None,
    include_zero: bool = False,
    first: int | None = None,
    after: str | None = None,
    last: int | None = None,
    before: str | None = None,
) -> Page[HoldingRow]:
    """Holders of a token, largest balance first. Zero balances (former holders) only with include_zero."""
    chain_id = parse_chain_id(chain_id)
    token = parse_address(token, "token")
    holder = parse_address(holder, "holder") if holder is not None else None
    await authorize_holder_view(session, viewer, holder)
    h = Holding
    stmt = select(h.holder, h.balance, h.frozen_amount, h.frozen, h.updated_block).where(
        h.chain_id == chain_id, h.token_address == token
    )
    if holder is not None:
        stmt = stmt.where(h.holder == holder)
    if not include_zero:
        stmt = stmt.where(h.balance > 0)
    page = await keyset_page(
        session,
        stmt,
        [h.balance, h.holder],
        descending=True,
        first=first,
        after=after,
        last=last,
        before=before,
        scalars=False,
    )
    return page.map(lambda r: HoldingRow(chain_id, token, r[0], int(r[1]), int(r[2]), r[3], r[4]))


async def token_transfers(
    session: AsyncSession,
    viewer: Viewer,
    *,
    chain_id: int,
    token: str,
    holder: str | None = None,
    from_block: int | None = None,
    to_block: int | None = None,
    newest_first: bool = True,
    first: int | None = None,
    after: str | None = None,
    last: int | None = None,
    before: str | None = None,
) -> Page[TransferRow]:
    """Transfers of a token (mints and burns included), optionally of one holder (either side) and a block range."""
    chain_id = parse_chain_id(chain_id)
    token = parse_address(token, "token")
    holder = parse_address(holder, "holder") if holder is not None else None
    from_block, to_block = parse_block(from_block, "fromBlock"), parse_block(to_block, "toBlock")
    if from_block is not None and to_block is not None and from_block > to_block:
        raise BadUserInput("fromBlock is above toBlock", field="fromBlock")
    await authorize_holder_view(session, viewer, holder)
    t = TokenTransfer
    stmt = select(
        t.block_number, t.block_hash, t.log_index, t.block_time, t.tx_hash, t.from_address, t.to_address, t.value
    ).where(t.chain_id == chain_id, t.token_address == token)
    if holder is not None:
        stmt = stmt.where(or_(t.from_address == holder, t.to_address == holder))
    if from_block is not None:
        stmt = stmt.where(t.block_number >= from_block)
    if to_block is not None:
        stmt = stmt.where(t.block_number <= to_block)
    page = await keyset_page(
        session,
        stmt,
        [t.block_number, t.log_index, t.block_hash],
        descending=newest_first,
        first=first,
        after=after,
        last=last,
        before=before,
        scalars=False,
    )
    return page.map(lambda r: TransferRow(chain_id, token, r[0], r[1], r[2], r[3], r[4], r[5], r[6], int(r[7])))


async def holder_balance(
    session: AsyncSession, viewer: Viewer, *, chain_id: int, token: str, holder: str, at_block: int | None = None
) -> BalanceRow:
    """Balance at the end of `at_block` (default: the indexed block), summed from indexed transfers."""
    chain_id = parse_chain_id(chain_id)
    token = parse_address(token, "token")
    holder = parse_address(holder, "holder")
    at_block = parse_block(at_block, "atBlock")
    await authorize_holder_view(session, viewer, holder)
    indexed = await indexed_block_for(session, chain_id, token)
    if indexed is None:
        raise BadUserInput(f"chain {chain_id} has not been indexed yet", field="chainId")
    if at_block is not None and at_block > indexed:
        raise BadUserInput(
            f"atBlock {at_block} is above the indexed block {indexed}", field="atBlock", indexedBlock=indexed
        )
    at = indexed if at_block is None else at_block
    t = TokenTransfer
    received = func.coalesce(func.sum(case((t.to_address == holder, t.value), else_=0)), 0)
    sent = func.coalesce(func.sum(case((t.from_address == holder, t.value), else_=0)), 0)
    balance = (
        await session.execute(
            select(received - sent).where(
                t.chain_id == chain_id,
                t.token_address == token,
                t.block_number <= at,
                or_(t.from_address == holder, t.to_address == holder),
            )
        )
    ).scalar_one()
    return BalanceRow(chain_id, token, holder, int(balance), at, indexed)
