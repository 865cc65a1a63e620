"""GraphiQL's sign-in bar against the real login with MFA (a real API process and headless chromium): the bar shows
the code field because `login` takes `mfaCode`; a password alone asks for the code instead of storing a null
session; password + code signs in."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pyotp
import pytest
from playwright.sync_api import sync_playwright

from server import graphiql
from tests.test_graphiql_browser import CHROMIUM, CHROMIUM_ARGS
from tests.trading.live import api_servers

PASSWORD = "correct-horse-9-battery"


@pytest.fixture(scope="module")
def database_url(module_database_url: str) -> str:
    return module_database_url


@pytest.fixture(scope="module")
def server_url(database_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    assert CHROMIUM.exists(), "Debian chromium is required (apt-get install chromium)"
    graphiql.install_assets()
    with api_servers(
        database_url,
        redis_url,
        n=1,
        extra_env={"GRAPHIQL_ENABLED": "true"},
        data_dir=str(tmp_path_factory.mktemp("mfa-graphiql")),
    ) as servers:
        yield servers.urls[0]


def _gql(url: str, query: str, variables: dict | None = None, token: str | None = None) -> dict:  # type: ignore[type-arg]
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    resp = httpx.post(
        url + "/graphql", json={"query": query, "variables": variables or {}}, headers=headers, timeout=20
    )
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_sign_in_bar_with_a_real_mfa_account(server_url: str, tmp_path: Path) -> None:
    email = f"mfa-{uuid.uuid4().hex[:8]}@example.com"
    token = _gql(
        server_url,
        "mutation($e: String!, $p: String!) { register(input: {email: $e, password: $p}) { session { accessToken } } }",
        {"e": email, "p": PASSWORD},
    )["data"]["register"]["session"]["accessToken"]
    begun = _gql(server_url, "mutation { beginMfaEnrolment { enrolment { secret } } }", token=token)
    secret = begun["data"]["beginMfaEnrolment"]["enrolment"]["secret"]
    totp = pyotp.TOTP(secret)
    confirmed = _gql(
        server_url,
        "mutation($c: String!) { confirmMfaEnrolment(input: {code: $c}) { recoveryCodes } }",
        {"c": totp.at(time.time() - 30)},
        token=token,
    )
    assert confirmed["data"]["confirmMfaEnrolment"]["recoveryCodes"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(server_url + "/graphql", wait_until="load")
            page.wait_for_selector("#auth-mfa", timeout=10_000)
            page.fill("#auth-email", email)
            page.fill("#auth-password", PASSWORD)
            page.click("#auth-signin")
            page.wait_for_selector("#auth-error", timeout=10_000)
            assert "code" in page.inner_text("#auth-error").lower()
            assert page.query_selector("#auth-user") is None
            page.fill("#auth-password", PASSWORD)
            page.fill("#auth-mfa", totp.at(time.time()))
            page.click("#auth-signin")
            page.wait_for_selector("#auth-user", timeout=10_000)
            assert email in page.inner_text("#auth-user")
        finally:
            browser.close()
