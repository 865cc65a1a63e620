"""Soak (issue 12): distinct large and hostile GraphQL documents fired at a live `rwa serve`, RSS at start and end.

Every request is a document the server has never seen: `{ __typename }` padded with a ~900 kB comment, ~20 kB
documents (small enough to be cached: they fill the cache to its byte bound), fragment bombs and crafted cursors.
The acceptance criterion is RSS within 20% of its start (after a warm-up) once the run ends.

    .venv/bin/python -m bench.document_soak [--duration 600] [--concurrency 4]      # starts rwa serve itself
    .venv/bin/python -m bench.document_soak --url http://127.0.0.1:8000 --pid 1234   # a server already running

Loopback only; bounded by --duration (at most an hour). Exit status 1 when RSS ends more than 20% above its start.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse

import httpx

from bench.harness import REDIS_URL, REPO, _children, free_port, scratch_database

MAX_DURATION_S = 3600


def rss_mb(pid: int) -> float:
    """Resident memory of the process and its children (uvicorn workers)."""
    total = 0
    for p in [pid, *_children(pid)]:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total / 1024


def documents(padding: int) -> itertools.cycle[tuple[str, dict[str, object]]]:
    """Generators of distinct hostile requests, in rotation."""

    def padded() -> tuple[str, dict[str, object]]:
        return f"{{ __typename }}\n# {uuid.uuid4().hex} " + "x" * padding, {}

    def medium() -> tuple[str, dict[str, object]]:
        tag = uuid.uuid4().hex
        return f"query Q{tag} {{ __typename }}\n# " + "y" * 20_000, {}

    def bomb() -> tuple[str, dict[str, object]]:
        tag = uuid.uuid4().hex[:8]
        parts = [f"fragment F{tag}0 on Query {{ __typename }}"]
        parts += [f"fragment F{tag}{i} on Query {{ ...F{tag}{i - 1} ...F{tag}{i - 1} }}" for i in range(1, 23)]
        return f"{{ ...F{tag}22 }}\n" + "\n".join(parts), {}

    def cursor() -> tuple[str, dict[str, object]]:
        nested = base64.urlsafe_b64encode(b"[" * 200_000 + uuid.uuid4().bytes).decode()
        return "query($c: String!) { assets(after: $c) { edges { cursor } } }", {"c": nested}

    return itertools.cycle([padded, medium, padded, bomb, padded, medium, cursor])  # type: ignore[arg-type]


async def fire(url: str, duration: float, concurrency: int, padding: int, pid: int) -> tuple[float, float, int, int]:
    make = documents(padding)
    sent = failed = 0
    deadline = time.monotonic() + duration
    peak = 0.0

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal sent, failed
        while time.monotonic() < deadline:
            query, variables = next(make)()  # type: ignore[operator]
            try:
                resp = await client.post(url + "/graphql", json={"query": query, "variables": variables})
                if resp.status_code >= 500:
                    failed += 1
            except httpx.HTTPError:
                failed += 1
            sent += 1

    async with httpx.AsyncClient(timeout=60) as client:
        # warm-up: the first requests build the schema's lazy state and grow the allocator's arenas
        await asyncio.gather(*(worker_once(client, url, make) for _ in range(40)))
        start = rss_mb(pid)
        print(f"start RSS {start:.1f} MB (after warm-up)", flush=True)
        tasks = [asyncio.create_task(worker(client)) for _ in range(concurrency)]
        printed = time.monotonic()
        while not all(t.done() for t in tasks):
            await asyncio.sleep(0.5)
            peak = max(peak, rss_mb(pid))
            if time.monotonic() - printed >= 10:
                printed = time.monotonic()
                print(f"  {sent} requests, {failed} failed, RSS {rss_mb(pid):.1f} MB", flush=True)
        await asyncio.gather(*tasks)
    return start, peak, sent, failed


async def worker_once(client: httpx.AsyncClient, url: str, make) -> None:  # type: ignore[no-untyped-def]
    query, variables = next(make)()
    await client.post(url + "/graphql", json={"query": query, "variables": variables})


def run(url: str, pid: int, args: argparse.Namespace) -> int:
    start, peak, sent, failed = asyncio.run(fire(url, args.duration, args.concurrency, args.padding, pid))
    end = rss_mb(pid)
    ratio = end / start if start else float("inf")
    print(
        f"RSS start {start:.1f} MB, end {end:.1f} MB ({(ratio - 1) * 100:+.1f}%), peak {peak:.1f} MB; "
        f"{sent} requests in {args.duration:.0f} s, {failed} failed (5xx or connection)"
    )
    return 0 if ratio <= 1.2 and failed == 0 else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=600)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--padding", type=int, default=900_000, help="comment bytes in the large documents")
    parser.add_argument("--url", help="a running server (loopback only); needs --pid")
    parser.add_argument("--pid", type=int, help="the running server's pid (its children are counted too)")
    parser.add_argument("--workers", type=int, default=1, help="rwa serve --workers, when started here")
    args = parser.parse_args()
    args.duration = min(args.duration, MAX_DURATION_S)
    if args.url:
        if urlparse(args.url).hostname not in ("127.0.0.1", "localhost", "::1") or not args.pid:
            sys.exit("--url must be a loopback address, with --pid")
        sys.exit(run(args.url.rstrip("/"), args.pid, args))
    port = free_port()
    with scratch_database("rwa_soak") as database_url:
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "REDIS_URL": REDIS_URL,
            "RWA_ENV": "development",
            "RWA_DATA_DIR": f"/tmp/rwa-soak-{uuid.uuid4().hex[:8]}",
            "LOG_LEVEL": "WARNING",
            "RWA_REDIS_PREFIX": f"rwa-soak:{uuid.uuid4().hex[:8]}:",
        }
        proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("rwa")), "serve", "--port", str(port), "--workers", str(args.workers)],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                if proc.poll() is not None or time.monotonic() > deadline:
                    sys.exit("rwa serve did not start")
                try:
                    if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.2)
            code = run(url, proc.pid, args)
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
    sys.exit(code)


if __name__ == "__main__":
    main()
