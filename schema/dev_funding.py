"""Development-only root fields: shortcuts that create value out of nothing (funding a user's cash without a
payment). They are part of the schema only outside production: `build_schema` leaves `DevMutation` out when
RWA_ENV=production, so there is no field to call (a request naming it fails validation like any unknown field),
and the committed schema.graphql (the production contract) does not list them."""

from __future__ import annotations

import uuid
from decimal import Decimal

import strawberry
from strawberry.types import Info

from core.errors import BadUserInput, NotFound
from models.identity import Role, User
from resolvers import ledger
from resolvers.assets.validation import trim
from resolvers.audit import record
from schema.mutations import mutation
from schema.permissions import requires
from schema.trading import CashBalance


@strawberry.type
class DevMutation:
    @mutation(
        extensions=requires(Role.ADMIN),
        description=(
            "Development only (absent from the production schema): credit a user's cash through the ledger "
            "(idempotent per reference)."
        ),
    )
    async def credit_cash(
        self, info: Info, user_id: uuid.UUID, amount: Decimal, currency: str, reference: str
    ) -> list[CashBalance]:
        actor = info.context.viewer.require_user()
        if not reference or len(reference) > 80:
            raise BadUserInput("reference must have 1 to 80 characters", field="reference")
        session = await info.context.session()
        if await session.get(User, user_id) is None:
            raise NotFound("user not found", field="userId")
        currency = currency.strip().upper()
        if not currency or len(currency) > 16:
            raise BadUserInput("currency must have 1 to 16 characters", field="currency")

        posted = await ledger.credit_deposit(
            session, user_id, amount, currency, reference=f"admin-credit:{reference}", details={"by": str(actor)}
        )
        if posted:
            record(
                session,
                actor_id=actor,
                action="cash.credit",
                target_type="user",
                target_id=user_id,
                request_id=info.context.request_id,
                details={"amount": str(amount), "currency": currency},
            )
        rows = await ledger.balances(session, user_id)
        return [
            CashBalance(
                currency=b.currency, available=trim(b.available), reserved=trim(b.reserved), total=trim(b.total)
            )
            for b in rows
        ]
