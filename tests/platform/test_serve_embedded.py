"""`rwa serve` on the zero-setup default: with DATABASE_URL/REDIS_URL unset it starts embedded Postgres and Redis in
RWA_DATA_DIR, answers /readyz and a register mutation, and on SIGTERM/SIGINT exits promptly leaving no postgres or
redis-server behind. `--workers 2` runs two worker processes that both serve."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from core.embedded_registry import load_registry
from tests.fixtures.app import free_port

REPO = Path(__file__).resolve().parents[2]
RWA = str(Path(sys.executable).with_name("rwa"))
READY_TIMEOUT_S = 120.0  # cold initdb + migrations on a busy 2-core machine
EXIT_TIMEOUT_S = 15.0
REGISTER = """mutation($e: String!, $p: String!) {
  register(input: {email: $e, password: $p}) { session { accessToken user { email } } } }"""

pytestmark = pytest.mark.slow


def procs_referencing(path: Path) -> list[tuple[int, str]]:
    """Live processes whose command line mentions `path` (postmaster -D, redis --unixsocket, rwa itself)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:  # exited meanwhile
            continue
        if str(path) in cmdline and state != "Z":
            found.append((int(entry.name), cmdline.strip()))
    return found


def service_pids(data_dir: Path) -> list[int]:
    """The postmaster with all its backends, and the registered redis-server."""
    pids = []
    pidfile = data_dir / "pg" / "postmaster.pid"
    if pidfile.exists():
        postmaster = psutil.Process(int(pidfile.read_text().split()[0]))
        pids += [postmaster.pid] + [c.pid for c in postmaster.children(recursive=True)]
    redis = load_registry(data_dir).redis
    if redis is not None:
        pids.append(redis.pid)
    return pids


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class Server:
    def __init__(self, data_dir: Path, *args: str, log_level: str = "WARNING") -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = data_dir.parent / f"{data_dir.name}.log"
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "RWA_ENV")}
        # its ops ports on free ones: the defaults (9100, 9103) may be held by a stack someone runs on this machine
        env.update(
            RWA_DATA_DIR=str(data_dir),
            LOG_LEVEL=log_level,
            RWA_API_METRICS_PORT=str(free_port()),
            RWA_WORKER_METRICS_PORT=str(free_port()),
        )
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [RWA, "serve", "--port", str(self.port), *args],
                env=env,
                cwd=data_dir.parent,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"rwa serve exited with {self.proc.returncode}:\n{self.output()}")
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"rwa serve not ready in {READY_TIMEOUT_S}s:\n{self.output()}")

    def stop(self, sig: signal.Signals) -> float:
        started = time.monotonic()
        self.proc.send_signal(sig)
        try:
            self.proc.wait(EXIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"rwa serve ignored {sig.name} for {EXIT_TIMEOUT_S}s:\n{self.output()}") from None
        return time.monotonic() - started


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """Outside the root user's home (pgserver refuses it); anything a failed test left is killed by pid."""
    base = Path(tempfile.mkdtemp(prefix="rwa-serve-", dir="/tmp"))
    path = base / "data"
    try:
        yield path
    finally:
        for pid, _ in procs_referencing(base):
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        pidfile = path / "pg" / "postmaster.pid"
        if pidfile.exists():
            try:
                os.kill(int(pidfile.read_text().split()[0]), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def serve(data_dir: Path) -> Iterator:  # type: ignore[type-arg]
    """`serve(*args)` starts `rwa serve`; whatever is still running at the end is killed (its process group)."""
    started: list[Server] = []

    def _serve(*args: str, log_level: str = "WARNING") -> Server:
        server = Server(data_dir, *args, log_level=log_level)
        started.append(server)
        return server

    yield _serve
    for server in started:
        if server.proc.poll() is None:
            try:
                os.killpg(server.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            server.proc.wait(10)


def register(url: str, request_id: str | None = None) -> None:
    email = f"embedded-{uuid.uuid4().hex[:8]}@example.com"
    resp = httpx.post(
        url + "/graphql",
        json={"query": REGISTER, "variables": {"e": email, "p": "embedded-pass-1"}},
        headers={"X-Request-ID": request_id} if request_id else {},
        timeout=30,
    )
    body = resp.json()
    assert body.get("data") and body["data"]["register"]["session"]["user"]["email"] == email, body
    assert body["data"]["register"]["session"]["accessToken"]


def assert_nothing_left(data_dir: Path, pids: list[int]) -> None:
    deadline = time.monotonic() + 5  # postgres backends exit right after the postmaster
    while time.monotonic() < deadline and ([p for p in pids if alive(p)] or procs_referencing(data_dir)):
        time.sleep(0.1)
    assert not [p for p in pids if alive(p)], f"left running: {[p for p in pids if alive(p)]}"
    assert not procs_referencing(data_dir), procs_referencing(data_dir)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serve_embedded_then_signal_leaves_nothing(serve, data_dir: Path, sig: signal.Signals) -> None:  # type: ignore[no-untyped-def]
    server = serve(log_level="INFO")
    server.wait_ready()
    ready = httpx.get(server.url + "/readyz", timeout=5)
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    register(server.url, request_id=f"embedded-{sig.name}")
    pids = service_pids(data_dir)
    assert len(pids) >= 2, "expected an embedded postmaster and redis-server"
    assert any("redis-server" in " ".join(psutil.Process(p).cmdline()) for p in pids)
    elapsed = server.stop(sig)
    assert elapsed < EXIT_TIMEOUT_S
    assert_nothing_left(data_dir, pids)
    output = server.log.read_text(errors="replace")
    assert "Traceback" not in output
    # the process's log stream, start to shutdown: one JSON object per line, request lines carry the request id
    lines = [json.loads(line) for line in output.splitlines() if line.strip()]
    request_lines = [line for line in lines if line.get("request_id") == f"embedded-{sig.name}"]
    assert [(line["msg"], line["path"]) for line in request_lines if line["logger"] == "rwa.http"] == [
        ("request", "/graphql")
    ]
    assert any(line["msg"] == "api stopped" for line in lines), "graceful shutdown ran the lifespan end"


def worker_pids(server: Server) -> list[int]:
    """uvicorn's worker processes (multiprocessing spawn children of `rwa serve`)."""
    children = psutil.Process(server.proc.pid).children()
    return [c.pid for c in children if any("spawn_main" in part for part in c.cmdline())]


def answers(url: str, attempts: int = 5) -> bool:
    for _ in range(attempts):
        try:  # a fresh connection each time, so any worker that accepts can answer
            with httpx.Client(timeout=3) as client:
                if client.get(url + "/healthz", headers={"Connection": "close"}).status_code == 200:
                    return True
        except httpx.HTTPError:
            pass
    return False


def test_serve_two_workers(serve, data_dir: Path) -> None:  # type: ignore[no-untyped-def]
    server = serve("--workers", "2")
    server.wait_ready()
    deadline = time.monotonic() + 30
    while len(workers := worker_pids(server)) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(workers) == 2, f"worker processes: {workers}\n{server.output()}"
    register(server.url)
    # each worker alone must serve: pause one (it stops accepting), the other answers every new connection
    for paused in workers:
        os.kill(paused, signal.SIGSTOP)
        try:
            assert answers(server.url), f"no answer while worker {paused} was paused"
        finally:
            os.kill(paused, signal.SIGCONT)
    pids = service_pids(data_dir) + workers
    server.stop(signal.SIGTERM)
    assert_nothing_left(data_dir, pids)
