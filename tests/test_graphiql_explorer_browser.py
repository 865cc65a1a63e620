"""The dashboard user's GraphiQL, in headless Chromium against a real API process, Postgres and Redis.

One session as a person would have it: sign in through the bar above GraphiQL, build a query by ticking fields in
the explorer and run it, open the ready-made live-trades tab and watch a trade arrive over graphql-transport-ws
(authenticated in connection_init), see the access token renewed before it expires (a 20 s lifetime here) with the
subscription still delivering, sign out, sign in again with "Remember me" and survive a reload, and use an API key.
Every request the page makes is recorded: none may leave the server's origin, and the page's CSP must block nothing.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Page, Request, WebSocket, sync_playwright

from core.jwt_keys import KeyRing
from core.passwords import hash_password
from core.settings import Settings
from models.identity import User
from server import graphiql
from tests.fixtures.app import TEST_JWT_KEY
from tests.test_graphiql_browser import CHROMIUM, CHROMIUM_ARGS
from tests.test_graphiql_browser import until as _until
from tests.trading.factories import make_market, make_trader
from tests.trading.live import api_servers, committed_sessions

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
PASSWORD = "correct-horse-9-battery"
PLACE = "mutation($i: PlaceOrderInput!) { placeOrder(input: $i) { order { status } errors { code } } }"
TOKEN_TTL_S = 20  # renewed about 5 s before expiry (a quarter of the lifetime, at most a minute)


@pytest.fixture(scope="module")
def database_url(module_database_url: str) -> str:
    """The API process commits: its rows stay in this module's own database."""
    return module_database_url


@pytest.fixture(scope="module")
def world(database_url: str) -> dict[str, Any]:
    """An ADMIN who signs in with a password, a market, and two traders who can trade on it."""

    async def build() -> dict[str, Any]:
        async with committed_sessions(database_url) as sf:
            admin_id = uuid.uuid4()
            email = f"dash-{admin_id.hex[:8]}@example.com"
            async with sf() as s:
                s.add(User(id=admin_id, email=email, password_hash=hash_password(PASSWORD), roles=["ADMIN"]))
                await s.commit()
            market = await make_market(sf, maker_bps=0, taker_bps=0)
            seller = await make_trader(sf, market, tokens="100000")
            buyer = await make_trader(sf, market, cash="1000000")
        return {"email": email, "market_id": str(market.market_id), "seller": seller.user_id, "buyer": buyer.user_id}

    built = asyncio.run(build())
    keyring = KeyRing.from_settings(Settings(JWT_PRIVATE_KEY=TEST_JWT_KEY))
    built["seller_token"] = keyring.issue(built["seller"], ["INVESTOR"])[0]
    built["buyer_token"] = keyring.issue(built["buyer"], ["INVESTOR"])[0]
    return built


def _gql(url: str, query: str, variables: dict[str, Any] | None = None, token: str | None = None) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = httpx.post(
        url + "/graphql", json={"query": query, "variables": variables or {}}, headers=headers, timeout=20
    )
    assert response.status_code == 200, response.text
    return response.json()


def _trade(url: str, world: dict[str, Any]) -> None:
    def order(side: str) -> dict[str, Any]:
        return {"i": {"marketId": world["market_id"], "side": side, "type": "LIMIT", "quantity": "2", "price": "1.50"}}

    _gql(url, PLACE, order("SELL"), world["seller_token"])
    done = _gql(url, PLACE, order("BUY"), world["buyer_token"])
    assert done["data"]["placeOrder"]["order"]["status"] == "FILLED", done


def _response_text(page: Page) -> str:
    return str(page.evaluate("document.querySelector('.graphiql-response .CodeMirror').CodeMirror.getValue()"))


def _variables_text(page: Page) -> str:
    return str(
        page.evaluate(
            "document.querySelector('.graphiql-editor-tool .graphiql-editor .CodeMirror').CodeMirror.getValue()"
        )
    )


def _storage(page: Page) -> dict[str, str]:
    return dict(page.evaluate("Object.fromEntries(Object.entries(localStorage))"))


