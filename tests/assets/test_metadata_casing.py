"""Asset metadata keys follow the API's casing (camelCase) in and out, and migration 0021 renamed stored keys."""

from __future__ import annotations

import json
import uuid

import asyncpg
from sqlalchemy.engine import make_url

from core.migrate import downgrade, upgrade

CREATE = (
    'mutation($m: JSON!) { createAsset(input: {name: "Harbour Bond", type: BOND, jurisdiction: "DE", '
    'currency: "EUR", metadata: $m}) { asset { id metadata } errors { code field message } } }'
)


async def test_metadata_is_camel_case_in_and_out(gql, make_user) -> None:  # type: ignore[no-untyped-def]
    issuer = await make_user(roles=["ISSUER"])
    sent = {"couponRate": "3.50", "maturityDate": "2031-06-30", "faceValue": "1000", "isin": "DE0001102580"}
    created = await gql(CREATE, {"m": sent}, token=issuer.token)
    asset = gql.payload(created, "createAsset", "asset")
    assert asset["metadata"] == {
        "couponRate": "3.50",
        "maturityDate": "2031-06-30",
        "faceValue": "1000",
        "isin": "DE0001102580",
    }
    read = await gql(
        "query($id: UUID!) { asset(id: $id) { metadata } }",
        {"id": asset["id"]},
        token=issuer.token,
    )
    assert read["data"]["asset"]["metadata"] == asset["metadata"]


async def test_snake_case_keys_are_refused_by_their_camel_case_name(gql, make_user) -> None:  # type: ignore[no-untyped-def]
    issuer = await make_user(roles=["ISSUER"])
    refused = await gql(
        CREATE, {"m": {"coupon_rate": "3.5", "maturity_date": "2031-06-30", "face_value": "1000"}}, token=issuer.token
    )
    assert gql.error_code(refused) == "BAD_USER_INPUT"
    (error,) = refused["data"]["createAsset"]["errors"]
    assert error["field"] == ["input", "metadata"]
    assert "couponRate: Field required" in error["message"] and "coupon_rate: " in error["message"]


async def test_migration_renames_stored_keys(database_url: str) -> None:
    name = f"rwa_meta_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(
        make_url(database_url).set(drivername="postgresql", database="postgres").render_as_string(False)
    )
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        url = make_url(database_url).set(database=name).render_as_string(False)
        await upgrade(url, "0021")
        await downgrade(url, "0020")
        conn = await asyncpg.connect(make_url(url).set(drivername="postgresql").render_as_string(False))
        try:
            issuer = uuid.uuid4()
            await conn.execute(
                "INSERT INTO users (id, email, password_hash, roles, status, failed_logins) "
                "VALUES ($1, 'i@example.com', 'x', ARRAY['ISSUER'], 'ACTIVE', 0)",
                issuer,
            )
            rows = {
                "REAL_ESTATE": {"address": "Kade 1", "area_sqm": "120.5", "property_type": "office"},
                "OTHER": {"area_sqm": "kept as the issuer wrote it"},
            }
            ids = {}
            for kind, attributes in rows.items():
                ids[kind] = uuid.uuid4()
                await conn.execute(
                    "INSERT INTO assets (id, issuer_id, name, type, status, jurisdiction, currency, "
                    "description, attributes) VALUES ($1, $2, 'a', $3, 'DRAFT', 'DE', 'EUR', '', "
                    "$4::jsonb)",
                    ids[kind],
                    issuer,
                    kind,
                    json.dumps(attributes),
                )
            await upgrade(url, "0021")
            stored = {
                kind: json.loads(await conn.fetchval("SELECT attributes::text FROM assets WHERE id = $1", i))
                for kind, i in ids.items()
            }
            assert stored == {
                "REAL_ESTATE": {"address": "Kade 1", "areaSqm": "120.5", "propertyType": "office"},
                "OTHER": {"area_sqm": "kept as the issuer wrote it"},
            }
            await downgrade(url, "0020")
            back = json.loads(
                await conn.fetchval("SELECT attributes::text FROM assets WHERE id = $1", ids["REAL_ESTATE"])
            )
            assert back == rows["REAL_ESTATE"]
        finally:
            await conn.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
