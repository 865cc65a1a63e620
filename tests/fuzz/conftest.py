"""The fuzz gate's stage: the real app (own engine, read pool, Redis) on a committed database of its own, seeded with
a small world (tests/fuzz/world.py), reached through httpx's ASGITransport, with local anvil chains configured.

Nothing is rolled back between examples on purpose: rows created by one generated mutation (an asset, an order, a
payment) become the targets of later ones, as they would on a running server."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from chains.anvil import AnvilNode
from core.jwt_keys import generate_private_key_pem
from core.services import Services, build_services
from core.settings import Environment, Settings
from server.app import create_app
from tests.fuzz.world import World, seed_world

# anvil's/hardhat's public test mnemonic: fine outside production, and it gives stablecoin payments a deposit wallet
TEST_MNEMONIC = "test test test test test test test test test test test junk"


@pytest.fixture(scope="module")
def fuzz_rpc_env(local_chains: dict[int, AnvilNode]) -> Iterator[None]:
    """RPC_URLS_<chain> for the local chains (Settings.rpc_urls reads them from the environment)."""
    names = {f"RPC_URLS_{cid}": node.url for cid, node in local_chains.items()}
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update(names)
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="module")
async def fuzz_services(
    module_database_url: str, redis_url: str, fuzz_rpc_env: None, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Services]:
    data_dir: Path = tmp_path_factory.mktemp("fuzz-data")
    settings = Settings(
        RWA_ENV=Environment.TEST,
        DATABASE_URL=module_database_url,
        REDIS_URL=redis_url,
        RWA_REDIS_PREFIX=f"rwa-fuzz:{uuid.uuid4().hex[:8]}:",
        RWA_DATA_DIR=str(data_dir),
        JWT_PRIVATE_KEY=generate_private_key_pem(),
        KYC_ENCRYPTION_KEY=os.urandom(32).hex(),
        HD_WALLET_MNEMONIC=TEST_MNEMONIC,
        LOG_JSON=False,
        # the callers sign in again after every generated `logout` of their own session, far more
        # often than the per-account limit allows (the limiter has its own tests)
        LOGIN_RATE_PER_MINUTE=1_000_000,
    )
    services = build_services(settings)  # as `rwa serve` builds them: its own engine, sessions and read pool
    await services.open_read_pool()
    try:
        yield services
    finally:
        keys = [k async for k in services.redis.scan_iter(match=settings.redis_prefix + "*", count=500)]
        if keys:
            await services.redis.delete(*keys)
        await services.aclose()


@pytest.fixture(scope="module")
def fuzz_app(fuzz_services: Services) -> Starlette:
    return create_app(fuzz_services.settings, fuzz_services)


@pytest.fixture(scope="module")
async def fuzz_client(fuzz_app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """The generated operations' client."""
    transport = httpx.ASGITransport(app=fuzz_app, client=("127.0.0.1", 50001))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
async def setup_client(fuzz_app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """Seeding and restoring accounts come from another address: the per-IP limits (login, register) the generated
    operations run into must not refuse them."""
    transport = httpx.ASGITransport(app=fuzz_app, client=("127.0.0.2", 50002))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
async def world(setup_client: httpx.AsyncClient, fuzz_services: Services) -> World:
    return await seed_world(setup_client, fuzz_services)
