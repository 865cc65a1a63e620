"""The front-end check: the operations in clients/operations/*.graphql go through graphql-codegen (client preset,
strict scalars: every custom scalar must be mapped in clients/codegen.ts) and `tsc --strict`, then the node test
(clients/test/frontend.test.ts) runs them against a live API process on 127.0.0.1: sign-in and refresh, the asset
list and detail, orders placed and cancelled, balances, payments, and the order book, trades, ticker, my-orders and
payment-updates subscriptions through graphql-ws. npm packages: clients/package.json + lockfile (`npm ci` in
scripts/setup.sh)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from sqlalchemy import update

from core.passwords import hash_password
from models.assets import Asset
from models.identity import User
from models.tokens import Token
from tests.trading.factories import make_market, make_trader, make_user
from tests.trading.live import api_servers, committed_sessions

CLIENTS = Path(__file__).resolve().parents[2] / "clients"
PASSWORD = "correct-horse-9-battery"
METADATA = {"listingVenue": "StableRWA", "minimumInvestment": "1000"}


@pytest.fixture(scope="module")
def database_url(module_database_url: str) -> str:
    """The API process and the seeding commit: their rows stay in this module's own database."""
    return module_database_url


def run(*argv: str, env: dict[str, str] | None = None, timeout: float = 240) -> str:
    proc = subprocess.run(argv, cwd=CLIENTS, env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          timeout=timeout)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(argv)} failed ({proc.returncode}):\n{output[-6000:]}"
    return output


@pytest.fixture(scope="module")
def compiled() -> None:
    """codegen from the committed schema.graphql, then tsc --strict over the generated types, the client and the
    test; the test runs from dist/."""
    assert shutil.which("node") and shutil.which("npx"), "node and npm are needed (Node 20)"
    assert (CLIENTS / "node_modules" / ".bin" / "graphql-codegen").exists(), \
        "clients/node_modules missing: run scripts/setup.sh (npm ci in clients/)"
    shutil.rmtree(CLIENTS / "src" / "gql", ignore_errors=True)
    shutil.rmtree(CLIENTS / "dist", ignore_errors=True)
    run("node_modules/.bin/graphql-codegen", "--config", "codegen.ts", env={"NO_COLOR": "1"})
    run("node_modules/.bin/tsc", "--strict", "-p", "tsconfig.json")
    assert (CLIENTS / "dist" / "test" / "frontend.test.js").exists()


async def test_frontend_operations_run_against_a_live_api(compiled, database_url, redis_url,
                                                          tmp_path) -> None:  # type: ignore[no-untyped-def]
    async with committed_sessions(database_url) as sf:
        m = await make_market(sf, maker_bps=0, taker_bps=0, quote="USD")
        await make_market(sf)  # a second asset: the list has a next page
        seller = await make_trader(sf, m, tokens="1000")
        buyer = await make_trader(sf, m, cash="1000")
        admin = await make_user(sf, ["ADMIN"])
        emails = {}
        async with sf() as s:
            for name, user_id in (("seller", seller.user_id), ("buyer", buyer.user_id), ("admin", admin)):
                emails[name] = f"{name}-{uuid.uuid4().hex[:8]}@example.com"
                await s.execute(update(User).where(User.id == user_id).values(
                    email=emails[name], password_hash=hash_password(PASSWORD)))
            asset_id = (await s.get(Token, m.token_id)).asset_id  # type: ignore[union-attr]
            await s.execute(update(Asset).where(Asset.id == asset_id).values(attributes=METADATA))
            await s.commit()
    with api_servers(database_url, redis_url, n=1, data_dir=str(tmp_path)) as servers:
        output = run("node", "--test", "--test-reporter=spec", "dist/test/", env={
            "RWA_API_URL": servers.urls[0], "RWA_PASSWORD": PASSWORD, "RWA_MARKET_ID": str(m.market_id),
            "RWA_ASSET_ID": str(asset_id), "RWA_ASSET_METADATA": json.dumps(METADATA),
            "RWA_BUYER_EMAIL": emails["buyer"], "RWA_SELLER_EMAIL": emails["seller"],
            "RWA_ADMIN_EMAIL": emails["admin"], "NO_COLOR": "1"}, timeout=180)
    assert re.search(r"pass 4\b", output) and re.search(r"fail 0\b", output), output[-4000:]

