"""Payment intents: create (idempotent per user and key), read, list, cancel.

Amounts are Decimal with at most the currency's minor units: ISO-4217 for fiat (bank transfers), the token's
decimals for stablecoins. A STABLECOIN payment's currency is the token's symbol (e.g. USDC): the cash ledger is
credited in that currency. Each STABLECOIN payment gets a fresh deposit address (one HD index from a sequence).
"""

from __future__ import annotations

import enum
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation

from eth_utils import is_address, to_checksum_address
from sqlalchemy import Select, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import BadUserInput, Conflict, NotFound
from core.hd_wallet import DepositWallet
from models.payments import Payment, PaymentMethod, PaymentState, PaymentTransition
from models.tokens import Token, TokenKind
from resolvers.audit import record
from resolvers.idempotency_keys import check_key
from resolvers.pagination import Page, keyset_page
from resolvers.payments import notify
from resolvers.payments.states import Actor, transition, utcnow

# ISO-4217 minor units of the fiat currencies accepted by bank transfer.
MINOR_UNITS: dict[str, int] = {
    "USD": 2,
    "EUR": 2,
    "GBP": 2,
    "CHF": 2,
    "CAD": 2,
    "AUD": 2,
    "NZD": 2,
    "SGD": 2,
    "HKD": 2,
    "CNY": 2,
    "INR": 2,
    "BRL": 2,
    "MXN": 2,
    "SEK": 2,
    "NOK": 2,
    "DKK": 2,
    "PLN": 2,
    "CZK": 2,
    "ZAR": 2,
    "AED": 2,
    "SAR": 2,
    "ILS": 2,
    "TRY": 2,
    "THB": 2,
    "JPY": 0,
    "KRW": 0,
    "CLP": 0,
    "ISK": 0,
    "VND": 0,
    "HUF": 2,
    "BHD": 3,
    "KWD": 3,
    "JOD": 3,
    "OMR": 3,
    "TND": 3,
}
MIN_EXPIRES_S = 1
MAX_EXPIRES_S = 30 * 24 * 3600
DEFAULT_EXPIRES_S = 3600
MAX_AMOUNT = Decimal(10) ** 15


class StaffRole(str, enum.Enum):
    ADMIN = "ADMIN"
    COMPLIANCE = "COMPLIANCE"


@dataclass(frozen=True)
class PaymentFilter:
    state: PaymentState | None = None
    method: PaymentMethod | None = None
    currency: str | None = None
    chain_id: int | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    user_id: uuid.UUID | None = None


def parse_amount(amount: Decimal, places: int, field: str = "amount") -> Decimal:
    """Positive, finite, at most `places` decimals (else BAD_USER_INPUT, never rounded)."""
    try:
        if not amount.is_finite() or amount <= 0 or amount >= MAX_AMOUNT:
            raise BadUserInput(f"{field} must be positive and below 10^15", field=field)
        exponent = amount.normalize().as_tuple().exponent
    except InvalidOperation as exc:
        raise BadUserInput(f"{field} is not a number", field=field) from exc
    if isinstance(exponent, int) and -exponent > places:
        raise BadUserInput(f"{field} has more than {places} decimals for this currency", field=field, decimals=places)
    return amount


def to_units(amount: Decimal, decimals: int) -> int:
    return int(amount.scaleb(decimals))


def from_units(units: int, decimals: int) -> Decimal:
    return Decimal(units).scaleb(-decimals)


def _reference_code() -> str:
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O/1/I: read over the phone and typed by hand
    return "RWA-" + "".join(secrets.choice(alphabet) for _ in range(10))


async def _stablecoin(session: AsyncSession, chain_id: int | None, token: str | None) -> Token:
    if chain_id is None or not token:
        raise BadUserInput(
            "STABLECOIN payments need chainId and token", field="chainId" if chain_id is None else "token"
        )
    if not is_address(token):
        raise BadUserInput("token is not an address", field="token")
    row = (
        await session.execute(
            select(Token).where(
                Token.chain_id == chain_id,
                Token.address == to_checksum_address(token),
                Token.kind == TokenKind.STABLECOIN,
            )
        )
    ).scalar_one_or_none()
    if row is None:
        raise BadUserInput("no such stablecoin on that chain", field="token")
    return row


