"""An order as placing and canceling return it and publish it (`OrderView`, the columns `VIEW_SQL` reads), built from
a raw asyncpg row (resolvers/raw_sql.py), and the reads of one stored order."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, fields
from datetime import datetime
from decimal import Decimal
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
        """The published form: every field by its name (spelled out: ~5x `dataclasses.fields` per call)."""
        return {
            "id": self.id,
            "seq": self.seq,
            "market_id": self.market_id,
            "user_id": self.user_id,
            "client_order_id": self.client_order_id,
            "side": self.side,
            "type": self.type,
            "time_in_force": self.time_in_force,
            "price": self.price,
            "quantity": self.quantity,
            "filled_quantity": self.filled_quantity,
            "status": self.status,
            "reason": self.reason,
            "expires_at": self.expires_at,
            "wallet_address": self.wallet_address,
            "reserved_cash": self.reserved_cash,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }

    def copy(self) -> OrderView:
        """The view as it stands now (`dataclasses.replace(self)` without its per-call field walk)."""
        return OrderView(
            self.id,
            self.seq,
            self.market_id,
            self.user_id,
            self.client_order_id,
            self.side,
            self.type,
            self.time_in_force,
            self.price,
            self.quantity,
            self.filled_quantity,
            self.status,
            self.reason,
            self.expires_at,
            self.wallet_address,
            self.reserved_cash,
            self.created_at,
            self.updated_at,
        )


VIEW_SQL = ", ".join(f.name for f in fields(OrderView))  # the column names are the field names


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
