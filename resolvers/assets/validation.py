"""Input checks for assets: ISO codes and the per-type metadata schemas."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from decimal import Context, Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from core.errors import BadUserInput
from models.assets import AssetType

# ISO 4217 active codes (subset kept short on purpose: fiat used by issuers plus XAU/XAG for commodities)
CURRENCIES = frozenset(
    """
AED ARS AUD BGN BHD BRL CAD CHF CLP CNY COP CZK DKK EGP EUR GBP HKD HUF IDR ILS INR ISK JPY KES KRW KWD MAD MXN
MYR NGN NOK NZD OMR PEN PHP PLN QAR RON RSD RUB SAR SEK SGD THB TRY TWD UAH USD VND XAG XAU ZAR
""".split()
)
_COUNTRY = re.compile(r"^[A-Z]{2}$")


# the default 28 digits would round Numeric(38, 18) values; an explicit context costs less than localcontext()
_WIDE = Context(prec=80)
_ONE = Decimal(1)


# Calendar days a caller states as past facts (a valuation's asOf): from the lower bound KYC's dateOfBirth uses
# (resolvers/identity/kyc.py) to the newest day begun anywhere on earth (UTC+14), so a caller whose today is ahead
# of the server's UTC day is not refused, and nothing later.
EARLIEST_DATE = date(1900, 1, 1)
_AHEAD_OF_UTC = timedelta(hours=14)


def past_day(value: date, field: str, now: datetime | None = None) -> date:
    latest = ((now or datetime.now(UTC)) + _AHEAD_OF_UTC).date()
    if not EARLIEST_DATE <= value <= latest:
        raise BadUserInput(f"{field} must be a day from {EARLIEST_DATE.isoformat()} to today", field=field)
    return value


def trim(value: Decimal) -> Decimal:
    """Drop the column's trailing zeros without switching to exponent notation (300.000 -> 300, not 3E+2)."""
    n = value.normalize(_WIDE)
    # a positive exponent (decimal_places < 0) is the one case str() writes as "E+": cheaper than as_tuple()
    return n.quantize(_ONE, context=_WIDE) if "E+" in str(n) else n


def decimal_places(value: Decimal) -> int:
    """Digits after the point as written (1.50 -> 2, 3E+2 -> -2); 0 for NaN and infinities, which have none."""
    exponent = value.as_tuple().exponent  # an int, or 'n'/'N'/'F' for NaN/sNaN/Infinity
    return -exponent if isinstance(exponent, int) else 0


def _text(value: object, field: str) -> str:
    """Callers pass what the client sent: an explicit null (`updateAsset(input: {currency: null})`) or another
    type reached `.strip()` and came back INTERNAL."""
    if not isinstance(value, str):
        raise BadUserInput(f"{field} must be a string", field=field)
    return value


def currency(code: str, field: str = "currency") -> str:
    code = _text(code, field).strip().upper()
    if code not in CURRENCIES:
        raise BadUserInput(f"{code!r} is not a supported ISO-4217 currency code", field=field)
    return code


def jurisdiction(code: str) -> str:
    code = _text(code, "jurisdiction").strip().upper()
    if not _COUNTRY.match(code):
        raise BadUserInput("jurisdiction must be an ISO 3166-1 alpha-2 country code", field="jurisdiction")
    return code


def name(value: str) -> str:
    value = _text(value, "name").strip()
    if not 1 <= len(value) <= 200:
        raise BadUserInput("name must have 1 to 200 characters", field="name")
    return value


class _Strict(BaseModel):
    """Metadata keys follow the API's casing (camelCase: `areaSqm`), in and out; snake_case keys are unknown."""

    model_config = ConfigDict(extra="forbid", strict=False, alias_generator=to_camel, populate_by_name=False)


class RealEstate(_Strict):
    address: str = Field(min_length=3)
    area_sqm: Decimal = Field(gt=0)
    property_type: str = Field(min_length=1)


class Bond(_Strict):
    coupon_rate: Decimal = Field(ge=0, le=100)
    maturity_date: date
    face_value: Decimal = Field(gt=0)
    isin: str | None = Field(None, pattern=r"^[A-Z]{2}[A-Z0-9]{9}[0-9]$")


class Fund(_Strict):
    strategy: str = Field(min_length=1)
    management_fee_pct: Decimal = Field(ge=0, le=100)


class Invoice(_Strict):
    debtor: str = Field(min_length=1)
    due_date: date
    face_value: Decimal = Field(gt=0)


class Commodity(_Strict):
    commodity: str = Field(min_length=1)
    quantity: Decimal = Field(gt=0)
    unit: str = Field(min_length=1)


SCHEMAS: dict[AssetType, type[BaseModel] | None] = {
    AssetType.REAL_ESTATE: RealEstate,
    AssetType.BOND: Bond,
    AssetType.FUND: Fund,
    AssetType.INVOICE: Invoice,
    AssetType.COMMODITY: Commodity,
    AssetType.OTHER: None,
}


def metadata(asset_type: AssetType, raw: object) -> dict[str, Any]:
    """Validate `raw` against the type's schema; returns JSON-ready values (Decimals and dates as strings)."""
    raw = raw or {}
    if not isinstance(raw, dict):
        raise BadUserInput("metadata must be an object", field="metadata")
    model = SCHEMAS[asset_type]
    if model is None:
        return raw
    try:
        return model.model_validate(raw).model_dump(mode="json", exclude_none=True, by_alias=True)
    except ValidationError as exc:
        problems = {".".join(str(p) for p in e["loc"]) or "metadata": e["msg"] for e in exc.errors()}
        listed = "; ".join(f"{key}: {msg}" for key, msg in problems.items())
        raise BadUserInput(
            f"metadata is not valid for {asset_type.value} ({listed})", field="metadata", problems=problems
        ) from exc
