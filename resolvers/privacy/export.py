"""`exportMyData`: everything the platform holds about the caller, as one JSON document (GDPR art. 15 and 20).

Every table keyed by the user is read whole (`to_jsonb` of each row, so a column added later is exported too) minus
credentials (password, key and secret digests, the TOTP secret) and the ids of other people: staff who decided on
the caller's case or withdrawal are named by role ("staff"), a trade names the caller's side, never the
counterparty, audit rows by someone else show who acted as `self`/`staff`/`system` only, and the caller's own
actions on other people's objects (a reviewer's decisions) keep the action and time, not the target or details. KYC personal fields
are decrypted with the caller's own data key; the document is for the caller only (a person's own login: API keys
and OAuth clients cannot call it). Keys are camelCase, money and token amounts exact strings, as everywhere in the
API.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from core.encryption import FieldCipher
from core.errors import Forbidden
from models.identity import KycCase
from resolvers import unit_of_work
from resolvers.audit import record
from resolvers.context import Context
from resolvers.identity.kyc import read_details

FORMAT_VERSION = 1

# (section, SQL returning one jsonb array, table that must exist): :uid is the caller
_SECTIONS: tuple[tuple[str, str, str], ...] = (
    ("wallets", "SELECT jsonb_agg(to_jsonb(t) ORDER BY t.linked_at) FROM wallets t WHERE t.user_id = :uid", "wallets"),
    (
        "apiKeys",
        "SELECT jsonb_agg(to_jsonb(t) - 'key_hash' ORDER BY t.created_at) FROM api_keys t WHERE t.user_id = :uid",
        "api_keys",
    ),
    (
        "sessions",
        "SELECT jsonb_agg(to_jsonb(t) ORDER BY t.created_at) FROM refresh_token_families t WHERE t.user_id = :uid",
        "refresh_token_families",
    ),
    (
        "oauthClients",
        "SELECT jsonb_agg(to_jsonb(t) - 'created_by' ORDER BY t.created_at) FROM oauth_clients t "
        "WHERE t.owner_id = :uid",
        "oauth_clients",
    ),
    (
        "ledgerAccounts",
        "SELECT jsonb_agg(to_jsonb(t) ORDER BY t.created_at) FROM ledger_accounts t WHERE t.owner_id = :uid",
        "ledger_accounts",
    ),
    (
        "ledgerEntries",
        """SELECT jsonb_agg(jsonb_build_object('id', e.id, 'accountId', e.account_id,
                            'currency', e.currency, 'amount', e.amount, 'createdAt', e.created_at,
                            'transactionId', x.id, 'kind', x.kind, 'reference', x.reference) ORDER BY e.id)
                         FROM ledger_entries e JOIN ledger_accounts a ON a.id = e.account_id
                         JOIN ledger_transactions x ON x.id = e.transaction_id WHERE a.owner_id = :uid""",
        "ledger_entries",
    ),
    ("orders", "SELECT jsonb_agg(to_jsonb(t) ORDER BY t.seq) FROM orders t WHERE t.user_id = :uid", "orders"),
    (
        "trades",
        """SELECT jsonb_agg(jsonb_build_object('id', t.id, 'marketId', t.market_id,
                     'side', CASE WHEN t.buyer_id = :uid THEN 'BUY' ELSE 'SELL' END,
                     'orderId', CASE WHEN (t.buyer_id = :uid) = (t.taker_side = 'BUY') THEN t.taker_order_id
                                     ELSE t.maker_order_id END,
                     'liquidity', CASE WHEN (t.buyer_id = :uid) = (t.taker_side = 'BUY') THEN 'TAKER' ELSE 'MAKER' END,
                     'price', t.price, 'quantity', t.quantity,
                     'fee', CASE WHEN (t.buyer_id = :uid) = (t.taker_side = 'BUY') THEN t.taker_fee
                                 ELSE t.maker_fee END,
                     'settlement', t.settlement, 'failureReason', t.failure_reason, 'createdAt', t.created_at)
                   ORDER BY t.seq)
                 FROM trades t WHERE t.buyer_id = :uid OR t.seller_id = :uid""",
        "trades",
    ),
    (
        "payments",
        "SELECT jsonb_agg(to_jsonb(t) ORDER BY t.created_at) FROM payments t WHERE t.user_id = :uid",
        "payments",
    ),
    (
        "withdrawals",
        "SELECT jsonb_agg(to_jsonb(t) - 'decided_by' ORDER BY t.created_at) FROM withdrawals t WHERE t.user_id = :uid",
        "withdrawals",
    ),
    (
        "offeringSubscriptions",
        "SELECT jsonb_agg(to_jsonb(t) ORDER BY t.seq) FROM offering_subscriptions t WHERE t.user_id = :uid",
        "offering_subscriptions",
    ),
    (
        "tokenIssuanceLines",
        "SELECT jsonb_agg(to_jsonb(t)) FROM token_issuance_lines t WHERE t.user_id = :uid",
        "token_issuance_lines",
    ),
    (
        "holdings",
        """SELECT jsonb_agg(to_jsonb(h) ORDER BY h.chain_id, h.token_address) FROM holdings h
                    WHERE h.holder IN (SELECT address FROM wallets WHERE user_id = :uid)""",
        "holdings",
    ),
    (
        "erasureRequests",
        "SELECT jsonb_agg(to_jsonb(t) - 'processed_by' ORDER BY t.requested_at) "
        "FROM erasure_requests t WHERE t.user_id = :uid",
        "erasure_requests",
    ),
)

# audit rows by the caller, or about any object of theirs (the ids gathered below)
_MY_OBJECT_IDS = """
SELECT array_agg(id::text) FROM (
    SELECT :uid AS id UNION ALL SELECT id FROM kyc_cases WHERE user_id = :uid
    UNION ALL SELECT id FROM wallets WHERE user_id = :uid UNION ALL SELECT id FROM api_keys WHERE user_id = :uid
    UNION ALL SELECT id FROM orders WHERE user_id = :uid UNION ALL SELECT id FROM payments WHERE user_id = :uid
    UNION ALL SELECT id FROM withdrawals WHERE user_id = :uid
    UNION ALL SELECT id FROM offering_subscriptions WHERE user_id = :uid
    UNION ALL SELECT id FROM oauth_clients WHERE owner_id = :uid
    UNION ALL SELECT id FROM erasure_requests WHERE user_id = :uid) ids"""
_AUDIT = """
SELECT jsonb_agg(jsonb_build_object('id', a.id, 'at', a.at, 'action', a.action, 'targetType', a.target_type,
                 -- what the caller did to someone else's object (staff work): the action, not whose or what
                 'targetId', CASE WHEN a.target_id = ANY(:ids) THEN a.target_id END,
                 'details', CASE WHEN a.target_id = ANY(:ids) THEN a.details END,
                 'actor', CASE WHEN a.actor_id = :uid THEN 'self' WHEN a.actor_id IS NULL THEN 'system'
                               ELSE 'staff' END) ORDER BY a.id)
