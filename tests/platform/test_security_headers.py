"""Security headers on every HTTP response (GraphQL results and errors, 404/405/413, health, static, GraphiQL), a
CSP with anti-framing on the GraphiQL page, and the CSRF preflight header on every multipart request."""

from __future__ import annotations

import json

import httpx
import pytest
from starlette.responses import Response

from server import graphiql
from server.middleware import RequestContextMiddleware

EVERYWHERE = {"x-content-type-options": "nosniff", "x-frame-options": "DENY", "referrer-policy": "no-referrer"}


def assert_secured(resp: httpx.Response, *, cache: str | None = "no-store") -> None:
    for name, value in EVERYWHERE.items():
        assert resp.headers.get(name) == value, (
            resp.request.method,
            resp.request.url,
            resp.status_code,
            name,
            dict(resp.headers),
        )
    assert "frame-ancestors 'none'" in resp.headers.get("content-security-policy", ""), dict(resp.headers)
    if cache is not None:
        assert resp.headers.get("cache-control") == cache, (resp.request.url, resp.status_code, dict(resp.headers))


async def test_every_response_carries_the_security_headers(app_client) -> None:  # type: ignore[no-untyped-def]
    graphiql.install_assets()
    async with app_client(MAX_REQUEST_BYTES=2000, GRAPHIQL_ENABLED="true", METRICS_ON_API_PORT="true") as c:
        answers = [
            await c.post("/graphql", json={"query": "{ __typename }"}),  # 200 result
            await c.post("/graphql", json={"query": "{ nope }"}),  # 200 with errors
            await c.post("/graphql", content=b"[", headers={"content-type": "application/json"}),  # 400
            await c.post("/graphql", json={"query": "{ __typename }", "variables": {"s": "x" * 5000}}),  # 413
            await c.put("/graphql", json={"query": "{ __typename }"}),  # 405
            await c.get("/nowhere"),  # 404
            await c.get("/healthz"),
            await c.get("/readyz"),
            await c.get("/metrics"),
        ]
        page = await c.get("/graphql", headers={"accept": "text/html"})
        static = await c.get("/static/graphiql-init.js")
    async with app_client(GRAPHIQL_ENABLED="false") as c:
        answers.append(await c.get("/graphql", headers={"accept": "text/html"}))  # 404: GraphiQL disabled
    assert [r.status_code for r in answers] == [200, 200, 400, 413, 405, 404, 200, 200, 200, 404]
    for resp in answers:
        assert_secured(resp)
        assert resp.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
    # the page: a CSP that lets the locally served GraphiQL run and nothing else, never framed
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert_secured(page)
    assert page.headers["content-security-policy"] == graphiql.PAGE_CSP
    csp = dict(d.strip().split(" ", 1) for d in graphiql.PAGE_CSP.split(";"))
    assert csp["script-src"] == "'self'" and csp["default-src"] == "'none'" and csp["connect-src"] == "'self'"
    # versioned static assets may be cached; the other headers still apply
    assert static.status_code == 200
    assert_secured(static, cache=None)
    assert "no-store" not in static.headers.get("cache-control", "")


async def test_a_response_that_sets_its_own_cache_control_keeps_it() -> None:
    """no-store is the default, not an override: a view that marks a response cacheable (public persisted
    queries) is obeyed; the other headers still apply, whatever the status (a 429 here)."""

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        response = Response(
            b"{}", status_code=429, media_type="application/json", headers={"Cache-Control": "public, max-age=60"}
        )
        await response(scope, receive, send)

    transport = httpx.ASGITransport(app=RequestContextMiddleware(app))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        resp = await c.get("/graphql")
    assert resp.status_code == 429
    assert_secured(resp, cache="public, max-age=60")
    assert resp.headers.get_list("cache-control") == ["public, max-age=60"]


def multipart(query: str, **headers: str) -> dict[str, object]:
    return dict(
        files={"operations": (None, json.dumps({"query": query, "variables": {}})), "map": (None, "{}")},
        headers=headers,
    )


@pytest.mark.parametrize(
    "query", ["{ __typename }", 'mutation { logout(input: {refreshToken: "x"}) { ok } }', "query { me { id } }"]
)
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"apollo-require-preflight": ""},
        {"apollo-require-preflight": "  "},
        {"x-apollo-operation-name": ""},
        {"x-requested-with": "XMLHttpRequest"},
    ],
)
async def test_multipart_without_preflight_header_is_refused_for_every_operation(
    client, query: str, headers: dict[str, str]
) -> None:  # type: ignore[no-untyped-def]
    resp = await client.post("/graphql", **multipart(query, **headers))
    body = resp.json()
    assert resp.status_code == 400 and body["data"] is None, body
    assert body["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "reason": "CSRF_PREFLIGHT_REQUIRED"}
    assert_secured(resp)


@pytest.mark.parametrize(
    "content_type",
    ["multipart/form-data; boundary=XyZ", "Multipart/Form-Data; boundary=XyZ", " multipart/form-data ; boundary=XyZ"],
)
async def test_multipart_spellings_without_preflight_never_execute(client, content_type: str) -> None:  # type: ignore[no-untyped-def]
    body = (
        b'--XyZ\r\nContent-Disposition: form-data; name="operations"\r\n\r\n{"query": "{ __typename }"}\r\n'
        b'--XyZ\r\nContent-Disposition: form-data; name="map"\r\n\r\n{}\r\n--XyZ--\r\n'
    )
    resp = await client.post("/graphql", content=body, headers={"content-type": content_type})
    assert resp.status_code == 400 and resp.json()["data"] is None, resp.text
    assert resp.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


@pytest.mark.parametrize("header", ["Apollo-Require-Preflight", "X-Apollo-Operation-Name"])
async def test_multipart_with_a_preflight_header_runs(client, header: str) -> None:  # type: ignore[no-untyped-def]
    resp = await client.post("/graphql", **multipart("{ __typename }", **{header: "true"}))
    assert resp.json()["data"] == {"__typename": "Query"}, resp.text
