"""Signers: local keys from settings (production refuses dev/placeholder/missing keys), and a remote signer over
JSON-RPC (anvil's eth_signTransaction stands in for Web3Signer/Clef), checked to sign as the configured address."""

from __future__ import annotations

import pytest
from eth_account import Account

from agent.errors import RemoteSignerError, SignerNotConfigured, SignerRefused
from agent.signers import LocalSigner, RemoteSigner, signer_for
from core.settings import Settings

REAL_KEY = "0x" + "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
ANVIL_5 = "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba"  # account 5 of the test mnemonic


def _settings(monkeypatch: pytest.MonkeyPatch, env: str = "development", **values: str) -> Settings:
    for var in (
        "AGENT_PRIVATE_KEY",
        "TREASURY_PRIVATE_KEY",
        "AGENT_SIGNER_URL",
        "AGENT_SIGNER_ADDRESS",
        "AGENT_PRIVATE_KEY_1",
        "AGENT_PRIVATE_KEY_137",
        "TREASURY_PRIVATE_KEY_1",
    ):
        monkeypatch.delenv(var, raising=False)
    return Settings(RWA_ENV=env, **values)  # type: ignore[call-arg]


def test_one_key_for_all_chains_or_one_per_chain(monkeypatch: pytest.MonkeyPatch) -> None:
    _settings(monkeypatch)
    monkeypatch.setenv("AGENT_PRIVATE_KEY_137", ANVIL_5)
    s = Settings(AGENT_PRIVATE_KEY=REAL_KEY)  # type: ignore[call-arg]  # per-chain variables: read at construction
    assert signer_for(s, 1, "agent").address == Account.from_key(REAL_KEY).address
    assert signer_for(s, 137, "agent").address == Account.from_key(ANVIL_5).address
    # the treasury falls back to the agent key outside production
    assert signer_for(s, 1, "treasury").address == Account.from_key(REAL_KEY).address
    monkeypatch.setenv("TREASURY_PRIVATE_KEY_1", ANVIL_5)
    s = Settings(AGENT_PRIVATE_KEY=REAL_KEY)  # type: ignore[call-arg]
    assert signer_for(s, 1, "treasury").address == Account.from_key(ANVIL_5).address


@pytest.mark.parametrize("key", [ANVIL_5, "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"])
def test_production_refuses_public_dev_keys(monkeypatch: pytest.MonkeyPatch, key: str) -> None:
    s = _settings(monkeypatch, env="production", AGENT_PRIVATE_KEY=key)
    with pytest.raises(SignerRefused, match="AGENT_PRIVATE_KEY is a public"):
        signer_for(s, 1, "agent")


def test_production_refuses_missing_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SignerRefused, match="AGENT_PRIVATE_KEY"):
        signer_for(_settings(monkeypatch, env="production"), 1, "agent")
    s = _settings(monkeypatch, env="production", AGENT_PRIVATE_KEY=REAL_KEY)
    assert signer_for(s, 1, "agent").address == Account.from_key(REAL_KEY).address
    with pytest.raises(SignerRefused, match="TREASURY_PRIVATE_KEY"):  # no silent fallback in production
        signer_for(s, 1, "treasury")


def test_missing_or_malformed_key_names_the_variable_not_the_value(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SignerNotConfigured, match="AGENT_PRIVATE_KEY"):
        signer_for(_settings(monkeypatch), 1, "agent")
    with pytest.raises(SignerNotConfigured) as info:
        signer_for(_settings(monkeypatch, AGENT_PRIVATE_KEY="0xnot-a-key-12345"), 1, "agent")
    assert "not-a-key" not in str(info.value)
    with pytest.raises(SignerNotConfigured, match="role"):
        signer_for(_settings(monkeypatch, AGENT_PRIVATE_KEY=REAL_KEY), 1, "root")


