"""Settings: production refuses missing and placeholder secrets (naming the variable, in Python and through `rwa
serve`), secrets stay out of reprs and logs, and the GraphiQL / introspection switches work."""

from __future__ import annotations

import io
import json
import logging
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from core.logging import JsonFormatter
from core.settings import ConfigError, Settings
from tests.fixtures.app import TEST_JWT_KEY

REPO = Path(__file__).resolve().parents[2]
RWA = str(Path(sys.executable).with_name("rwa"))
SECRET_VARS = ("JWT_PRIVATE_KEY", "KYC_ENCRYPTION_KEY", "HD_WALLET_MNEMONIC", "WEBHOOK_SECRET")
PLACEHOLDERS = (
    "change-me",
    "CHANGEME-please-0123456789abcdefghijklmnop",
    "placeholder" * 4,
    "dev-only-key-" * 4,
    "example-" * 6,
    "my-webhook-secret-value-0123456789abcdef",
    "short-but-real",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings also read the process environment: only what each test passes may count."""
    for name in (
        "RWA_ENV",
        "DATABASE_URL",
        "REDIS_URL",
        "GRAPHIQL_ENABLED",
        "INTROSPECTION_ENABLED",
        "DEPLOYER_PRIVATE_KEY",
        "SIWE_DOMAIN",
        *SECRET_VARS,
    ):
        monkeypatch.delenv(name, raising=False)


def production_env(
    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres",
    redis_url: str = "redis://127.0.0.1:6379/0",
) -> dict[str, str]:
    """A complete, acceptable production configuration."""
    return {
        "RWA_ENV": "production",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "JWT_PRIVATE_KEY": TEST_JWT_KEY,
        "KYC_ENCRYPTION_KEY": os.urandom(32).hex(),
        "HD_WALLET_MNEMONIC": " ".join(secrets.token_hex(4) for _ in range(12)),
        "WEBHOOK_SECRET": secrets.token_urlsafe(32),
        "SIWE_DOMAIN": "app.stablerwa.test",
    }


def test_complete_production_config_passes() -> None:
    Settings(**production_env()).check_production()  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["DATABASE_URL", "REDIS_URL", "SIWE_DOMAIN", *SECRET_VARS])
def test_production_refuses_a_missing_variable(name: str) -> None:
    env = production_env()
    del env[name]
    with pytest.raises(ConfigError, match=name):
        Settings(**env).check_production()  # type: ignore[arg-type]


@pytest.mark.parametrize("name", SECRET_VARS)
@pytest.mark.parametrize("value", PLACEHOLDERS)
def test_production_refuses_a_placeholder(name: str, value: str) -> None:
    env = {**production_env(), name: value}
    with pytest.raises(ConfigError, match=name) as refused:
        Settings(**env).check_production()  # type: ignore[arg-type]
    assert value not in str(refused.value), "the refusal must not print the secret itself"


@pytest.mark.parametrize(
    "name,value",
    [
        ("HD_WALLET_MNEMONIC", "test test test test test test test test test test test junk"),
        ("HD_WALLET_MNEMONIC", "  Test test TEST test test test test test test test test junk "),
        ("DEPLOYER_PRIVATE_KEY", "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"),
        ("DEPLOYER_PRIVATE_KEY", "59C6995E998F97A5A0044966F0945389DC9E86DAE88C7A8412F4603B6B78690D"),
        ("DEPLOYER_PRIVATE_KEY", "change-me"),
    ],
)
def test_production_refuses_public_dev_keys(name: str, value: str) -> None:
    """anvil's mnemonic and funded accounts are public: real money must never sit behind them."""
    with pytest.raises(ConfigError, match=name):
        Settings(**{**production_env(), name: value}).check_production()  # type: ignore[arg-type]


def test_production_accepts_a_real_deployer_key() -> None:
    Settings(**{**production_env(), "DEPLOYER_PRIVATE_KEY": "0x" + secrets.token_hex(32)}).check_production()  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "value", ["https://app.example.com", "app.example.com/", "evil.example\r\nX-Injected: 1", "user@app.example.com"]
)
def test_siwe_domain_must_be_a_bare_host(value: str) -> None:
    """It is printed into the message wallets sign: a scheme, path or line break there is a misconfiguration."""
    with pytest.raises(ValueError, match="SIWE_DOMAIN"):
        Settings(**{**production_env(), "SIWE_DOMAIN": value})  # type: ignore[arg-type]
    assert Settings(SIWE_DOMAIN="App.Example.com:8443").siwe_domain == "app.example.com:8443"  # type: ignore[call-arg]


@pytest.mark.parametrize(
    "value", ["app.example.com", "example.org", "Rwa.Example.NET:443", "app.example", "localhost:8000", "127.0.0.1"]
)
def test_production_refuses_a_placeholder_siwe_domain(value: str) -> None:
    """The production overlay ships `app.example.com` to be replaced: left in, every wallet link would show users a
    domain that is not the app's, so the API refuses to start instead of linking under it."""
    with pytest.raises(ConfigError, match="SIWE_DOMAIN"):
        Settings(**{**production_env(), "SIWE_DOMAIN": value}).check_production()  # type: ignore[arg-type]
    Settings(**{**production_env(), "SIWE_DOMAIN": "app.examples.io"}).check_production()  # type: ignore[arg-type]


