"""`rwa serve --workers N` on a real socket: no request crashes a worker (the recursion limit stays at the
interpreter's default after eth-account is imported by linkWallet, and crafted cursors are BAD_USER_INPUT), a worker
that dies anyway (kill -9) is replaced by the supervisor, and /readyz tells."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from eth_account import Account
from eth_account.messages import encode_defunct

from tests.fixtures.app import free_port, process_env

RWA = str(Path(sys.executable).with_name("rwa"))
REPO = Path(__file__).resolve().parents[2]
DEFAULT_RECURSION_LIMIT = 1000
NESTED_CURSOR = base64.urlsafe_b64encode(b"[" * 234_000).decode()  # 312 kB of nested arrays


def workers_of(proc: subprocess.Popen) -> list[psutil.Process]:
    out = []
    for p in psutil.Process(proc.pid).children():
        try:
            if p.status() != psutil.STATUS_ZOMBIE and "resource_tracker" not in " ".join(p.cmdline()):
                out.append(p)
        except psutil.Error:
            pass
    return out


def wait_for(predicate, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def served(request, module_database_url: str, redis_url: str, tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen]]:  # type: ignore[no-untyped-def]
    workers = getattr(request, "param", 2)
    port = free_port()
    env = process_env(module_database_url, redis_url, tmp_path / "data", "serve", LOG_LEVEL="WARNING")
    log = open(tmp_path / "serve.log", "wb")
    proc = subprocess.Popen(
        [RWA, "serve", "--port", str(port), "--workers", str(workers)],
        env=env,
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"

    last: list[str] = []

    def ready() -> bool:
        assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
        try:
            resp = httpx.get(url + "/readyz", timeout=2)
        except httpx.HTTPError as exc:
            last[:] = [repr(exc)]
            return False
        last[:] = [resp.text]
        return resp.status_code == 200 and len(workers_of(proc)) == workers

    try:
        try:
            wait_for(ready, 60, f"rwa serve --workers {workers}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {last} {(tmp_path / 'serve.log').read_text()[-3000:]}") from None
        yield url, proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        log.close()


def gql(url: str, query: str, variables: dict | None = None, token: str | None = None) -> dict:  # type: ignore[type-arg]
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    # a fresh connection per request, so requests spread over both workers
    with httpx.Client(timeout=30, headers={"Connection": "close", **headers}) as client:
        resp = client.post(url + "/graphql", json={"query": query, "variables": variables or {}})
    assert resp.status_code < 500, resp.text
    return resp.json()


def link_wallet(url: str, token: str) -> None:
    account = Account.create()
    issued = gql(
        url,
        "mutation($a: String!) { walletChallenge(input: {address: $a}) { challenge { message } } }",
        {"a": account.address},
        token,
    )
    message = issued["data"]["walletChallenge"]["challenge"]["message"]
    signature = "0x" + account.sign_message(encode_defunct(text=message)).signature.hex().removeprefix("0x")
    linked = gql(
        url,
        "mutation($a: String!, $s: String!) { linkWallet(input: {address: $a, signature: $s}) { wallet { address } } }",
        {"a": account.address, "s": signature},
        token,
    )
    assert linked["data"]["linkWallet"]["wallet"]["address"] == account.address, linked


def test_nested_cursor_after_link_wallet_does_not_kill_a_worker(served) -> None:  # type: ignore[no-untyped-def]
    url, proc = served
    before = sorted(p.pid for p in workers_of(proc))
    registered = gql(
        url,
        "mutation($e: String!, $p: String!) { register(input: {email: $e, password: $p}) { session { accessToken } } }",
        {"e": f"w-{uuid.uuid4().hex[:8]}@example.com", "p": "correct-horse-9-battery"},
    )
    token = registered["data"]["register"]["session"]["accessToken"]
    for _ in range(4):  # over fresh connections: both workers import eth-account
        link_wallet(url, token)
    for _ in range(6):
        result = gql(url, "query($c: String!) { assets(after: $c) { edges { cursor } } }", {"c": NESTED_CURSOR}, token)
        assert [e["extensions"]["code"] for e in result["errors"]] == ["BAD_USER_INPUT"]
    assert proc.poll() is None
    assert sorted(p.pid for p in workers_of(proc)) == before  # no worker died (and none was replaced)


def test_a_killed_worker_is_replaced_and_readyz_tells(served) -> None:  # type: ignore[no-untyped-def]
    url, proc = served
    ready = httpx.get(url + "/readyz", timeout=5).json()
    assert ready["status"] == "ready" and ready["worker"]["expected"] == 2 and ready["worker"]["alive"] == 2
    assert ready["worker"]["replaced"] == 0
    victim = workers_of(proc)[0]
    survivor = next(p for p in workers_of(proc) if p.pid != victim.pid)
    # the supervisor paused (so it cannot replace the victim yet): the survivor's /readyz names the missing worker
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        os.kill(victim.pid, signal.SIGKILL)
        wait_for(lambda: len(workers_of(proc)) == 1, 10, "the victim to die")
        resp = httpx.get(url + "/readyz", timeout=5, headers={"Connection": "close"})
        assert resp.status_code == 503, resp.text
        body = resp.json()
        assert body["failing"] == ["workers"] and body["worker"]["pid"] == survivor.pid
        assert body["worker"]["alive"] == 1 and body["worker"]["expected"] == 2
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    replacement = wait_for(
        lambda: [p for p in workers_of(proc) if p.pid not in (victim.pid, survivor.pid)], 30, "a replacement worker"
    )
    assert len(replacement) == 1

    def replaced_and_ready() -> dict | None:  # type: ignore[type-arg]
        try:
            resp = httpx.get(url + "/readyz", timeout=2, headers={"Connection": "close"})
        except httpx.HTTPError:
            return None
        body = resp.json()
        return body if resp.status_code == 200 and body["worker"]["pid"] == replacement[0].pid else None

    body = wait_for(replaced_and_ready, 60, "the replacement worker to answer /readyz")
    # the replacement started long after the supervisor (REPLACED_AFTER_S is 20 s); a fresh server reports 0
    assert body["worker"]["alive"] == 2
    assert proc.poll() is None


@pytest.mark.parametrize("served", [1], indirect=True)
def test_a_single_worker_is_supervised_too(served) -> None:  # type: ignore[no-untyped-def]
    """`rwa serve` (one worker, the Dockerfile's default) runs it under the supervisor as well: killed, replaced."""
    url, proc = served
    (victim,) = workers_of(proc)
    worker = httpx.get(url + "/readyz", timeout=5).json()["worker"]
    assert (worker["pid"], worker["expected"], worker["alive"]) == (victim.pid, 1, 1)
    os.kill(victim.pid, signal.SIGKILL)

    def answered_by_replacement() -> bool:
        try:
            body = httpx.get(url + "/readyz", timeout=2, headers={"Connection": "close"}).json()
        except httpx.HTTPError:
            return False
        return body["status"] == "ready" and body["worker"]["pid"] != victim.pid

    wait_for(answered_by_replacement, 60, "the replacement worker")
    assert proc.poll() is None and len(workers_of(proc)) == 1
    # the supervisor itself killed: its orphaned worker still answers, but is not ready (nothing would replace it)
    (orphan,) = workers_of(proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    try:
        wait_for(lambda: orphan.ppid() != proc.pid, 10, "the worker to be orphaned")
        resp = httpx.get(url + "/readyz", timeout=5, headers={"Connection": "close"})
        assert resp.status_code == 503 and resp.json()["failing"] == ["workers"], resp.text
        assert resp.json()["worker"]["supervisor"] == "gone"
    finally:
        orphan.kill()


def test_recursion_limit_is_the_default_in_every_entry_point() -> None:
    """Importing any entry point, then eth-account/web3 and signing (what linkWallet, deployments and the agent do),
    leaves the limit at the interpreter's default: py_ecc's import raised it to 100,000 for the whole process."""
    script = (
        "import sys, importlib; importlib.import_module(sys.argv[1]); import eth_account, web3; "
        "from eth_account.messages import encode_defunct; a = eth_account.Account.create(); "
        "m = encode_defunct(text='x'); eth_account.Account.recover_message(m, signature=a.sign_message(m).signature); "
        "print(sys.getrecursionlimit())"
    )
    for module in ("server.app", "cli.main", "jobs.actors", "cli.indexer", "chains.deploy", "core.settings"):
        out = subprocess.run(
            [sys.executable, "-c", script, module], cwd=REPO, capture_output=True, text=True, timeout=120
        )
        assert out.returncode == 0, out.stderr[-2000:]
        assert int(out.stdout.strip()) == DEFAULT_RECURSION_LIMIT, module


async def test_recursion_limit_after_link_wallet_in_process(gql, make_user) -> None:  # type: ignore[no-untyped-def,no-redef]
    import server.app  # noqa: F401  (the app's imports)

    user, account = await make_user(), Account.create()
    issued = await gql(
        "mutation($a: String!) { walletChallenge(input: {address: $a}) { challenge { message } } }",
        {"a": account.address},
        token=user.token,
    )
    message = issued["data"]["walletChallenge"]["challenge"]["message"]
    signature = "0x" + account.sign_message(encode_defunct(text=message)).signature.hex().removeprefix("0x")
    linked = await gql(
        "mutation($a: String!, $s: String!) { linkWallet(input: {address: $a, signature: $s}) { wallet { address } } }",
        {"a": account.address, "s": signature},
        token=user.token,
    )
    assert linked["data"]["linkWallet"]["wallet"]["address"] == account.address
    assert sys.getrecursionlimit() == DEFAULT_RECURSION_LIMIT