async def create_payment(
    session: AsyncSession,
    wallet: DepositWallet,
    *,
    user_id: uuid.UUID,
    amount: Decimal,
    currency: str,
    method: PaymentMethod,
    idempotency_key: str,
    chain_id: int | None = None,
    token: str | None = None,
    expires_in: int = DEFAULT_EXPIRES_S,
    request_id: str | None = None,
    now: datetime | None = None,
) -> tuple[Payment, bool]:
    """Create the payment, or return the one this user already created with this key (created=False).
    Reusing a key with different parameters is a CONFLICT. The caller commits."""
    key = idempotency_key
    check_key(key, field="idempotencyKey", max_chars=120, required=True)
    existing = await by_idempotency_key(session, user_id, key)
    code = currency.strip().upper()
    if not MIN_EXPIRES_S <= expires_in <= MAX_EXPIRES_S:
        raise BadUserInput(f"expiresIn must be {MIN_EXPIRES_S} to {MAX_EXPIRES_S} seconds", field="expiresIn")
    values: dict[str, object] = {}
    if method is PaymentMethod.STABLECOIN:
        tok = await _stablecoin(session, chain_id, token)
        if tok.symbol and code != tok.symbol.upper():
            raise BadUserInput(f"currency must be the token's symbol {tok.symbol}", field="currency")
        parse_amount(amount, tok.decimals)
        values.update(
            chain_id=chain_id,
            token_address=tok.address,
            decimals=tok.decimals,
            amount_units=to_units(amount, tok.decimals),
        )
    else:
        if chain_id is not None or token:
            raise BadUserInput("chainId and token are for STABLECOIN payments only", field="chainId")
        if code not in MINOR_UNITS:
            raise BadUserInput("currency must be an ISO-4217 code accepted for bank transfers", field="currency")
        parse_amount(amount, MINOR_UNITS[code])
    if existing is not None:
        same = (
            existing.method is method
            and existing.amount == amount
            and existing.currency == code
            and existing.chain_id == values.get("chain_id")
            and existing.token_address == values.get("token_address")
        )
        if not same:
            raise Conflict("idempotencyKey was already used for a different payment", reason="IDEMPOTENCY_KEY_REUSED")
        return existing, False
    now = now or utcnow()
    pid = uuid.uuid4()
    if method is PaymentMethod.STABLECOIN:
        index = (await session.execute(text("SELECT nextval('payment_deposit_index_seq')"))).scalar_one()
        values.update(derivation_index=index, deposit_address=wallet.address(int(index)))
    else:
        values["reference_code"] = _reference_code()
    payment = (
        await session.scalars(
            insert(Payment)
            .values(
                id=pid,
                user_id=user_id,
                method=method,
                state=PaymentState.AWAITING_FUNDS,
                amount=amount,
                currency=code,
                idempotency_key=key,
                expires_at=now + timedelta(seconds=expires_in),
                received_units=0,
                final_units=0,
                received_amount=Decimal(0),
                credited_amount=Decimal(0),
                refundable_amount=Decimal(0),
                refunded_amount=Decimal(0),
                created_at=now,
                updated_at=now,
                **values,
            )
            .on_conflict_do_nothing(index_elements=["user_id", "idempotency_key"])
            .returning(Payment)
        )
    ).one_or_none()
    if payment is None:  # a concurrent request with the same key won
        winner = await by_idempotency_key(session, user_id, key)
        assert winner is not None
        return winner, False
    session.add(
        PaymentTransition(
            payment_id=pid,
            from_state="NEW",
            to_state=PaymentState.AWAITING_FUNDS.value,
            actor_id=user_id,
            reason="created",
            at=now,
        )
    )
    notify.queue(session, payment, None)
    record(
        session,
        actor_id=user_id,
        action="payment.create",
        target_type="payment",
        target_id=pid,
        request_id=request_id,
        details={"method": method.value, "currency": code, "amount": str(amount), "chainId": chain_id},
    )
    return payment, True


async def by_idempotency_key(session: AsyncSession, user_id: uuid.UUID, key: str) -> Payment | None:
    return (
        await session.execute(select(Payment).where(Payment.user_id == user_id, Payment.idempotency_key == key))
    ).scalar_one_or_none()


async def get(session: AsyncSession, payment_id: uuid.UUID, *, lock: bool = False) -> Payment:
    stmt = select(Payment).where(Payment.id == payment_id).execution_options(populate_existing=True)
    if lock:
        stmt = stmt.with_for_update()
    payment = (await session.execute(stmt)).scalar_one_or_none()
    if payment is None:
        raise NotFound("payment not found")
    return payment


async def get_visible(session: AsyncSession, payment_id: uuid.UUID, viewer_id: uuid.UUID, staff: bool) -> Payment:
    """Owners see their own payments, ADMIN/COMPLIANCE all; anyone else gets NOT_FOUND (no existence leak)."""
    payment = await get(session, payment_id)
    if not staff and payment.user_id != viewer_id:
        raise NotFound("payment not found")
    return payment


def filtered(f: PaymentFilter) -> Select:
    stmt = select(Payment)
    if f.user_id is not None:
        stmt = stmt.where(Payment.user_id == f.user_id)
    if f.state is not None:
        stmt = stmt.where(Payment.state == f.state)
    if f.method is not None:
        stmt = stmt.where(Payment.method == f.method)
    if f.currency:
        stmt = stmt.where(Payment.currency == f.currency.strip().upper())
    if f.chain_id is not None:
        stmt = stmt.where(Payment.chain_id == f.chain_id)
    if f.created_from is not None:
        stmt = stmt.where(Payment.created_at >= f.created_from)
    if f.created_to is not None:
        stmt = stmt.where(Payment.created_at < f.created_to)
    return stmt


async def list_payments(
    session: AsyncSession,
    f: PaymentFilter,
    *,
    first: int | None = None,
    after: str | None = None,
    last: int | None = None,
    before: str | None = None,
) -> Page[Payment]:
    """Newest first; `created_from` inclusive, `created_to` exclusive."""
    return await keyset_page(
        session,
        filtered(f),
        [Payment.created_at, Payment.id],
        descending=True,
        first=first,
        after=after,
        last=last,
        before=before,
    )


async def cancel(
    session: AsyncSession, payment_id: uuid.UUID, actor_id: uuid.UUID, *, staff: bool, request_id: str | None = None
) -> Payment:
    payment = await get(session, payment_id, lock=True)
    if not staff and payment.user_id != actor_id:
        raise NotFound("payment not found")
    if payment.received_units or payment.state is not PaymentState.AWAITING_FUNDS:
        raise Conflict(f"a {payment.state.value} payment cannot be canceled", reason="INVALID_STATE")
    transition(
        session,
        payment,
        PaymentState.CANCELED,
        actor=Actor.OWNER if payment.user_id == actor_id else Actor.ADMIN,
        actor_id=actor_id,
        reason="canceled",
    )
    record(
        session,
        actor_id=actor_id,
        action="payment.cancel",
        target_type="payment",
        target_id=payment.id,
        request_id=request_id,
    )
    return payment
