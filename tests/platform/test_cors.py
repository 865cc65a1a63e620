"""CORS: a browser app on an allowed origin can call the API (preflight answered, Authorization and Content-Type
allowed, the answer readable); other origins get no CORS grant; production allows none unless CORS_ORIGINS says so."""

from __future__ import annotations

import dataclasses

import httpx
import pytest

from core.settings import Environment, Settings
from server.app import create_app

APP_ORIGIN = "http://localhost:5173"
PREFLIGHT = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization,content-type"}


async def _client(services, **overrides):  # type: ignore[no-untyped-def]
    settings = services.settings.model_copy(update=overrides)
    app = create_app(settings, dataclasses.replace(services, settings=settings))
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=("127.0.0.1", 50000)), base_url="http://testserver"
    )


async def test_preflight_and_request_from_a_dev_front_end(services, make_user) -> None:  # type: ignore[no-untyped-def]
    user = await make_user()
    async with await _client(services) as c:
        pre = await c.options("/graphql", headers={"Origin": APP_ORIGIN, **PREFLIGHT})
        assert pre.status_code == 200
        assert pre.headers["access-control-allow-origin"] == APP_ORIGIN
        allowed = {h.strip().lower() for h in pre.headers["access-control-allow-headers"].split(",")}
        assert {"authorization", "content-type"} <= allowed
        assert "POST" in pre.headers["access-control-allow-methods"]
        assert pre.headers["x-content-type-options"] == "nosniff"  # security headers on preflights too
        res = await c.post(
            "/graphql",
            json={"query": "{ me { id } }"},
            headers={"Origin": APP_ORIGIN, "Authorization": f"Bearer {user.token}"},
        )
        assert res.status_code == 200 and res.json()["data"]["me"]["id"] == str(user.id)
        assert res.headers["access-control-allow-origin"] == APP_ORIGIN
        assert "access-control-allow-credentials" not in res.headers


async def test_an_unlisted_origin_gets_no_grant(services) -> None:  # type: ignore[no-untyped-def]
    async with await _client(services) as c:
        pre = await c.options("/graphql", headers={"Origin": "https://evil.example", **PREFLIGHT})
        assert pre.status_code == 400 and "access-control-allow-origin" not in pre.headers
        res = await c.post("/graphql", json={"query": "{ __typename }"}, headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in res.headers


@pytest.mark.parametrize(
    "origins, origin, granted",
    [
        (None, APP_ORIGIN, False),  # production: none by default
        ("https://app.example.com, https://admin.example.com/", "https://admin.example.com", True),
    ],
)
def test_production_allows_only_configured_origins(origins, origin, granted) -> None:  # type: ignore[no-untyped-def]
    settings = Settings(RWA_ENV=Environment.PRODUCTION, CORS_ORIGINS=origins)  # type: ignore[call-arg]
    assert (origin in settings.allowed_origins) is granted
