"""Benchmark (issue 17): OAuth 2.0 clients, one uvicorn worker, wrk, in one run:

- `{ markets { id } }` with a user's login token (baseline) and with a client token (scope check per operation);
- `POST /oauth/token` (client-credentials grant: HMAC-SHA256 secret check, JWT signature, last-use update and an
  audit row per token), next to the same read.

    .venv/bin/python -m bench.oauth_token [--duration 5] [--connections 20]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import os
import tempfile
import uuid

from bench.harness import REDIS_URL, print_table, scratch_database, uvicorn_server, wrk_post


async def _seed(database_url: str, pepper: bytes, secret: str) -> tuple[uuid.UUID, str]:
    from core.db import create_engine, create_session_factory
    from models.identity import User
    from models.oauth import OAuthClient, OAuthClientSecret

    engine = create_engine(database_url, pool_size=1)
    user_id, client_pk, client_id = uuid.uuid4(), uuid.uuid4(), f"rwac_{uuid.uuid4().hex[:16]}"
    async with create_session_factory(engine)() as s:
        s.add(User(id=user_id, email="bench-partner@example.com", password_hash="x", roles=["INVESTOR"]))
        await s.flush()
        s.add(
            OAuthClient(id=client_pk, client_id=client_id, name="bench", owner_id=user_id, scopes=["market-data:read"])
        )
        await s.flush()
        s.add(
            OAuthClientSecret(
                id=uuid.uuid4(),
                client_pk=client_pk,
                prefix=secret[:12],
                secret_hash=hmac.new(pepper, secret.encode(), hashlib.sha256).hexdigest(),
            )
        )
        await s.commit()
    await engine.dispose()
    return user_id, client_id


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--connections", type=int, default=20)
    args = parser.parse_args()

    from core.jwt_keys import KeyRing, generate_private_key_pem

    # OAUTH_SECRET_PEPPER is used as the UTF-8 bytes of its text
    pem, pepper, secret = generate_private_key_pem(), os.urandom(32).hex().encode(), "rwacs_" + os.urandom(32).hex()
    with scratch_database() as db_url, tempfile.TemporaryDirectory() as data_dir:
        user_id, client_id = asyncio.run(_seed(db_url, pepper, secret))
        keyring = KeyRing(pem, "bench", ttl_s=3600)
        user_token, _ = keyring.issue(user_id, ["INVESTOR"])
        client_token, _ = keyring.issue(user_id, ["INVESTOR"], scopes=["market-data:read"], client_id=client_id)
        env = {
            "DATABASE_URL": db_url,
            "REDIS_URL": REDIS_URL,
            "RWA_ENV": "test",
            "RWA_DATA_DIR": data_dir,
            "JWT_PRIVATE_KEY": pem,
            "JWT_KEY_ID": "bench",
            "KYC_ENCRYPTION_KEY": os.urandom(32).hex(),
            "OAUTH_SECRET_PEPPER": pepper.decode(),
            "RWA_REDIS_PREFIX": f"rwa-bench-{uuid.uuid4().hex[:6]}:",
            "LOG_LEVEL": "WARNING",
        }
        read = json.dumps({"query": "{ markets { id } }"})
        basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
        with uvicorn_server("server.app:create_app_from_env", env) as api:

            def post(name: str, path: str, body: str, headers: dict[str, str]):  # type: ignore[no-untyped-def]
                return wrk_post(
                    name, api.url + path, body, headers, duration_s=args.duration, connections=args.connections
                )

            post(
                "warmup",
                "/graphql",
                read,
                {"Content-Type": "application/json", "Authorization": f"Bearer {user_token}"},
            )
            baseline = post(
                "markets, user token",
                "/graphql",
                read,
                {"Content-Type": "application/json", "Authorization": f"Bearer {user_token}"},
            )
            scoped = post(
                "markets, client token",
                "/graphql",
                read,
                {"Content-Type": "application/json", "Authorization": f"Bearer {client_token}"},
            )
            tokens = post(
                "POST /oauth/token",
                "/oauth/token",
                "grant_type=client_credentials",
                {"Content-Type": "application/x-www-form-urlencoded", "Authorization": f"Basic {basic}"},
            )
            for r in (baseline, scoped, tokens):
                r.peak_rss_mb = api.peak_rss_mb()
        print_table([baseline, scoped, tokens], baseline)


if __name__ == "__main__":
    main()
