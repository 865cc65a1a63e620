"""An API client whose schema has extra root types, for tests that compare the root-field fast path with the
generic executor on fields built for the test (tests/platform/test_root_field_*.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

import schema as schema_package
from core.services import Services
from server.app import create_app


@asynccontextmanager
async def extra_root_client(
    services: Services,
    monkeypatch: pytest.MonkeyPatch,
    queries: tuple[type, ...] = (),
    mutations: tuple[type, ...] = (),
) -> AsyncIterator[httpx.AsyncClient]:
    """An in-process client of an app whose schema adds `queries` and `mutations` to the real root types; the app is
    at `client.app`."""
    monkeypatch.setattr(schema_package, "QUERIES", (*schema_package.QUERIES, *queries))
    monkeypatch.setattr(schema_package, "MUTATIONS", (*schema_package.MUTATIONS, *mutations))
    app = create_app(services.settings, services)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        client.app = app  # type: ignore[attr-defined]
        yield client


async def post_compared(
    client: httpx.AsyncClient, body: dict[str, Any], token: str | None = None
) -> tuple[int, Any, dict[str, str]]:
    """(status, JSON body, headers) of a POST /graphql, without the headers that differ between two identical
    requests (request id) or follow from the body (length): what a fast path's answer is compared on."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    resp = await client.post("/graphql", json=body, headers=headers)
    kept = {k: v for k, v in resp.headers.items() if k not in ("x-request-id", "content-length")}
    return resp.status_code, resp.json(), kept
