"""An order as placing and canceling return it and publish it (`OrderView`, the columns `VIEW_SQL` reads), built from
a raw asyncpg row (resolvers/raw_sql.py), and the reads of one stored order."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, fields
from datetime import datetime
from decimal import Decimal
from operator import attrgetter
from typing import Any

from models.trading import OrderStatus, OrderType, Side, TimeInForce


@dataclass(slots=True)
class OrderView:
    id: uuid.UUID
    seq: int
    market_id: uuid.UUID
    user_id: uuid.UUID
    client_order_id: str | None
    side: Side
    type: OrderType
    time_in_force: TimeInForce
    price: Decimal | None
    quantity: Decimal
    filled_quantity: Decimal
    status: OrderStatus
    reason: str | None
    expires_at: datetime | None
    wallet_address: str | None
    reserved_cash: Decimal
    created_at: datetime
    updated_at: datetime

    def event(self) -> dict[str, Any]:
        """The published form: every field by its name."""
        return dict(zip(_FIELDS, _values(self)))

    def copy(self) -> OrderView:
        """The view as it stands now (`dataclasses.replace(self)` without its per-call field walk)."""
        return OrderView(*_values(self))


_FIELDS = tuple(f.name for f in fields(OrderView))
_values = attrgetter(*_FIELDS)  # every field's value, in order (one C call; `dataclasses.fields` per call was ~5x)
VIEW_SQL = ", ".join(_FIELDS)  # the column names are the field names


def view_of(r: Any) -> OrderView:
    """An OrderView from a raw row of VIEW_SQL (asyncpg returns enums as str)."""
    return OrderView(
        r[0],
        r[1],
        r[2],
        r[3],
        r[4],
        Side(r[5]),
        OrderType(r[6]),
        TimeInForce(r[7]),
        r[8],
        r[9],
        r[10],
        OrderStatus(r[11]),
        r[12],
        r[13],
        r[14],
        r[15],
        r[16],
        r[17],
    )


BY_CLIENT_ID = f"SELECT {VIEW_SQL} FROM orders WHERE user_id = $1 AND client_order_id = $2"
BY_ID = f"SELECT {VIEW_SQL} FROM orders WHERE id = $1"