def test_remote_signer_needs_its_address(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENT_SIGNER_URL", "http://127.0.0.1:1")
    with pytest.raises(SignerNotConfigured, match="AGENT_SIGNER_ADDRESS"):
        signer_for(Settings(), 1, "agent")  # type: ignore[call-arg]


async def test_remote_signer_signs_like_the_local_key(anvil) -> None:  # type: ignore[no-untyped-def]
    account0 = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
    key0 = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
    tx = {
        "chainId": 1,
        "nonce": 7,
        "to": account0,
        "value": 1,
        "data": "0x",
        "gas": 21000,
        "maxFeePerGas": 3 * 10**9,
        "maxPriorityFeePerGas": 10**9,
        "type": 2,
    }
    remote = RemoteSigner(anvil.url, account0)
    try:
        raw, h = await remote.sign(tx)
    finally:
        await remote.aclose()
    local_raw, local_h = await LocalSigner(key0).sign(tx)
    assert Account.recover_transaction(raw) == account0
    assert (raw, h) == (local_raw, local_h)  # deterministic signatures (RFC 6979): the same bytes


async def test_remote_signer_signing_as_another_account_is_refused(anvil, anvil_accounts) -> None:  # type: ignore[no-untyped-def]
    class Liar(RemoteSigner):
        pass

    remote = Liar(anvil.url, anvil_accounts[0])
    remote.address = anvil_accounts[1]  # the endpoint signs for accounts[1] but we expect accounts[0]
    tx = {
        "chainId": 1,
        "nonce": 0,
        "to": anvil_accounts[0],
        "value": 0,
        "data": "0x",
        "gas": 21000,
        "maxFeePerGas": 3 * 10**9,
        "maxPriorityFeePerGas": 10**9,
        "type": 2,
    }
    try:
        orig = remote._client.call

        async def call(method, params=None, **kw):  # type: ignore[no-untyped-def]
            params[0]["from"] = anvil_accounts[0]
            return await orig(method, params, **kw)

        remote._client.call = call  # type: ignore[method-assign]
        with pytest.raises(RemoteSignerError, match="signed as"):
            await remote.sign(tx)
    finally:
        await remote.aclose()


@pytest.mark.parametrize(
    "tx",
    [
        {
            "chainId": 1,
            "nonce": 0,
            "to": "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
            "value": 0,
            "data": "0x",
            "gas": 21000,
            "maxFeePerGas": 3 * 10**9,
            "maxPriorityFeePerGas": 10**9,
            "type": 2,
        },
        {
            "chainId": 137,
            "nonce": 2**40,
            "to": "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
            "value": 10**18,
            "data": "0x9fc1d0e7" + "00" * 96,
            "gas": 150_000,
            "maxFeePerGas": 5 * 10**12,
            "maxPriorityFeePerGas": 0,
            "type": 2,
        },
        {
            "chainId": 56,
            "nonce": 5,
            "to": "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
            "value": 1,
            "data": "0xabcdef",
            "gas": 100_000,
            "gasPrice": 3 * 10**9,
        },
    ],
)
async def test_fast_local_signing_equals_eth_account(tx: dict) -> None:
    key = "0x" + "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
    raw, h = await LocalSigner(key).sign(tx)
    ref = Account.from_key(key).sign_transaction(tx)
    assert raw == "0x" + bytes(ref.raw_transaction).hex() and h == "0x" + bytes(ref.hash).hex()
    assert Account.recover_transaction(raw) == Account.from_key(key).address


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6", "public anvil/hardhat test key"),
        (None, "must be set when RWA_ENV=production"),
    ],
)
def test_agent_run_refuses_to_start_in_production_with_a_dev_or_missing_key(
    module_database_url: str, redis_url: str, key: str | None, message: str
) -> None:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENT_", "TREASURY_", "RPC_URLS_"))}
    env.update(
        RWA_ENV="production",
        DATABASE_URL=module_database_url,
        REDIS_URL=redis_url,
        JWT_PRIVATE_KEY="k" * 40,
        KYC_ENCRYPTION_KEY="a" * 64,
        WEBHOOK_SECRET="w" * 40,
        HD_WALLET_MNEMONIC="legal winner thank year wave sausage worth useful legal winner thank yellow",
        SIWE_DOMAIN="app.stablerwa.test",
        RPC_URLS_1="http://127.0.0.1:9",
        RWA_DATA_DIR="/tmp/rwa-agent-prod-test",
        LOG_LEVEL="WARNING",
    )
    if key:
        env["AGENT_PRIVATE_KEY"] = key
    proc = subprocess.run(
        [sys.executable, "-m", "cli.main", "agent", "run", "--chain", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "AGENT_PRIVATE_KEY" in proc.stderr and message in " ".join(proc.stderr.split())
    assert "Traceback" not in proc.stderr
    if key:
        assert key[2:] not in proc.stderr + proc.stdout  # the key itself is never printed
