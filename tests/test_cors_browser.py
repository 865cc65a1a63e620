"""CORS in a real browser: headless Chromium (Debian's /usr/bin/chromium) loads a front-end page from another origin
(a second local port) and calls the API (a real uvicorn process, `rwa serve`'s websocket stack) from it: a query
with `Authorization` (so the browser sends a preflight first) and a graphql-transport-ws subscription. A page on an
origin CORS_ORIGINS does not list gets neither: the browser refuses to hand it the query's answer, and the API
refuses its socket (browsers apply no CORS to WebSockets; the server checks their Origin against CORS_ORIGINS)."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import async_playwright

from core.jwt_keys import KeyRing
from tests.fixtures.app import TEST_JWT_KEY, free_port
from tests.test_graphiql_browser import CHROMIUM, CHROMIUM_ARGS
from tests.trading.factories import make_market, make_user
from tests.trading.live import api_servers, committed_sessions

PAGE = b"<!doctype html><html><head><title>front-end</title></head><body>a front-end app</body></html>"

# What a front-end does, run in the page (so with the page's origin): a query over fetch with a bearer token, and a
# subscription over graphql-transport-ws; returns what the page could see.
CALL_API = """async ([api, token, marketId]) => {
  const out = {};
  try {
    const r = await fetch(api + '/graphql', {method: 'POST',
      headers: {'Content-Type': 'application/json', 'Authorization': 'Bearer ' + token},
      body: JSON.stringify({query: 'query($m: UUID!) { me { id } orderBook(marketId: $m) { marketId sequence } }',
                            variables: {m: marketId}})});
    out.query = {status: r.status, body: await r.json(), requestId: r.headers.get('x-request-id')};
  } catch (e) { out.query = {error: String(e)}; }
  out.subscription = await new Promise((resolve) => {
    const ws = new WebSocket(api.replace('http', 'ws') + '/graphql', 'graphql-transport-ws');
    const timer = setTimeout(() => { ws.close(); resolve({error: 'timeout'}); }, 10000);
    const done = (v) => { clearTimeout(timer); ws.close(); resolve(v); };
    ws.onopen = () => ws.send(JSON.stringify({type: 'connection_init', payload: {authorization: 'Bearer ' + token}}));
    ws.onerror = () => done({error: 'socket error'});
    ws.onclose = (e) => done({error: 'closed ' + e.code});
    ws.onmessage = (m) => {
      const msg = JSON.parse(m.data);
      if (msg.type === 'connection_ack') ws.send(JSON.stringify({id: '1', type: 'subscribe', payload: {
        query: 'subscription($m: UUID!) { orderBook(marketId: $m) { marketId sequence snapshot } }',
        variables: {m: marketId}}}));
      else if (msg.type === 'next') done({data: msg.payload.data});
      else if (msg.type === 'ping') ws.send(JSON.stringify({type: 'pong'}));
      else if (msg.type === 'error') done({error: JSON.stringify(msg.payload)});
    };
  });
  return out;
}"""


@pytest.fixture(scope="module")
def database_url(module_database_url: str) -> str:
    return module_database_url


class _Page(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, *args: Any) -> None:
        pass


def _serve_page() -> tuple[http.server.ThreadingHTTPServer, str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), _Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture
def front_ends() -> Iterator[tuple[str, str]]:
    """Two front-end origins on this host: the allowed one and another."""
    allowed, allowed_url = _serve_page()
    other, other_url = _serve_page()
    try:
        yield allowed_url, other_url
    finally:
        for server in (allowed, other):
            server.shutdown()
            server.server_close()


async def test_a_page_on_another_origin_queries_and_subscribes(
    front_ends, database_url, redis_url, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    assert CHROMIUM.exists(), "Debian chromium is required (apt-get install chromium)"
    allowed_origin, other_origin = front_ends
    async with committed_sessions(database_url) as sf:
        market = await make_market(sf)
        user_id = await make_user(sf)
    token, _ = KeyRing(TEST_JWT_KEY, "dev-1").issue(user_id, ["INVESTOR"])
    with api_servers(
        database_url, redis_url, n=1, data_dir=str(tmp_path), extra_env={"CORS_ORIGINS": allowed_origin}
    ) as servers:
        api = servers.urls[0]
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                page = await browser.new_page()
                await page.goto(allowed_origin + "/", wait_until="load")
                seen = await page.evaluate(CALL_API, [api, token, str(market.market_id)])
                assert seen["query"]["status"] == 200, seen
                assert seen["query"]["body"]["data"] == {
                    "me": {"id": str(user_id)},
                    "orderBook": {"marketId": str(market.market_id), "sequence": 0},
                }
                assert seen["query"]["requestId"], "X-Request-ID is exposed to the page"
                assert seen["subscription"] == {
                    "data": {"orderBook": {"marketId": str(market.market_id), "sequence": 0, "snapshot": True}}
                }, seen

                # another origin: the browser withholds the answer (no CORS grant), the API refuses the socket
                await page.goto(other_origin + "/", wait_until="load")
                refused = await page.evaluate(CALL_API, [api, token, str(market.market_id)])
                assert refused["query"] == {"error": "TypeError: Failed to fetch"}, refused
                assert refused["subscription"]["error"] in ("socket error", "closed 1006"), refused
            finally:
                await browser.close()
