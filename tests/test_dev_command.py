"""`rwa dev` end to end, as the README's `bash scripts/dev.sh` runs it: with DATABASE_URL/REDIS_URL unset it starts
embedded Postgres/Redis, three anvil chains with the demo contracts (identity registry, DREF security token, USDC) and some activity, the API, the indexer and a worker. The API answers
register/login/me, serves GraphiQL, and reports the three chains with an indexed block that follows their heads
and the events we cause; Ctrl-C (SIGINT to the process group, as a terminal sends it) or SIGTERM stops it within
30 s leaving no process behind; and if `rwa dev` is SIGKILLed its watchdog stops everything it started."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from eth_utils import function_signature_to_4byte_selector

from tests.fixtures.app import free_port

RWA = str(Path(sys.executable).with_name("rwa"))
REPO = Path(__file__).resolve().parents[1]
READY_TIMEOUT_S = 90.0  # cold initdb, migrations, three deploys, four Python processes on a busy 2-core machine
EXIT_TIMEOUT_S = 30.0
ANVIL_ACCOUNT_0 = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
CHAIN_LINE = re.compile(
    r"^chain (\d+) (http://127\.0\.0\.1:(\d+))\s+USDC (0x[0-9a-fA-F]{40})\s+DREF (0x[0-9a-fA-F]{40})$", re.M
)
STATUS = "{ indexerStatus { chainId chain headBlock indexedBlock recentEvents } }"

pytestmark = pytest.mark.slow


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class Dev:
    """One `rwa dev` in its own session (so a group signal is what a terminal's Ctrl-C would be)."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = base / "dev.log"
        drop = ("DATABASE_URL", "REDIS_URL", "BROKER_URL", "RWA_ENV", "DEPLOYER_PRIVATE_KEY")
        env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("RPC_URLS_")}
        env.update(RWA_DATA_DIR=str(base / "data"), LOG_LEVEL="WARNING")
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [RWA, "dev", "--port", str(self.port)],
                env=env,
                cwd=base,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.chains: dict[int, tuple[str, int, str]] = {}  # chain id -> (rpc url, port, USDC address)
        self.known: dict[int, str] = {}  # pid -> command line of every process tree() saw

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        announced = False
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"rwa dev exited with {self.proc.returncode}:\n{self.output()[-4000:]}")
            if not announced and "GraphiQL at" in self.output():
                announced = True  # printed once the API listens (it was printed before uvicorn had bound)
                assert httpx.get(self.url + "/healthz", timeout=5).status_code == 200
            try:
                if announced and httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        else:
            raise AssertionError(f"rwa dev not ready in {READY_TIMEOUT_S}s:\n{self.output()[-4000:]}")
        self.chains = {int(m[1]): (m[2], int(m[3]), m[4]) for m in CHAIN_LINE.finditer(self.output())}
        assert sorted(self.chains) == [1, 56, 137], self.output()[-4000:]

    def tree(self) -> list[int]:
        """Every process this dev started: its descendants (API, indexer, worker + dramatiq, anvils, watchdog) and
        the embedded Postgres/Redis (own sessions, so found by their data dir on the command line)."""
        pids = {p.pid for p in psutil.Process(self.proc.pid).children(recursive=True)}
        pids |= {pid for pid, _ in self.leftovers()}
        self.known.update({pid: _cmdline(pid) for pid in pids})
        return sorted(pids)

    def leftovers(self) -> list[tuple[int, str]]:
        """Live processes naming our data dir, API port or a chain port on their command line."""
        marks = [str(self.base)] + [f"--port {p}" for p in [self.port, *(c[1] for c in self.chains.values())]]
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and int(entry.name) != os.getpid():
                cmd = _cmdline(int(entry.name))
                if any(m + " " in cmd + " " for m in marks) and _alive(int(entry.name)):
                    found.append((int(entry.name), cmd.strip()))
        return found

    def gql(self, query: str, token: str | None = None, **variables: object) -> dict[str, Any]:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        body = httpx.post(
            self.url + "/graphql", json={"query": query, "variables": variables}, headers=headers, timeout=30
        ).json()
        assert not body.get("errors"), body
        return body["data"]  # type: ignore[no-any-return]


