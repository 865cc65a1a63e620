"""Migration 0019 moves KYC personal data written under the master key to per-user data keys, and back on
downgrade (checked on a scratch database)."""

from __future__ import annotations

import importlib.util
import os
import uuid
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from core.data_keys import unwrap, wrap_aad
from core.encryption import FieldCipher
from core.migrate import downgrade, upgrade
from core.settings import get_settings

MIGRATION = Path(__file__).resolve().parents[2] / "migrations" / "versions" / "0019_user_data_keys.py"


def _revisions() -> tuple[str, str]:
    spec = importlib.util.spec_from_file_location("m0019", MIGRATION)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module.revision, module.down_revision


async def test_existing_rows_are_rewrapped_under_per_user_keys(
    database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    revision, before = _revisions()
    master_key = os.urandom(32)
    monkeypatch.setenv("KYC_ENCRYPTION_KEY", master_key.hex())
    monkeypatch.setenv("RWA_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    master = FieldCipher(master_key)
    name = f"rwa_dek_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(
        make_url(database_url).set(drivername="postgresql", database="postgres").render_as_string(False)
    )
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = make_url(database_url).set(database=name).render_as_string(False)
    try:
        await upgrade(url, before)
        conn = await asyncpg.connect(make_url(url).set(drivername="postgresql").render_as_string(False))
        try:
            cases = {}
            for n in range(3):
                user_id, case_id = uuid.uuid4(), uuid.uuid4()
                await conn.execute(
                    "INSERT INTO users (id, email, password_hash, roles, status, failed_logins) "
                    "VALUES ($1, $2, 'x', '{INVESTOR}', 'ACTIVE', 0)",
                    user_id,
                    f"m{n}-{user_id.hex[:6]}@example.com",
                )
                plain = f'{{"full_name": "Person {n}"}}'.encode()
                await conn.execute(
                    "INSERT INTO kyc_cases (id, user_id, status, personal_data) VALUES ($1, $2, 'PENDING_REVIEW', $3)",
                    case_id,
                    user_id,
                    master.encrypt(plain, case_id.bytes),
                )
                cases[case_id] = (user_id, plain)
            await upgrade(url)
            for case_id, (user_id, plain) in cases.items():
                blob = await conn.fetchval("SELECT personal_data FROM kyc_cases WHERE id = $1", case_id)
                wrapped = await conn.fetchval("SELECT wrapped_key FROM user_data_keys WHERE user_id = $1", user_id)
                dek = unwrap(master, user_id, wrapped)
                assert dek.decrypt(blob, case_id.bytes) == plain
                with pytest.raises(Exception):
                    master.decrypt(blob, case_id.bytes)  # no longer under the master key
                with pytest.raises(Exception):  # a wrapped key does not open for another user
                    master.decrypt(wrapped, wrap_aad(uuid.uuid4()))
            assert await conn.fetchval("SELECT count(DISTINCT wrapped_key) FROM user_data_keys") == 3

            # an erased user's data does not come back on downgrade; the others are under the master key again
            erased_case, (erased_user, _) = next(iter(cases.items()))
            await conn.execute(
                "UPDATE user_data_keys SET wrapped_key = NULL, destroyed_at = now() WHERE user_id = $1", erased_user
            )
            await downgrade(url, before)
            for case_id, (_user_id, plain) in cases.items():
                blob = await conn.fetchval("SELECT personal_data FROM kyc_cases WHERE id = $1", case_id)
                if case_id == erased_case:
                    assert blob is None
                else:
                    assert master.decrypt(blob, case_id.bytes) == plain
            assert await conn.fetchval("SELECT to_regclass('user_data_keys')") is None
        finally:
            await conn.close()
    finally:
        get_settings.cache_clear()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
