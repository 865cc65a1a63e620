"""GraphiQL in headless Chromium against the real app (server.app:create_app under uvicorn), every other host unreachable.

Checks what a dashboard user sees with no internet: the page loads only from our origin, shows the ready-made
tabs and an editable headers editor whose Authorization header (a power user's own token) is sent as typed, and runs
`{ __typename }` via Run. The signed-in dashboard session is tests/test_graphiql_explorer_browser.py.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Page, Request, sync_playwright

from core.jwt_keys import KeyRing, generate_private_key_pem
from server import graphiql

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT = Path("/tmp/graphiql.png")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Belt and braces: any name but our own server fails to resolve, as on a machine with no internet.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def assets_installed() -> None:
    # The setup command's second half; node_modules comes from `npm ci` (package.json).
    graphiql.install_assets()
    assert graphiql.missing_assets() == []


JWT_KEY_ID = "graphiql-test"


@pytest.fixture(scope="module")
def jwt_private_pem() -> str:
    return generate_private_key_pem()


@pytest.fixture(scope="module")
def server_url(
    assets_installed: None,
    jwt_private_pem: str,
    tmp_path_factory: pytest.TempPathFactory,
    database_url: str,
    redis_url: str,
) -> Iterator[str]:
    """The real app (server.app:create_app) under uvicorn; `{ __typename }` and JWT checks need no tables."""
    port = _free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "RWA_ENV": "development",
        "RWA_DATA_DIR": str(tmp_path_factory.mktemp("rwa-data")),
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "RWA_REDIS_PREFIX": f"test-graphiql-{uuid.uuid4().hex[:8]}:",
        "JWT_PRIVATE_KEY": jwt_private_pem,
        "JWT_KEY_ID": JWT_KEY_ID,
        "GRAPHIQL_ENABLED": "true",
        "LOG_LEVEL": "WARNING",
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "server.app:create_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120  # importing the app takes over 15 s on a busy 2-core machine
        while True:
            assert proc.poll() is None, "uvicorn exited during startup"
            try:
                httpx.get(url + "/static/graphiql-init.js", timeout=0.5)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "uvicorn did not start within 120 s"
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def until(page: Page, expression: str, timeout: int) -> None:
    """Polls a JS expression until it is true. (Playwright's wait_for_function evaluates its predicate with eval,
    which the page's CSP forbids, as it should; page.evaluate goes through the devtools protocol instead.)"""
    deadline = time.monotonic() + timeout / 1000
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise TimeoutError(f"not true within {timeout} ms: {expression}")
        page.wait_for_timeout(100)


def _editor_value(page: Page, container: str) -> str:
    return str(page.evaluate(f"document.querySelector('{container} .CodeMirror').CodeMirror.getValue()"))


def test_graphiql_runs_typename_offline(server_url: str, jwt_private_pem: str) -> None:
    assert CHROMIUM.exists(), "Debian chromium is required (apt-get install chromium)"
    # A token the server accepts, so a successful result also proves the edited header passed its JWT check.
    token, _ = KeyRing(jwt_private_pem, JWT_KEY_ID).issue(uuid.uuid4(), ["INVESTOR"])
    requests: list[Request] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.on("request", lambda request: requests.append(request))
            # the page's Content-Security-Policy must not block anything GraphiQL does
            violations: list[str] = []
            page.on(
                "console", lambda msg: violations.append(msg.text) if "Content Security Policy" in msg.text else None
            )
            page.add_init_script(
                "window.__csp = []; document.addEventListener('securitypolicyviolation', "
                "e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));"
            )
            loaded = page.goto(server_url + "/graphql", wait_until="load", timeout=10_000)
            assert loaded is not None and "frame-ancestors 'none'" in loaded.headers["content-security-policy"]
            assert loaded.headers["x-frame-options"] == "DENY"

            # The explorer tab first, then the ready-made dashboard tabs titled with their role; the headers editor
            # stays available for power users.
            page.wait_for_selector(".graphiql-query-editor .CodeMirror", timeout=10_000)
            tabs = [t.strip() for t in page.locator(".graphiql-tab").all_inner_texts()]
            assert tabs[:3] == ["<untitled>", "Me_asINVESTOR", "AssetPipeline_asCOMPLIANCE"], tabs
            page.click("button:has-text('Headers')")
            headers_editor = page.locator(".graphiql-editor-tool .graphiql-editor:not(.hidden) .CodeMirror")
            assert headers_editor.is_visible()

            # Type a query into the editor and a real token into the headers editor, as a user would.
            page.click(".graphiql-query-editor .CodeMirror")
            page.keyboard.press("Control+A")
            page.keyboard.press("Delete")
            page.keyboard.type("{ __typename", delay=5)
            page.keyboard.press("Escape")  # close the autocomplete popup, keep the auto-closed brace
            assert " ".join(_editor_value(page, ".graphiql-query-editor").split()) == "{ __typename}"
            headers_editor.click()
            page.keyboard.press("Control+A")
            page.keyboard.press("Delete")
            page.keyboard.insert_text(json.dumps({"Authorization": f"Bearer {token}"}))

            with page.expect_request(lambda r: r.method == "POST" and "__typename" in (r.post_data or "")) as run:
                page.click(".graphiql-execute-button")
            until(
                page,
                "document.querySelector('.graphiql-response').innerText.includes('\"__typename\": \"Query\"')",
                timeout=10_000,
            )
            assert run.value.headers.get("authorization") == f"Bearer {token}"
            assert page.evaluate("window.__csp") == [] and violations == [], (page.evaluate("window.__csp"), violations)
            page.screenshot(path=str(SCREENSHOT))
        finally:
            browser.close()

    origin = urlsplit(server_url).netloc
    urls = [r.url for r in requests]
    # data: URLs are GraphiQL's inlined fonts and the inline favicon: no network involved.
    foreign = [u for u in urls if not u.startswith("data:") and urlsplit(u).netloc != origin]
    assert foreign == [], foreign
    assert any("/static/graphiql/graphiql.min.js" in u for u in urls), urls
    # Not signed in: schema introspection at load went out anonymously.
    introspection = [r for r in requests if r.method == "POST" and "IntrospectionQuery" in (r.post_data or "")]
    assert introspection and all("authorization" not in r.headers for r in introspection)


def test_page_without_assets_says_run_setup(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(graphiql, "ASSET_DIR", tmp_path / "graphiql")
    response = graphiql.graphiql_response()
    assert response.status_code == 503
    assert b"Run the setup command" in response.body and b"python -m server.graphiql install" in response.body


def test_page_references_only_same_origin(assets_installed: None) -> None:
    page = graphiql.graphiql_html()
    assert "http://" not in page and "https://" not in page and "//" + "unpkg" not in page
    for asset in graphiql.ASSETS:
        assert f"/static/graphiql/{asset.target}?v=" in page
        assert b"sourceMappingURL" not in (graphiql.ASSET_DIR / asset.target).read_bytes()
    config_block = page.split('id="graphiql-config">')[1].split("</script>")[0]
    assert "<" not in config_block  # placeholders such as "<now>" are escaped, so they cannot close the block


def test_install_fails_clearly_without_node_modules(tmp_path: Path) -> None:
    with pytest.raises(graphiql.AssetsNotInstalled, match="npm ci"):
        graphiql.install_assets(node_modules=tmp_path, dest=tmp_path / "out")


@pytest.mark.parametrize(
    "env,page_served,explorer",
    [
        ({}, True, True),  # development: GraphiQL with the explorer open
        ({"GRAPHIQL_EXPLORER": "false"}, True, False),
        ({"RWA_ENV": "production"}, False, False),  # production: no GraphiQL at all unless enabled
        ({"RWA_ENV": "production", "GRAPHIQL_ENABLED": "true"}, True, False),
        ({"RWA_ENV": "production", "GRAPHIQL_ENABLED": "true", "GRAPHIQL_EXPLORER": "true"}, True, True),
    ],
)
def test_explorer_switch(
    assets_installed: None, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], page_served: bool, explorer: bool
) -> None:
    from core.settings import Settings
    from server.app import _graphiql

    for name in ("RWA_ENV", "GRAPHIQL_ENABLED", "GRAPHIQL_EXPLORER"):
        monkeypatch.delenv(name, raising=False)
    page, _ = _graphiql(Settings(**env))  # type: ignore[arg-type]
    assert (page is not None) is page_served
    if page is not None:
        assert ("/static/graphiql/plugin-explorer.umd.js?v=" in page) is explorer
        config = json.loads(page.split('id="graphiql-config">')[1].split("</script>")[0])
        assert config["explorer"] is explorer
