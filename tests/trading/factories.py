"""Trading factories: rows written straight to the database (no chain needed): an ACTIVE asset with its security
token and identity registry, a stablecoin, a market, and traders with KYC, a registered wallet, indexed token
balance and ledger cash. They take a session factory, so they serve both the rolled-back test transaction and
committed data for tests with live server processes."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from eth_utils import to_checksum_address
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models.assets import Asset, AssetStatus, AssetType
from models.identity import KycCase, KycStatus, User, Wallet
from models.tokens import Holding, IdentityEntry, Token, TokenKind
from models.trading import Market, MarketStatus
from resolvers import ledger

SessionFactory = async_sessionmaker[AsyncSession]


def random_address() -> str:
    return to_checksum_address("0x" + uuid.uuid4().hex + uuid.uuid4().hex[:8])


@dataclass
class MarketSetup:
    market_id: uuid.UUID
    token_id: uuid.UUID
    chain_id: int
    token_address: str
    registry: str
    decimals: int
    quote: str


@dataclass
class Trader:
    user_id: uuid.UUID
    wallet: str


async def make_user(sf: SessionFactory, roles: list[str] | None = None) -> uuid.UUID:
    user_id = uuid.uuid4()
    async with sf() as s:
        s.add(
            User(id=user_id, email=f"t-{user_id.hex[:12]}@example.com", password_hash="x", roles=roles or ["INVESTOR"])
        )
        await s.commit()
    return user_id


async def make_market(
    sf: SessionFactory,
    *,
    decimals: int = 6,
    tick: str = "0.01",
    lot: str = "1",
    min_notional: str = "0",
    maker_bps: int = 10,
    taker_bps: int = 20,
    quote: str | None = None,
    status: MarketStatus = MarketStatus.OPEN,
    paused: bool = False,
    chain_id: int = 137,
) -> MarketSetup:
    issuer = await make_user(sf, ["ISSUER"])
    quote = quote or f"USD{uuid.uuid4().hex[:6].upper()}"
    asset_id, token_id, market_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    address, registry = random_address(), random_address()
    async with sf() as s:
        s.add(
            Asset(
                id=asset_id,
                issuer_id=issuer,
                name=f"Asset {asset_id.hex[:6]}",
                type=AssetType.OTHER,
                status=AssetStatus.ACTIVE,
                jurisdiction="DE",
                currency="EUR",
                attributes={},
            )
        )
        await s.flush()
        s.add(
            Token(
                id=token_id,
                chain_id=chain_id,
                address=address,
                kind=TokenKind.SECURITY,
                asset_id=asset_id,
                symbol="RWA",
                decimals=decimals,
                paused=paused,
                identity_registry=registry,
            )
        )
        s.add(
            Token(
                id=uuid.uuid4(),
                chain_id=chain_id,
                address=random_address(),
                kind=TokenKind.STABLECOIN,
                symbol=quote,
                decimals=6,
            )
        )
        await s.flush()
        s.add(
            Market(
                id=market_id,
                symbol=f"RWA{market_id.hex[:6]}/{quote}",
                base_token_id=token_id,
                chain_id=chain_id,
                token_address=address,
                base_decimals=decimals,
                quote_currency=quote,
                tick_size=Decimal(tick),
                lot_size=Decimal(lot),
                min_notional=Decimal(min_notional),
                maker_fee_bps=maker_bps,
                taker_fee_bps=taker_bps,
                status=status,
                book_sequence=0,
            )
        )
        await s.commit()
    return MarketSetup(market_id, token_id, chain_id, address, registry, decimals, quote)


async def make_trader(
    sf: SessionFactory,
    m: MarketSetup,
    *,
    cash: Decimal | str = "0",
    tokens: Decimal | str = "0",
    kyc: KycStatus | None = KycStatus.APPROVED,
    registered: bool = True,
    frozen: bool = False,
    frozen_amount: Decimal | str = "0",
    wallet: bool = True,
    user_id: uuid.UUID | None = None,
) -> Trader:
    user_id = user_id or await make_user(sf)
    address = random_address()
    async with sf() as s:
        if kyc is not None:
            s.add(
                KycCase(
                    id=uuid.uuid4(),
                    user_id=user_id,
                    status=kyc,
                    expires_at=None if kyc is not KycStatus.APPROVED else datetime(2100, 1, 1, tzinfo=UTC),
                )
            )
        if wallet:
            s.add(Wallet(id=uuid.uuid4(), user_id=user_id, address=address))
            s.add(
                IdentityEntry(
                    chain_id=m.chain_id,
                    registry_address=m.registry,
                    investor=address,
                    registered=registered,
                    updated_block=1,
                )
            )
            s.add(
                Holding(
                    chain_id=m.chain_id,
                    token_address=m.token_address,
                    holder=address,
                    balance=int(Decimal(tokens).scaleb(m.decimals)),
                    frozen_amount=int(Decimal(frozen_amount).scaleb(m.decimals)),
                    frozen=frozen,
                    updated_block=1,
                )
            )
        await s.flush()
        if Decimal(cash) > 0:
            await ledger.credit_deposit(s, user_id, Decimal(cash), m.quote, reference=f"test-credit:{uuid.uuid4()}")
        await s.commit()
    return Trader(user_id, address)