def test_development_does_not_require_secrets() -> None:
    Settings(RWA_ENV="development").check_production()  # type: ignore[arg-type]


def test_secrets_stay_out_of_repr_and_logs() -> None:
    env = production_env()
    settings = Settings(**env)  # type: ignore[arg-type]
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("rwa.test.settings")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        log.info("settings %s %r", settings, settings, extra={"settings": settings, "dump": settings.model_dump()})
    finally:
        log.removeHandler(handler)
    rendered = [
        repr(settings),
        str(settings),
        stream.getvalue(),
        settings.model_dump_json(),
        json.dumps(settings.model_dump(), default=str),
    ]
    for name in SECRET_VARS:
        value = env[name]
        for text in rendered:
            # PEM headers are not secret; its body is
            needle = value.splitlines()[1] if value.startswith("-----BEGIN") else value
            assert needle not in text, f"{name} leaked"


@pytest.mark.parametrize("missing", ["JWT_PRIVATE_KEY", "DATABASE_URL", "SIWE_DOMAIN"])
def test_rwa_serve_refuses_production_without_secret(missing: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "SIWE_DOMAIN", *SECRET_VARS)}
    env.update(production_env())
    del env[missing]
    env["RWA_DATA_DIR"] = str(tmp_path / "data")
    proc = subprocess.run(
        [RWA, "serve", "--port", "1"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode != 0
    assert missing in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not (tmp_path / "data").exists(), "refused before starting anything"


def test_rwa_serve_refuses_production_placeholder(tmp_path: Path) -> None:
    env = {**os.environ, **production_env(), "WEBHOOK_SECRET": "change-me", "RWA_DATA_DIR": str(tmp_path / "d")}
    proc = subprocess.run(
        [RWA, "serve", "--port", "1"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode != 0
    assert "WEBHOOK_SECRET" in proc.stderr and "change-me" not in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


# --- GraphiQL and introspection switches -----------------------------------------------------------------------

INTROSPECTION = "{ __schema { queryType { name } } }"


def production_overrides() -> dict[str, str]:
    return {k: v for k, v in production_env().items() if k not in ("DATABASE_URL", "REDIS_URL")}


async def graphiql_status(client) -> tuple[int, str, dict | None]:  # type: ignore[no-untyped-def,type-arg]
    resp = await client.get("/graphql", headers={"Accept": "text/html"})
    body = resp.json() if resp.headers["content-type"].startswith("application/json") else None
    return resp.status_code, resp.headers["content-type"], body


@pytest.mark.parametrize(
    "overrides,enabled",
    [
        ({}, True),  # development/test default
        ({"GRAPHIQL_ENABLED": "false"}, False),
        ({"production": True}, False),  # production default
        ({"production": True, "GRAPHIQL_ENABLED": "true"}, True),
    ],
)
async def test_graphiql_switch(app_client, overrides: dict, enabled: bool) -> None:  # type: ignore[type-arg,no-untyped-def]
    overrides = dict(overrides)
    if overrides.pop("production", False):
        overrides.update(production_overrides())
    async with app_client(**overrides) as c:
        status, content_type, body = await graphiql_status(c)
        still_posts = await c.post("/graphql", json={"query": "{ __typename }"})
    assert still_posts.json()["data"] == {"__typename": "Query"}
    if enabled:
        assert status == 200 and content_type.startswith("text/html")
    else:
        assert status == 404 and body is not None
        assert body["errors"][0]["extensions"]["code"] == "NOT_FOUND"


@pytest.mark.parametrize(
    "overrides,enabled",
    [
        ({}, True),
        ({"INTROSPECTION_ENABLED": "false"}, False),
        ({"production": True}, False),
        ({"production": True, "INTROSPECTION_ENABLED": "true"}, True),
    ],
)
async def test_introspection_switch(app_client, overrides: dict, enabled: bool) -> None:  # type: ignore[type-arg,no-untyped-def]
    overrides = dict(overrides)
    if overrides.pop("production", False):
        overrides.update(production_overrides())
    async with app_client(**overrides) as c:
        body = (await c.post("/graphql", json={"query": INTROSPECTION})).json()
        typename = (await c.post("/graphql", json={"query": "{ __typename }"})).json()
    assert typename["data"] == {"__typename": "Query"}, "__typename is not introspection"
    if enabled:
        assert body["data"]["__schema"]["queryType"]["name"] == "Query"
    else:
        assert body.get("data") is None
        assert {e["extensions"]["code"] for e in body["errors"]} == {"BAD_USER_INPUT"}
        assert "introspection" in body["errors"][0]["message"].lower()
