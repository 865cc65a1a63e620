"""Declarative base, naming convention and column helpers shared by every model module."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, ClassVar

from sqlalchemy import DateTime, MetaData, Numeric, String, Table, func
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Hex strings (0x-addresses, 32-byte hashes) compare byte-wise: collation "C" keeps the many indexes on them
# cheap to maintain (a locale collation makes every comparison a strcoll call: ~3x slower bulk inserts) and
# lets any two such columns be joined whatever the database's default collation is.
Address = String(42, collation="C")
Hash32 = String(66, collation="C")

# Money: 38 digits, 18 after the point covers fiat minor units and 18-decimal tokens expressed in whole units.
Money = Numeric(38, 18)
# Raw integer token units (uint256 fits in 78 decimal digits).
TokenUnits = Numeric(78, 0)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {Decimal: Money, uuid.UUID: UUID(as_uuid=True), datetime: DateTime(timezone=True)}

    if TYPE_CHECKING:
        # every model maps a Table (none maps a join or a select), so Core statements may take Model.__table__
        __table__: ClassVar[Table]


def uuid_pk() -> Mapped[uuid.UUID]:
    return mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)


def created_at() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


def updated_at() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), onupdate=func.now(), nullable=False)