FROM audit_log a WHERE a.actor_id = :uid OR a.target_id = ANY(:ids)"""


def _number(raw: str) -> int | str:
    value = int(raw)
    return value if -(2**53) < value < 2**53 else raw  # a JavaScript number holds it exactly, else a string


def _load(raw: str | None) -> Any:
    return _camel(json.loads(raw, parse_float=str, parse_int=_number)) if raw is not None else []


_FREE_FORM = frozenset({"details", "attributes", "metadata"})  # stored JSON, exported as stored


def _camel(value: Any) -> Any:
    """Column names as the API spells keys (camelCase); stored free-form JSON is left as it is."""
    if isinstance(value, list):
        return [_camel(v) for v in value]
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            head, *rest = key.split("_")
            name = head + "".join(p[:1].upper() + p[1:] for p in rest)
            out[name] = item if key in _FREE_FORM else _camel(item)
        return out
    return value


async def _existing_tables(session: AsyncSession) -> set[str]:
    names = sorted({table for _, _, table in _SECTIONS})
    rows = (
        await session.execute(
            text(
                "SELECT relname FROM pg_class WHERE relkind IN ('r', 'p') "
                "AND relname = ANY(:n) AND pg_table_is_visible(oid)"
            ),
            {"n": names},
        )
    ).scalars()
    return set(rows)


async def collect(
    session: AsyncSession, master: FieldCipher, user_id: uuid.UUID, now: datetime | None = None
) -> dict[str, Any]:
    """The bundle for one user (no access check: callers decide who may see it)."""
    params = {"uid": user_id}
    profile = (
        await session.execute(
            text(
                "SELECT (to_jsonb(u) - 'password_hash' - 'failed_logins' - 'locked_until')::text FROM users u "
                "WHERE u.id = :uid"
            ),
            params,
        )
    ).scalar_one()
    bundle: dict[str, Any] = {
        "formatVersion": FORMAT_VERSION,
        "generatedAt": (now or datetime.now(UTC)).isoformat(),
        "profile": _load(profile),
    }
    mfa = (
        await session.execute(text("SELECT confirmed_at, created_at FROM user_mfa WHERE user_id = :uid"), params)
    ).first()
    bundle["mfa"] = {
        "enabled": bool(mfa and mfa.confirmed_at),
        "enrolledAt": mfa.confirmed_at.isoformat() if mfa and mfa.confirmed_at else None,
    }
    case = (await session.execute(text("SELECT id FROM kyc_cases WHERE user_id = :uid"), params)).scalar()
    if case is None:
        bundle["kyc"] = None
    else:
        row = await session.get(KycCase, case)
        assert row is not None
        kyc = _load(
            (
                await session.execute(
                    text(
                        "SELECT (to_jsonb(k) - 'personal_data' - 'reviewed_by')::text FROM kyc_cases k WHERE k.id = :id"
                    ),
                    {"id": case},
                )
            ).scalar_one()
        )
        details = await read_details(session, master, row)
        if details is not None:
            personal = asdict(details)
            personal["date_of_birth"] = details.date_of_birth.isoformat()
            personal["document_type"] = details.document_type.value
            kyc["personalDetails"] = _camel(personal)
        else:
            kyc["personalDetails"] = None
        bundle["kyc"] = kyc
    tables = await _existing_tables(session)
    for name, sql, table in _SECTIONS:
        if table in tables:
            bundle[name] = _load((await session.execute(text(f"SELECT ({sql})::text"), params)).scalar())
    ids = (await session.execute(text(_MY_OBJECT_IDS), params)).scalar() or []
    bundle["auditLog"] = _load(
        (await session.execute(text(f"SELECT ({_AUDIT})::text"), {**params, "ids": ids})).scalar()
    )
    return bundle


async def export_my_data(ctx: Context) -> dict[str, Any]:
    viewer = ctx.viewer
    user_id = viewer.require_user()
    if not viewer.interactive:
        raise Forbidden("exportMyData needs your own sign-in (not an API key or an OAuth client)")
    session = await ctx.session()
    bundle = await collect(session, ctx.services.cipher, user_id)
    record(
        session,
        actor_id=user_id,
        action="privacy.export",
        target_type="user",
        target_id=user_id,
        request_id=ctx.request_id,
        details={"sections": sorted(k for k in bundle if k not in ("formatVersion", "generatedAt"))},
    )
    await unit_of_work.commit(session)
    return bundle
