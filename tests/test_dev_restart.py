"""`rwa dev` survives a restart (issue 13, item 6): the chains persist in the data dir, so the second run
continues them (same blocks, contracts and deployer nonces); the old token rows still point at their contracts and
tokenizing a new asset after the restart succeeds."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.test_dev_command import ANVIL_ACCOUNT_0, EXIT_TIMEOUT_S, RWA, Dev, assert_all_stopped, rpc

pytestmark = pytest.mark.slow

ASSET = (
    'mutation($n: String!) { createAsset(input: {name: $n, type: REAL_ESTATE, jurisdiction: "nl", currency: '
    '"EUR", metadata: {address: "Kade 1, Amsterdam", areaSqm: "120.5", propertyType: "residential"}}) '
    "{ asset { id } errors { code message } } }"
)
TOKENIZE = (
    "mutation($a: UUID!, $d: DeployTokenInput) { tokenizeAsset(input: {assetId: $a, chainId: 1, deploy: $d}) "
    "{ tokenization { asset { status } token { address startBlock } } errors { code message } } }"
)


def _stop(dev: Dev) -> None:
    pids = dev.tree()
    os.killpg(dev.proc.pid, signal.SIGINT)
    assert dev.proc.wait(EXIT_TIMEOUT_S) == 0, dev.output()[-3000:]
    assert_all_stopped(dev, pids)


def _login(dev: Dev, email: str, password: str) -> str:
    return dev.gql(
        "mutation($e: String!, $p: String!) { login(input: {email: $e, password: $p}) { session { accessToken } } }",
        e=email,
        p=password,
    )["login"]["session"]["accessToken"]


def _admin_token(dev: Dev, email: str, password: str) -> str:
    """The ADMIN also made ISSUER and COMPLIANCE (to create, approve and tokenize an asset alone)."""
    token = _login(dev, email, password)
    me = dev.gql("{ me { id roles } }", token)["me"]
    for role in ("ISSUER", "COMPLIANCE"):
        if role not in me["roles"]:
            dev.gql(
                "mutation($u: UUID!, $r: Role!) { grantRole(input: {userId: $u, role: $r}) { user { id } } }",
                token,
                u=me["id"],
                r=role,
            )
    return _login(dev, email, password)


def _tokenize(dev: Dev, token: str, name: str, symbol: str) -> dict:
    created = dev.gql(ASSET, token, n=name)["createAsset"]
    assert created["errors"] == [], created
    asset = created["asset"]["id"]
    for call in ("submitAsset", "approveAsset"):
        done = dev.gql(
            f"mutation($id: UUID!) {{ {call}(id: $id) {{ asset {{ status }} errors {{ code }} }} }}", token, id=asset
        )
        assert done[call]["errors"] == [], done
    body = httpx.post(
        dev.url + "/graphql",
        json={"query": TOKENIZE, "variables": {"a": asset, "d": {"name": name, "symbol": symbol, "decimals": 18}}},
        headers={"authorization": f"Bearer {token}"},
        timeout=120,
    ).json()
    assert not body.get("errors") and body["data"]["tokenizeAsset"]["errors"] == [], body
    result = body["data"]["tokenizeAsset"]["tokenization"]
    assert result["asset"]["status"] == "ACTIVE"
    return result["token"]


@pytest.fixture
def base() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="rwa-dev-restart-", dir="/var/tmp"))
    yield path
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def test_dev_restart_continues_the_chains_and_tokenizes(base: Path) -> None:
    started: list[Dev] = []
    try:
        first = Dev(base)
        started.append(first)
        first.wait_ready()
        email, password = f"admin-{uuid.uuid4().hex[:6]}@example.com", "correct-horse-9"
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
        env["RWA_DATA_DIR"] = str(base / "data")
        made = subprocess.run(
            [RWA, "user", "create-admin", "--email", email, "--password", password],
            env=env,
            cwd=base,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert made.returncode == 0, made.stderr
        token = _admin_token(first, email, password)
        old = _tokenize(first, token, "Harbour Loft Shares", "HLS")
        url1 = first.chains[1][0]
        head = int(str(rpc(url1, "eth_blockNumber")), 16)
        old_head_hash = rpc(url1, "eth_getBlockByNumber", hex(head), False)["hash"]  # type: ignore[index]
        nonce = rpc(url1, "eth_getTransactionCount", ANVIL_ACCOUNT_0, "latest")
        usdc = {cid: c[2] for cid, c in first.chains.items()}
        _stop(first)
        assert (base / "data" / "chains" / "anvil-1.json").stat().st_size > 0

        second = Dev(base)  # new API port; the chains get new free ports too
        started.append(second)
        second.wait_ready()
        url2 = second.chains[1][0]
        # the same chain, continued: old blocks, the deployer's nonce, the contracts, the demo tokens
        assert rpc(url2, "eth_getBlockByNumber", hex(head), False)["hash"] == old_head_hash  # type: ignore[index]
        assert int(str(rpc(url2, "eth_blockNumber")), 16) >= head
        assert rpc(url2, "eth_getTransactionCount", ANVIL_ACCOUNT_0, "latest") == nonce
        assert rpc(url2, "eth_getCode", old["address"], "latest") not in ("0x", None)
        assert {cid: c[2] for cid, c in second.chains.items()} == usdc
        assert "Traceback" not in second.output()

        token = _admin_token(second, email, password)
        new = _tokenize(second, token, "Canal House Shares", "CHS")
        assert new["address"] != old["address"] and new["startBlock"] > head
        assert rpc(url2, "eth_getCode", new["address"], "latest") not in ("0x", None)
        _stop(second)
    finally:
        for dev in started:
            if dev.proc.poll() is None:
                dev.proc.kill()
                dev.proc.wait(10)
            for pid, _ in dev.leftovers():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
