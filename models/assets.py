"""Real-world assets: the asset row and its lifecycle history, valuations, FX rates and documents.

The latest valuation is denormalized onto `assets` (id, amount, currency, as-of) so that "order by latest
valuation" is an indexable keyset; `resolvers/assets/valuations.py` keeps it in step in the same transaction.
Assets never valued carry amount 0 (the ordering key must be NOT NULL) and latest_valuation_id NULL.
"""

from __future__ import annotations

import enum
import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, Date, ForeignKey, Index, Numeric, String, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, Money, created_at, updated_at, uuid_pk
from models.identity import pg_enum


class AssetType(str, enum.Enum):
    REAL_ESTATE = "REAL_ESTATE"
    BOND = "BOND"
    FUND = "FUND"
    INVOICE = "INVOICE"
    COMMODITY = "COMMODITY"
    OTHER = "OTHER"


class AssetStatus(str, enum.Enum):
    DRAFT = "DRAFT"
    UNDER_REVIEW = "UNDER_REVIEW"
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"
    TOKENIZING = "TOKENIZING"
    ACTIVE = "ACTIVE"
    SUSPENDED = "SUSPENDED"
    REDEEMING = "REDEEMING"
    RETIRED = "RETIRED"


class AssetAction(str, enum.Enum):
    """A lifecycle step in the asset's history (asset_transitions.action; resolvers/assets/lifecycle.py STEPS)."""

    create = "create"
    submit = "submit"
    approve = "approve"
    reject = "reject"
    revise = "revise"
    tokenize = "tokenize"
    confirm_tokens = "confirm_tokens"
    abandon_tokens = "abandon_tokens"
    suspend = "suspend"
    resume = "resume"
    redeem = "redeem"
    retire = "retire"


class ValuationMethod(str, enum.Enum):
    APPRAISAL = "APPRAISAL"
    NAV = "NAV"
    MARKET = "MARKET"
    DCF = "DCF"


class DocumentKind(str, enum.Enum):
    PROSPECTUS = "PROSPECTUS"
    APPRAISAL = "APPRAISAL"
    LEGAL = "LEGAL"
    REPORT = "REPORT"
    OTHER = "OTHER"


class Asset(Base):
    __tablename__ = "assets"

    id: Mapped[uuid.UUID] = uuid_pk()
    issuer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), nullable=False)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    type: Mapped[AssetType] = mapped_column(pg_enum(AssetType, "asset_type"), nullable=False)
    status: Mapped[AssetStatus] = mapped_column(
        pg_enum(AssetStatus, "asset_status"), nullable=False, default=AssetStatus.DRAFT
    )
    description: Mapped[str] = mapped_column(Text, nullable=False, default="")
    jurisdiction: Mapped[str] = mapped_column(String(2), nullable=False)  # ISO 3166-1 alpha-2
    currency: Mapped[str] = mapped_column(String(3), nullable=False)  # ISO 4217
    attributes: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, default=dict)  # per-type metadata
    review_reason: Mapped[str | None] = mapped_column(Text)
    latest_valuation_id: Mapped[uuid.UUID | None] = mapped_column(nullable=True)
    latest_valuation_amount: Mapped[Decimal] = mapped_column(
        Money, nullable=False, default=Decimal(0), server_default=text("0")
    )
    latest_valuation_currency: Mapped[str | None] = mapped_column(String(3))
    latest_valuation_as_of: Mapped[date | None] = mapped_column(Date)
    created_at: Mapped[datetime] = created_at()
    updated_at: Mapped[datetime] = updated_at()

    __table_args__ = (
        # one index per list ordering (keyset = ordering column + id), plus the common filter prefixes
        Index("ix_assets_created", "created_at", "id"),
        Index("ix_assets_name", "name", "id"),
        Index("ix_assets_valuation", "latest_valuation_amount", "id"),
        Index("ix_assets_status_created", "status", "created_at", "id"),
        Index("ix_assets_status_valuation", "status", "latest_valuation_amount", "id"),
        Index("ix_assets_status_type_valuation", "status", "type", "latest_valuation_amount", "id"),
        Index("ix_assets_issuer_created", "issuer_id", "created_at", "id"),
        # name search (ILIKE '%term%'); needs pg_trgm, created by migration 0003 when the server has it
        Index("ix_assets_name_trgm", "name", postgresql_using="gin", postgresql_ops={"name": "gin_trgm_ops"}),
    )


class AssetTransition(Base):
    """One lifecycle step, appended in the transaction that changes `assets.status`."""

    __tablename__ = "asset_transitions"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    asset_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("assets.id", ondelete="CASCADE"), nullable=False)
    from_status: Mapped[AssetStatus | None] = mapped_column(pg_enum(AssetStatus, "asset_status"))
    to_status: Mapped[AssetStatus] = mapped_column(pg_enum(AssetStatus, "asset_status"), nullable=False)
    action: Mapped[str] = mapped_column(String(32), nullable=False)
    actor_id: Mapped[uuid.UUID | None] = mapped_column(nullable=True)
    reason: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = created_at()

    __table_args__ = (Index("ix_asset_transitions_asset", "asset_id", "id"),)


class Valuation(Base):
    __tablename__ = "valuations"

    id: Mapped[uuid.UUID] = uuid_pk()
    asset_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("assets.id", ondelete="CASCADE"), nullable=False)
    amount: Mapped[Decimal] = mapped_column(Money, nullable=False)
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    method: Mapped[ValuationMethod] = mapped_column(pg_enum(ValuationMethod, "valuation_method"), nullable=False)
    as_of: Mapped[date] = mapped_column(Date, nullable=False)
    source: Mapped[str] = mapped_column(String(200), nullable=False)
    created_by: Mapped[uuid.UUID | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime] = created_at()

    __table_args__ = (Index("ix_valuations_asset_as_of", "asset_id", "as_of", "created_at", "id"),)


class FxRate(Base):
    """1 `base` = `rate` `quote`, valid from `as_of` until the next row of the pair."""

    __tablename__ = "fx_rates"

    base: Mapped[str] = mapped_column(String(3), primary_key=True)
    quote: Mapped[str] = mapped_column(String(3), primary_key=True)
    as_of: Mapped[date] = mapped_column(Date, primary_key=True)
    rate: Mapped[Decimal] = mapped_column(Numeric(38, 18), nullable=False)
    set_by: Mapped[uuid.UUID | None] = mapped_column(nullable=True)
    updated_at: Mapped[datetime] = updated_at()


class AssetDocument(Base):
    __tablename__ = "asset_documents"

    id: Mapped[uuid.UUID] = uuid_pk()
    asset_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("assets.id", ondelete="CASCADE"), nullable=False)
    kind: Mapped[DocumentKind] = mapped_column(pg_enum(DocumentKind, "document_kind"), nullable=False)
    filename: Mapped[str] = mapped_column(String(255), nullable=False)
    content_type: Mapped[str] = mapped_column(String(100), nullable=False)
    size: Mapped[int] = mapped_column(BigInteger, nullable=False)
    sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    storage_key: Mapped[str] = mapped_column(String(255), nullable=False)
    uploaded_by: Mapped[uuid.UUID | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime] = created_at()

    __table_args__ = (Index("ix_asset_documents_asset", "asset_id", "created_at", "id"),)
