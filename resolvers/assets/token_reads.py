"""Token reads: lean Core selects into dataclasses (holdings/transfers live in resolvers/holdings.py)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from eth_utils import is_address, to_checksum_address
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import BadUserInput, NotFound
from models.tokens import Token, TokenKind


@dataclass(slots=True)
class TokenRow:
    id: uuid.UUID
    asset_id: uuid.UUID | None
    chain_id: int
    address: str
    kind: TokenKind
    name: str
    symbol: str
    decimals: int
    total_supply: int
    paused: bool
    start_block: int
    identity_registry: str | None = None


TOKEN_COLUMNS = (
    Token.id,
    Token.asset_id,
    Token.chain_id,
    Token.address,
    Token.kind,
    Token.name,
    Token.symbol,
    Token.decimals,
    Token.total_supply,
    Token.paused,
    Token.start_block,
    Token.identity_registry,
)


_KINDS = {k.value: k for k in TokenKind}


def token_row(values: tuple) -> TokenRow:
    row = TokenRow(*values)
    row.total_supply = int(row.total_supply)
    if not isinstance(row.kind, TokenKind):  # driver SQL returns the enum's text
        row.kind = _KINDS.get(row.kind) or TokenKind(row.kind)
    return row


async def get_token(
    session: AsyncSession, token_id: uuid.UUID | None = None, chain_id: int | None = None, address: str | None = None
) -> TokenRow:
    stmt = select(*TOKEN_COLUMNS)
    if token_id is not None:
        stmt = stmt.where(Token.id == token_id)
    else:
        if chain_id is None or address is None or not is_address(address):
            raise BadUserInput("pass a token id, or chainId and a valid address", field="address")
        stmt = stmt.where(Token.chain_id == chain_id, Token.address == to_checksum_address(address))
    found = (await session.execute(stmt)).first()
    if found is None:
        raise NotFound("token not found")
    return token_row(tuple(found))
