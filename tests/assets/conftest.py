"""Asset factories: rows written straight to the test transaction, for tests that need a given state."""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models.assets import Asset, AssetStatus, AssetType, Valuation, ValuationMethod
from models.tokens import Token, TokenKind

ASSET_FIELDS = "id name type status jurisdiction currency issuer { id email } latestValuation { amount currency }"


@pytest.fixture
def make_asset(session_factory: async_sessionmaker[AsyncSession]):  # type: ignore[no-untyped-def]
    """`await make_asset(issuer_id, status=AssetStatus.ACTIVE, valuation=Decimal("10"), tokens=1)` -> asset id."""

    async def _make(
        issuer_id: uuid.UUID,
        *,
        status: AssetStatus = AssetStatus.DRAFT,
        type: AssetType = AssetType.OTHER,
        name: str | None = None,
        jurisdiction: str = "DE",
        valuation: Decimal | None = None,
        tokens: int = 0,
        chain_id: int = 1,
    ) -> uuid.UUID:
        asset_id = uuid.uuid4()
        async with session_factory() as s:
            s.add(
                Asset(
                    id=asset_id,
                    issuer_id=issuer_id,
                    name=name or f"Asset {asset_id.hex[:8]}",
                    type=type,
                    status=status,
                    jurisdiction=jurisdiction,
                    currency="EUR",
                    attributes={},
                )
            )
            await s.flush()
            if valuation is not None:
                v = Valuation(
                    id=uuid.uuid4(),
                    asset_id=asset_id,
                    amount=valuation,
                    currency="EUR",
                    method=ValuationMethod.NAV,
                    as_of=date(2026, 1, 1),
                    source="factory",
                )
                s.add(v)
                await s.flush()
                a = await s.get(Asset, asset_id)
                assert a is not None
                a.latest_valuation_id, a.latest_valuation_amount = v.id, valuation
                a.latest_valuation_currency, a.latest_valuation_as_of = "EUR", v.as_of
            for _ in range(tokens):
                addr = "0x" + uuid.uuid4().hex + uuid.uuid4().hex[:8]
                from eth_utils import to_checksum_address

                s.add(
                    Token(
                        id=uuid.uuid4(),
                        chain_id=chain_id,
                        address=to_checksum_address(addr),
                        kind=TokenKind.SECURITY,
                        asset_id=asset_id,
                        symbol="TKN",
                        decimals=18,
                    )
                )
            await s.commit()
        return asset_id

    return _make