def rpc(url: str, method: str, *params: object) -> object:
    request = {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
    body = httpx.post(url, json=request, timeout=10).json()
    assert "error" not in body, body
    return body["result"]


def assert_all_stopped(dev: Dev, pids: list[int], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline and ([p for p in pids if _alive(p)] or dev.leftovers()):
        time.sleep(0.1)
    left = {p: _cmdline(p) for p in pids if _alive(p)} | dict(dev.leftovers())
    assert not left, f"left running: {left}\n{dev.output()[-3000:]}"


@pytest.fixture
def start_dev() -> Iterator[Callable[[], Dev]]:
    """`start_dev()` -> Dev; whatever a failed test left running is killed by pid (and the test already failed)."""
    started: list[Dev] = []

    def _start() -> Dev:
        base = Path(tempfile.mkdtemp(prefix="rwa-dev-", dir="/var/tmp"))
        started.append(Dev(base))
        return started[-1]

    yield _start
    for dev in started:
        if dev.proc.poll() is None:
            dev.proc.kill()
            dev.proc.wait(10)
        stray = {pid for pid, cmd in dev.known.items() if _alive(pid) and _cmdline(pid) == cmd}
        for pid in stray | {pid for pid, _ in dev.leftovers()}:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(dev.base, ignore_errors=True)


def status_by_chain(dev: Dev, token: str) -> dict[int, dict[str, Any]]:
    return {row["chainId"]: row for row in dev.gql(STATUS, token)["indexerStatus"]}


def wait_indexed(
    dev: Dev, token: str, chain_id: int, block: int, events: int = 0, timeout: float = 30.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        row = status_by_chain(dev, token)[chain_id]
        if (row["indexedBlock"] or -1) >= block and row["recentEvents"] >= events:
            return row
        if time.monotonic() > deadline:
            raise AssertionError(f"chain {chain_id} not indexed to block {block} with {events} events: {row}")
        time.sleep(0.5)


def test_dev_serves_indexes_and_ctrl_c_stops_everything(start_dev: Callable[[], Dev]) -> None:
    dev = start_dev()
    dev.wait_ready()

    email, password = f"dev-{uuid.uuid4().hex[:8]}@example.com", "correct-horse-9"
    dev.gql(
        "mutation($e: String!, $p: String!) { register(input: {email: $e, password: $p}) { session { user { id } } } }",
        e=email,
        p=password,
    )
    token = dev.gql(
        "mutation($e: String!, $p: String!) { login(input: {email: $e, password: $p}) { session { accessToken } } }",
        e=email,
        p=password,
    )["login"]["session"]["accessToken"]
    assert dev.gql("{ me { email } }", token)["me"]["email"] == email

    rows = status_by_chain(dev, token)
    assert set(rows) >= {1, 137, 56}
    assert {rows[c]["chain"] for c in (1, 137, 56)} == {"ethereum", "polygon", "bsc"}
    for chain_id, (url, _, usdc) in dev.chains.items():
        before = wait_indexed(dev, token, chain_id, 0)  # the indexer reached the deploy block
        # a USDC mint (one Transfer event) and 5 empty blocks: the indexed block must follow the new head
        data = (
            "0x"
            + function_signature_to_4byte_selector("mint(address,uint256)").hex()
            + ANVIL_ACCOUNT_0[2:].lower().rjust(64, "0")
            + hex(1_000_000)[2:].rjust(64, "0")
        )
        rpc(url, "eth_sendTransaction", {"from": ANVIL_ACCOUNT_0, "to": usdc, "data": data})
        rpc(url, "anvil_mine", "0x5")
        head = int(str(rpc(url, "eth_blockNumber")), 16)
        assert head >= before["indexedBlock"] + 6
        after = wait_indexed(dev, token, chain_id, head, events=before["recentEvents"] + 1)
        assert after["headBlock"] >= head

    # `rwa index` in another shell (same data dir, no RPC_URLS_<id>) sees the dev chains (cli/dev_chains.py)
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("RPC_URLS_") and k not in ("DATABASE_URL", "REDIS_URL")
    }
    env["RWA_DATA_DIR"] = str(dev.base / "data")
    status = subprocess.run(
        [RWA, "index", "status", "--json"], env=env, cwd=dev.base, capture_output=True, text=True, timeout=120
    )
    assert status.returncode == 0, status.stderr
    reachable = {row["chain_id"]: row["reachable"] for row in json.loads(status.stdout)["chains"]}
    assert reachable == {1: True, 137: True, 56: True}, status.stdout
    usdc = dev.chains[1][2]
    verify = subprocess.run(
        [RWA, "index", "verify", "--chain", "1", "--token", usdc],
        env=env,
        cwd=dev.base,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert verify.returncode == 0 and verify.stdout.startswith("OK"), (verify.stdout, verify.stderr)

    page = httpx.get(dev.url + "/graphql", headers={"accept": "text/html"}, timeout=10)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "GraphiQL" in page.text

    pids = dev.tree()
    assert len(pids) >= 8, pids  # api, indexer, worker (+ dramatiq), 3 anvils, watchdog, postgres, redis
    started = time.monotonic()
    os.killpg(dev.proc.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
    os.killpg(dev.proc.pid, signal.SIGINT)  # twice at once, as under `timeout`: still one graceful stop
    try:
        code = dev.proc.wait(EXIT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"rwa dev ignored Ctrl-C for {EXIT_TIMEOUT_S}s:\n{dev.output()[-3000:]}") from None
    assert code == 0, dev.output()[-3000:]
    assert time.monotonic() - started < EXIT_TIMEOUT_S
    assert_all_stopped(dev, pids)
    assert not (dev.base / "data" / "dev-chains.json").exists()  # withdrawn: its chains are gone
    output = dev.output()
    assert "Traceback" not in output and "second signal" not in output and "Unclosed" not in output, output[-3000:]
    assert "killing its process group" not in output, output[-3000:]  # every child stopped gracefully


def test_dev_sigterm_stops_everything(start_dev: Callable[[], Dev]) -> None:
    dev = start_dev()
    dev.wait_ready()
    pids = dev.tree()
    dev.proc.terminate()  # to the dev process only, as a supervisor sends it
    code = dev.proc.wait(EXIT_TIMEOUT_S)
    assert code == 0, dev.output()[-3000:]
    assert_all_stopped(dev, pids)
    assert "Traceback" not in dev.output() and "killing its process group" not in dev.output(), dev.output()[-3000:]


def test_dev_sigkill_watchdog_stops_everything(start_dev: Callable[[], Dev]) -> None:
    dev = start_dev()
    dev.wait_ready()
    pids = dev.tree()
    dev.proc.kill()
    dev.proc.wait(5)
    # the watchdog gives the children 20 s to stop gracefully, then stops the orphaned Postgres/Redis
    assert_all_stopped(dev, pids, within=EXIT_TIMEOUT_S)


def test_stop_signals_honour_sigint_even_when_started_ignored() -> None:
    """A script's `rwa dev &` starts with SIGINT ignored: `kill -INT <pid>` must still stop it; SIGHUP ignored by
    nohup stays ignored. (Run in a child: signal dispositions are per process.)"""
    code = (
        "import os, signal\n"
        "signal.signal(signal.SIGINT, signal.SIG_IGN); signal.signal(signal.SIGHUP, signal.SIG_IGN)\n"
        "from cli.dev import StopSignals\n"
        "s = StopSignals(); s.install()\n"
        "os.kill(os.getpid(), signal.SIGINT)\n"
        "print(s.stop, signal.getsignal(signal.SIGHUP) == signal.SIG_IGN)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True"]
