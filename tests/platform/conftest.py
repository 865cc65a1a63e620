"""Platform test helpers: the real app in-process with settings a test chooses."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import httpx
import pytest

import schema as schema_package
from core.services import Services
from core.settings import Settings
from server.app import create_app
from tests.fixtures.db import settings_values
from tests.platform.probes import ProbeQuery


@pytest.fixture
def app_client(services: Services) -> Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]:
    """`async with app_client(MAX_ALIASES=2) as c:` -> a client of create_app(settings + overrides, test services)."""

    @asynccontextmanager
    async def _client(**overrides: object) -> AsyncIterator[httpx.AsyncClient]:
        settings = Settings(**{**_as_env(services.settings), **overrides})  # type: ignore[arg-type]
        app = create_app(settings, dataclasses.replace(services, settings=settings))
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            client.app = app  # type: ignore[attr-defined]
            yield client

    return _client


_as_env = settings_values  # the settings as constructor keywords (tests/fixtures/db.py)


@pytest.fixture
def probe_schema(monkeypatch: pytest.MonkeyPatch) -> None:
    """build_schema (hence create_app) includes the test-only probe fields of tests/platform/probes.py."""
    monkeypatch.setattr(schema_package, "QUERIES", (*schema_package.QUERIES, ProbeQuery))
