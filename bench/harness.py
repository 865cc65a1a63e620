"""Shared benchmark plumbing: scratch database, uvicorn subprocesses, wrk runs parsed into numbers, peak RSS."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
ADMIN_URL = os.environ.get(
    "BENCH_DATABASE_URL", os.environ.get("TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")
)
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def scratch_database(prefix: str = "rwa_bench") -> Iterator[str]:
    import asyncpg
    from sqlalchemy.engine import make_url

    from core.migrate import upgrade

    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    dsn = make_url(ADMIN_URL).set(drivername="postgresql").render_as_string(hide_password=False)

    async def _admin(sql: str) -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    url = make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        asyncio.run(upgrade(url))
        yield url
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@dataclass
class Server:
    url: str
    proc: subprocess.Popen

    def peak_rss_mb(self) -> float:
        """VmHWM of the server process (and its children, for multi-worker uvicorn)."""
        total = 0
        for pid in [self.proc.pid, *_children(self.proc.pid)]:
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        total += int(line.split()[1])
            except FileNotFoundError:
                pass
        return total / 1024


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


@contextmanager
def running_server(
    name: str, proc: subprocess.Popen, url: str, ready: Callable[[str], object], *, timeout_s: float = 30
) -> Iterator[Server]:
    """Wait until `ready(url)` stops raising httpx errors (the process must stay up), yield it, stop it."""
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited: {proc.stderr.read().decode()[-3000:]}")  # type: ignore[union-attr]
        try:
            ready(url)
            break
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"{name} did not start")
            time.sleep(0.1)
    try:
        yield Server(url, proc)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextmanager
def uvicorn_server(app: str, env: dict[str, str], *, factory: bool = True, workers: int = 1) -> Iterator[Server]:
    port = free_port()
    if app.startswith("server."):
        # our API as `rwa serve` runs it: its HTTP protocol (BoundedHeadProtocol: header deadline and size limit,
        # the response head written with its body), which uvicorn's command line cannot name
        launch = (
            "import sys, uvicorn\n"
            "from server.http_protocol import BoundedHeadProtocol\n"
            "uvicorn.run(sys.argv[1], host='127.0.0.1', port=int(sys.argv[2]), workers=int(sys.argv[3]),"
            " factory=sys.argv[4] == '1', http=BoundedHeadProtocol, log_level='warning', access_log=False)"
        )
        cmd = [sys.executable, "-c", launch, app, str(port), str(workers), "1" if factory else "0"]
    else:
        cmd = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port)]
        cmd += ["--workers", str(workers), "--log-level", "warning", "--no-access-log"]
        cmd += ["--factory"] if factory else []
    proc = subprocess.Popen(
        cmd,
        cwd=REPO,
        env={**os.environ, **env, "LOG_LEVEL": "WARNING"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    with running_server(
        app, proc, f"http://127.0.0.1:{port}", lambda url: httpx.get(url + "/healthz", timeout=1)
    ) as server:
        yield server


@dataclass
class WrkResult:
    name: str
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    peak_rss_mb: float | None = None


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    assert m, text
    return float(m.group(1)) * _UNITS[m.group(2)]


def wrk_post(
    name: str,
    url: str,
    body: str,
    headers: dict[str, str],
    *,
    connections: int = 50,
    duration_s: int = 10,
    threads: int = 2,
) -> WrkResult:
    """POST `body` to `url` with wrk; return req/s and latency percentiles."""
    header_lines = "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in headers.items())
    script = f'wrk.method = "POST"\nwrk.body = [==[{body}]==]\n{header_lines}'
    script += (
        "done = function(summary, latency, requests)\n"
        '  io.write(string.format("NON2XX %d\\n", summary.errors.status))\nend\n'
    )
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration_s}s", "--latency", "-s", f.name, url],
        capture_output=True,
        text=True,
        timeout=duration_s + 60,
        check=True,
    ).stdout
    os.unlink(f.name)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    non2xx = int(re.search(r"NON2XX (\d+)", out).group(1))  # type: ignore[union-attr]
    return WrkResult(name, rps, p50, p99, non2xx)


def print_table(results: list[WrkResult], baseline: WrkResult) -> None:
    print(f"{'target':<34} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'RSS MB':>8} {'non2xx':>7} {'x baseline':>10}")
    for r in results:
        rss = f"{r.peak_rss_mb:.0f}" if r.peak_rss_mb is not None else "-"
        print(
            f"{r.name:<34} {r.requests_per_s:>9.0f} {r.p50_ms:>8.2f} {r.p99_ms:>8.2f} {rss:>8} {r.non_2xx:>7} "
            f"{r.requests_per_s / baseline.requests_per_s:>10.2f}"
        )