def _sign_in(page: Page, email: str, password: str, remember: bool = False) -> None:
    page.fill("#auth-email", email)
    page.fill("#auth-password", password)
    if remember:
        page.check("#auth-remember")
    page.click("#auth-signin")
    page.wait_for_selector("#auth-user", timeout=10_000)


@pytest.fixture(scope="module")
def server_url(database_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real API process (as `rwa serve` runs it) with GraphiQL and short-lived access tokens."""
    assert CHROMIUM.exists(), "Debian chromium is required (apt-get install chromium)"
    graphiql.install_assets()
    env = {"GRAPHIQL_ENABLED": "true", "ACCESS_TOKEN_TTL_S": str(TOKEN_TTL_S)}
    with api_servers(
        database_url, redis_url, n=1, extra_env=env, data_dir=str(tmp_path_factory.mktemp("graphiql-live"))
    ) as servers:
        yield servers.urls[0]


def test_dashboard_session_in_the_explorer(world: dict[str, Any], server_url: str, tmp_path: Path) -> None:
    requests: list[Request] = []
    sockets: list[WebSocket] = []
    console_errors: list[str] = []
    with sync_playwright() as pw:
        url = server_url
        origin = urlsplit(url).netloc
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1440, "height": 900})
            page = context.new_page()
            page.on("request", lambda r: requests.append(r))
            frames: list[dict[str, Any]] = []

            def on_socket(ws: WebSocket) -> None:
                sockets.append(ws)
                ws.on("framesent", lambda payload: frames.append(json.loads(payload)))

            page.on("websocket", on_socket)
            page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
            page.add_init_script(
                "window.__csp = []; document.addEventListener('securitypolicyviolation', "
                "e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));"
            )
            page.goto(url + "/graphql", wait_until="load", timeout=15_000)

            # The explorer is open on load, listing the schema's root fields.
            page.wait_for_selector(".graphiql-explorer-root", timeout=15_000)
            explorer = page.locator(".graphiql-explorer-root")
            explorer.get_by_text("indexerStatus", exact=True).wait_for(timeout=15_000)
            titles = [t.strip() for t in page.locator(".graphiql-tab").all_inner_texts()]
            assert "AuditLog_asCOMPLIANCE" in titles and "LiveTrades_asINVESTOR" in titles, titles

            # A wrong password is refused in the bar with the server's message, and signs nobody in.
            page.fill("#auth-email", world["email"])
            page.fill("#auth-password", "not-the-password")
            page.click("#auth-signin")
            page.wait_for_selector("#auth-error", timeout=10_000)
            assert page.locator("#auth-user").count() == 0

            # Sign in through the bar: no credential reaches localStorage.
            _sign_in(page, world["email"], PASSWORD)
            assert world["email"] in page.inner_text("#auth-user")
            assert "ADMIN" in page.inner_text("#auth-user")
            assert _storage(page) == {}

            # Build a query by ticking fields in the explorer (first tab: blank), run it, see the market.
            explorer.get_by_text("markets", exact=True).click()
            explorer.get_by_text("symbol", exact=True).first.click()
            query = str(
                page.evaluate("document.querySelector('.graphiql-query-editor .CodeMirror').CodeMirror.getValue()")
            )
            assert "markets" in query and "symbol" in query, query
            with page.expect_request(
                lambda r: r.method == "POST" and "markets" in (r.post_data or "") and "symbol" in (r.post_data or "")
            ) as run:
                page.click(".graphiql-execute-button")
            _until(
                page,
                "document.querySelector('.graphiql-response').innerText.includes('\"symbol\": \"RWA')",
                timeout=10_000,
            )
            first_token = run.value.headers.get("authorization", "")
            assert first_token.startswith("Bearer ey"), run.value.headers
            assert '"errors"' not in _response_text(page)
            shot = tmp_path / "graphiql-explorer.png"
            page.screenshot(path=str(shot))
            ARTIFACTS.mkdir(exist_ok=True)
            shutil.copy(shot, ARTIFACTS / "graphiql-explorer.png")

            # The ready-made live-trades tab: its market placeholder is filled in, Run subscribes, a trade arrives.
            page.locator(".graphiql-tab", has_text="LiveTrades_asINVESTOR").click()
            _until(
                page,
                f"document.querySelector('.graphiql-editor-tool .graphiql-editor .CodeMirror').CodeMirror.getValue()"
                f".includes('{world['market_id']}')",
                timeout=10_000,
            )
            page.click(".graphiql-execute-button")
            sequence = _wait_for_trade(page, url, world, after=None)

            # The token is renewed before it expires; the socket reconnects with it and keeps delivering.
            def renewals() -> list[Request]:
                return [r for r in requests if r.method == "POST" and "GraphiQLRefresh" in (r.post_data or "")]

            seen = len(renewals())
            deadline = time.monotonic() + TOKEN_TTL_S + 10
            while len(renewals()) == seen:
                assert time.monotonic() < deadline, [
                    json.loads(r.post_data or "{}").get("query", "")[:40] for r in requests if r.method == "POST"
                ]
                page.wait_for_timeout(200)
            renewal = renewals()[-1]
            renewal_body = json.loads(renewal.post_data or "{}")
            assert renewal_body["variables"]["refreshToken"], renewal_body
            renewed = renewal.response()
            assert renewed is not None and "errors" not in renewed.json(), renewed.json() if renewed else None
            page.wait_for_timeout(500)  # let the restarted socket resubscribe
            _wait_for_trade(page, url, world, after=sequence)
            page.click(".graphiql-execute-button")  # Stop

            # Runs after the renewal carry the new token.
            page.locator(".graphiql-tab", has_text="IndexerStatus_asINVESTOR").click()
            with page.expect_request(
                lambda r: r.method == "POST" and "IndexerStatus_asINVESTOR" in (r.post_data or "")
            ) as status_run:
                page.click(".graphiql-execute-button")
            assert status_run.value.headers.get("authorization", "") not in ("", first_token)
            _until(page, "document.querySelector('.graphiql-response').innerText.includes('chainId')", timeout=10_000)

            # Sign out: logout is called with the refresh token; memory and storage are empty afterwards.
            with page.expect_request(lambda r: r.method == "POST" and "GraphiQLSignOut" in (r.post_data or "")) as out:
                page.click("#auth-signout")
            assert out.value.headers.get("authorization", "").startswith("Bearer ey")
            assert json.loads(out.value.post_data or "{}")["variables"]["refreshToken"]
            page.wait_for_selector("#auth-password-form", timeout=10_000)
            assert _storage(page) == {}

            # "Remember me": the refresh token alone is stored, and a reload restores the session.
            _sign_in(page, world["email"], PASSWORD, remember=True)
            stored = _storage(page)
            assert list(stored) == ["stablerwa.graphiql.refreshToken"], stored
            assert not stored["stablerwa.graphiql.refreshToken"].startswith("ey")  # not the access token (a JWT)
            page.reload(wait_until="load")
            page.wait_for_selector("#auth-user", timeout=15_000)
            assert world["email"] in page.inner_text("#auth-user")
            page.click("#auth-signout")
            page.wait_for_selector("#auth-password-form", timeout=10_000)
            assert _storage(page) == {}

            # An analyst's API key, pasted in: sent as a Bearer credential, kept in memory only.
            token = _gql(
                url,
                "mutation($e: String!, $p: String!) { login(input: {email: $e, password: $p}) { session { accessToken } } }",
                {"e": world["email"], "p": PASSWORD},
            )["data"]["login"]["session"]["accessToken"]
            created = _gql(
                url, 'mutation { createApiKey(input: {name: "dashboard"}) { createdApiKey { secret } } }', token=token
            )
            secret = created["data"]["createApiKey"]["createdApiKey"]["secret"]
            page.click("text=Use an API key instead")
            page.fill("#auth-apikey", secret)
            page.click("#auth-use-key")
            page.wait_for_selector("#auth-user", timeout=10_000)
            page.locator(".graphiql-tab", has_text="Me_asINVESTOR").click()
            with page.expect_request(lambda r: r.method == "POST" and "Me_asINVESTOR" in (r.post_data or "")) as me:
                page.click(".graphiql-execute-button")
            assert me.value.headers.get("authorization") == f"Bearer {secret}"
            _until(
                page,
                f"document.querySelector('.graphiql-response').innerText.includes('{world['email']}')",
                timeout=10_000,
            )
            assert _storage(page) == {}

            assert page.evaluate("window.__csp") == [], page.evaluate("window.__csp")
        finally:
            browser.close()

    urls = [r.url for r in requests] + [ws.url for ws in sockets]
    foreign = [u for u in urls if not u.startswith("data:") and urlsplit(u).netloc != origin]
    assert foreign == [], foreign
    assert sockets and all(ws.url.startswith(f"ws://{origin}/graphql") for ws in sockets)
    # every socket authenticated in connection_init; after the renewal the socket came back with the new token
    inits = [f.get("payload") or {} for f in frames if f.get("type") == "connection_init"]
    assert inits and all(str(p.get("authorization", "")).startswith("Bearer ey") for p in inits[:2]), inits
    assert len({p["authorization"] for p in inits[:2]}) == 2, "the renewed token reached a new connection_init"
    assert not [e for e in console_errors if "Content Security Policy" in e], console_errors


def _renewals(requests: list[Request]) -> list[Request]:
    return [r for r in requests if r.method == "POST" and "GraphiQLRefresh" in (r.post_data or "")]


def test_remembered_session_in_two_tabs_survives_renewals(world: dict[str, Any], server_url: str) -> None:
    """Two tabs share the remembered refresh token, which is single use (reusing a spent one revokes the session):
    each tab renews with the newest stored token, one at a time, and both stay signed in through several renewals."""
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context()
            pages, seen = [], []
            for index in range(2):
                page = context.new_page()
                requests: list[Request] = []
                page.on("request", lambda r, requests=requests: requests.append(r))
                page.goto(server_url + "/graphql", wait_until="load")
                if index == 0:
                    _sign_in(page, world["email"], PASSWORD, remember=True)
                else:  # restored from the token the first tab stored
                    page.wait_for_selector("#auth-user", timeout=15_000)
                pages.append(page)
                seen.append(requests)
            deadline = time.monotonic() + 2 * TOKEN_TTL_S + 15
            while min(len(_renewals(r)) for r in seen) < 2:
                assert time.monotonic() < deadline, [len(_renewals(r)) for r in seen]
                pages[0].wait_for_timeout(250)
            for requests in seen:
                for renewal in _renewals(requests):
                    response = renewal.response()
                    assert response is not None and "errors" not in response.json(), response.json()
            for page in pages:
                assert world["email"] in page.inner_text("#auth-user")
                page.locator(".graphiql-tab", has_text="Me_asINVESTOR").click()
                with page.expect_response(lambda r: "Me_asINVESTOR" in (r.request.post_data or "")) as me:
                    page.click(".graphiql-execute-button")
                assert me.value.json()["data"]["me"]["email"] == world["email"], me.value.json()
            stored = dict(pages[0].evaluate("Object.fromEntries(Object.entries(localStorage))"))
            assert list(stored) == ["stablerwa.graphiql.refreshToken"], stored
        finally:
            browser.close()


def test_subscription_outlives_a_frozen_tab(world: dict[str, Any], server_url: str) -> None:
    """A tab frozen past its token's expiry (as browsers freeze background tabs: its renewal timer cannot fire, and the
    server closes the socket whose token expired) wakes up, renews the session and its subscription delivers again,
    whichever comes first: the late renewal (socket restarted) or the 4401 close (renew, then subscribe again)."""
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            requests: list[Request] = []
            page.on("request", lambda r: requests.append(r))
            page.goto(server_url + "/graphql", wait_until="load")
            _sign_in(page, world["email"], PASSWORD)
            page.locator(".graphiql-tab", has_text="LiveTrades_asINVESTOR").click()
            _until(
                page,
                "document.querySelector('.graphiql-editor-tool .graphiql-editor .CodeMirror').CodeMirror"
                f".getValue().includes('{world['market_id']}')",
                timeout=10_000,
            )
            page.click(".graphiql-execute-button")
            sequence = _wait_for_trade(page, server_url, world, after=None)
            cdp = page.context.new_cdp_session(page)
            renewals_before = len([r for r in requests if "GraphiQLRefresh" in (r.post_data or "")])
            cdp.send("Page.setWebLifecycleState", {"state": "frozen"})
            # a wall-clock deadline, not a race: the token the socket signed in with expires while the tab sleeps
            time.sleep(TOKEN_TTL_S + 2)
            assert (
                len([r for r in requests if "GraphiQLRefresh" in (r.post_data or "")]) == renewals_before
            )  # the tab is frozen: no event of its own can be awaited
            cdp.send("Page.setWebLifecycleState", {"state": "active"})
            _wait_for_trade(page, server_url, world, after=sequence)
            assert "Socket closed" not in _response_text(page)
            assert world["email"] in page.inner_text("#auth-user")
        finally:
            browser.close()


def test_sign_in_bar_offers_an_mfa_code_when_login_takes_one(server_url: str) -> None:
    """The login input fields the page reads at load are answered here with an `mfaCode`, and the bar must show the
    field and send the code as that input field (the sign-in itself is answered too)."""
    sent: list[dict[str, Any]] = []

    def answer(route: Any) -> None:
        body = json.loads(route.request.post_data or "{}")
        query = body.get("query", "")
        if "GraphiQLLoginArgs" in query:
            args = [
                {"name": n, "type": {"kind": "NON_NULL", "name": None, "ofType": {"kind": "SCALAR", "name": "String"}}}
                for n in ("email", "password")
            ]
            args.append({"name": "mfaCode", "type": {"kind": "SCALAR", "name": "String", "ofType": None}})
            route.fulfill(json={"data": {"__type": {"inputFields": args}}})
        elif "GraphiQLSignIn" in query:
            sent.append(body)
            route.fulfill(
                json={
                    "data": None,
                    "errors": [{"message": "Wrong MFA code", "extensions": {"code": "UNAUTHENTICATED"}}],
                }
            )
        else:
            route.continue_()

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.route(server_url + "/graphql", answer)
            page.goto(server_url + "/graphql", wait_until="load")
            page.wait_for_selector("#auth-mfa", timeout=10_000)
            page.fill("#auth-email", "ada@example.com")
            page.fill("#auth-password", "correct-horse-9")
            page.fill("#auth-mfa", "123456")
            page.click("#auth-signin")
            page.wait_for_selector("#auth-error", timeout=10_000)
            assert "Wrong MFA code" in page.inner_text("#auth-error")
        finally:
            browser.close()
    assert len(sent) == 1 and sent[0]["variables"]["mfaCode"] == "123456", sent
    assert "mfaCode: $mfaCode" in sent[0]["query"] and "$mfaCode: String" in sent[0]["query"]


def _wait_for_trade(page: Page, url: str, world: dict[str, Any], after: int | None) -> int:
    """Places crossing orders until the subscription's pane shows a trade newer than `after`; its sequence."""
    for _ in range(20):
        _trade(url, world)
        try:
            _until(
                page,
                "(() => { const m = document.querySelector('.graphiql-response').innerText"
                '.match(/"sequence": (\\d+)/); return m && Number(m[1]) > %d; })()' % (after or 0),
                timeout=2_000,
            )
        except TimeoutError:  # the subscription may still be starting: trade again
            continue
        text = _response_text(page)
        update = json.loads(text)["data"]["trades"]
        trade = update["trades"][-1]  # the newest (a snapshot lists the latest trades, oldest first)
        assert trade["price"] == "1.5" and trade["quantity"] == "2", update
        return int(update["sequence"])
    raise AssertionError(f"no trade arrived in the subscription pane: {_response_text(page)}")
