"""Benchmark: indexer backfill throughput (fetch + decode + write, holdings included).

Starts its own anvil, deploys the RWA stack and builds a history of about ``--events`` events in one of two
shapes (``--shape``, default both, one after the other):
- busy: one sender paying the same 500 recipients with batchTransfer (500 Transfers per tx);
- realistic: 5,000 verified holders, 200 senders paying random holders, identity registrations and country
  updates, freeze/unfreeze actions: about 80% Transfers, 10% identity, 10% freeze events
  (bench/realistic_chain.py).
Then, on the same block range, it measures:
- the read baseline: raw eth_getLogs through RpcClient (same spans as the indexer, no decode/write);
- the write ceiling: the same raw-event and transfer rows written by asyncpg COPY alone;
- end to end: ``indexer.service.backfill`` in a child process, timed inside the call and from the process's
  spawn to its exit (imports, connections and start-up included); its peak RSS is reported too, and its CPU both
  inside the call and from process start (the start-up's imports are ~0.7 s of CPU here, more under load).
Each measurement uses a fresh database migrated to head. Compare numbers within one run only.

Fairness: the three measurements run one after the other (never concurrently) on the same node and block range.
The COPY ceiling copies rows decoded before its clock and writes no blocks, intervals, cursor or derived state: an
upper bound, not a like-for-like rival. The end-to-end child is timed twice: inside the backfill call, and from
its spawn to its exit (interpreter start, imports and connections included); its CPU (user + system, from
process start) is reported as the load-independent signal, with the CPU of the Postgres backends serving the
child's database (bench/indexer_vs_ponder.py's PgCpu). ``--reuse-chain`` dumps the generated chain
(``anvil_dumpState``; ``$BENCH_CHAIN_CACHE``, default ~/.cache/rwa-bench/backfill) and loads it next time
(``--load-state``): such a node keeps no historical state, so IdentityRegistered countries are read at the head
(LATEST, with the identity check) instead of at the log's block, as against a pruned provider.
``BENCH_E2E_ONLY=1`` skips the read baseline and the COPY ceiling; ``BENCH_PROFILE=<file>`` writes a pyinstrument
report of the child.

    .venv/bin/python bench/indexer_backfill.py --events 50000 [--shape busy|realistic|both] [--reuse-chain]
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import resource
import subprocess
import sys
import time
import uuid
from pathlib import Path

import asyncpg

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from indexer.config import IndexerConfig  # noqa: E402
from indexer.lock import asyncpg_dsn  # noqa: E402

# The child process (end-to-end run, whose RSS is reported) must import only what the indexer
# imports: web3, alembic and the load generator are imported by the parent's functions only.

ADMIN_URL = os.environ.get("BENCH_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")
CONFIG = IndexerConfig()
E2E_ONLY = os.environ.get("BENCH_E2E_ONLY") == "1"  # skip the read baseline and the COPY ceiling (iterating)


async def fresh_db() -> tuple[str, str]:
    from core.migrate import upgrade

    name = f"rwa_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(asyncpg_dsn(ADMIN_URL))
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    url = ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    await upgrade(url)
    return name, url


async def drop_db(name: str) -> None:
    admin = await asyncpg.connect(asyncpg_dsn(ADMIN_URL))
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


async def add_token(url: str, token: str, registry: str, start: int) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    await conn.execute(
        "INSERT INTO tokens (id, chain_id, address, kind, decimals, total_supply, paused, identity_registry, start_block, "
        "name, symbol) VALUES ($1, 1, $2, 'SECURITY', 18, 0, false, $3, $4, 'Bench', 'BNCH')",
        uuid.uuid4(),
        token,
        registry,
        start,
    )
    await conn.close()


async def read_baseline(url: str, addresses: list[str], lo: int, hi: int) -> tuple[int, float]:
    """Raw eth_getLogs through RpcClient over the range, in the indexer's adaptive spans."""
    from chains.registry import get_chain
    from chains.rpc import RpcClient
    from indexer.fetch import _logs_until, make_ranger

    async with RpcClient([url], chain_id=1, timeout=60) as client:
        ranger = make_ranger(get_chain(1), CONFIG.initial_span)
        started = time.perf_counter()
        n = 0
        start = lo
        while start <= hi:
            end, logs = await _logs_until(
                client, addresses, start, hi, ranger, CONFIG.batch_events, CONFIG.logs_per_call, 60
            )
            n += len(logs)
            start = end + 1
        return n, time.perf_counter() - started


async def copy_ceiling(rpc_url: str, addresses: list[str], lo: int, hi: int) -> tuple[int, float]:
    """Decode (untimed), then time asyncpg COPY of the same chain_events + token_transfers rows."""
    from chains.registry import get_chain
    from chains.rpc import RpcClient
    from indexer import pgtime
    from indexer.decode import EVENT_COLUMNS, TRANSFER_COLUMNS, decode_range
    from indexer.fetch import fetch_ranges, make_ranger

    async with RpcClient([rpc_url], chain_id=1, timeout=60) as client:
        ranger = make_ranger(get_chain(1), CONFIG.initial_span)
        batches = [
            decode_range(b, fast=False)  # every row as a tuple: the fast path's are COPY data already
            async for b in fetch_ranges(
                client,
                1,
                addresses,
                lo,
                hi,
                finalized=hi,
                ranger=ranger,
                max_events=CONFIG.batch_events,
                logs_per_call=CONFIG.logs_per_call,
                timeout=60,
            )
        ]
    name, url = await fresh_db()
    try:
        conn = await asyncpg.connect(asyncpg_dsn(url))
        await pgtime.install(conn)  # the decoded rows carry the writer connection's timestamptz form
        started = time.perf_counter()
        n = 0
        for b in batches:
            async with conn.transaction():
                await conn.copy_records_to_table("chain_events", records=b.events, columns=EVENT_COLUMNS)
                await conn.copy_records_to_table("token_transfers", records=b.transfers, columns=TRANSFER_COLUMNS)
            n += len(b.events)
        elapsed = time.perf_counter() - started
        await conn.close()
        return n, elapsed
    finally:
        await drop_db(name)


def peak_rss_mb() -> float:
    """VmHWM: the peak resident set of this process's own address space. (Not ru_maxrss: Linux carries
    it over from the parent across vfork+exec, so the child would report the parent's peak.)"""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def child_backfill(db_url: str, rpc_url: str, lo: int, hi: int) -> None:
    """Runs in a child process: the end-to-end backfill, printing JSON with its own peak RSS."""
    from core.settings import Settings
    from indexer.service import backfill

    os.environ["RPC_URLS_1"] = rpc_url
    settings = Settings(DATABASE_URL=db_url, REDIS_URL=None)  # type: ignore[call-arg]
    trace = os.environ.get("BENCH_TRACE_RSS")

    def progress(u) -> None:  # type: ignore[no-untyped-def]
        if trace:
            rss = int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") >> 20
            print(f"block {u.current_block} events {u.events} rss {rss} MB", file=sys.stderr)

    profile = os.environ.get("BENCH_PROFILE")  # a file: pyinstrument's text report of the child goes there
    if profile:
        from pyinstrument import Profiler

        profiler = Profiler(async_mode="enabled")
        profiler.start()
    before = resource.getrusage(resource.RUSAGE_SELF)
    result = asyncio.run(backfill(settings, 1, lo, hi, config=CONFIG, progress=progress))
    after = resource.getrusage(resource.RUSAGE_SELF)
    call_cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    if profile:
        profiler.stop()
        Path(profile).write_text(profiler.output_text(unicode=False, color=False, show_all=False))
    rss_mb = peak_rss_mb()
    print(
        json.dumps(
            {
                "events": result.events,
                "transfers": result.transfers,
                "seconds": result.elapsed_s,
                "rss_mb": rss_mb,
                "call_cpu_s": call_cpu,
            }
        )
    )


async def main(n_events: int, shape: str, reuse: bool) -> None:
    from chains.anvil import AnvilNode
    from chains.deploy import connect, deploy_rwa_stack
    from chains.loadgen import load_recipients, prepare_security_token_load, send_batch_transfers

    print(f"--- shape: {shape}", flush=True)
    # base fee 0: full blocks would raise it above the fee cap the load txs were sent with (they then never mine)
    anvil_args: tuple[str, ...] = ("--gas-limit", "100000000", "--base-fee", "0")
    cache = Path(os.environ.get("BENCH_CHAIN_CACHE", "~/.cache/rwa-bench/backfill")).expanduser()
    state_file, meta_file = cache / f"state-{shape}-{n_events}.json", cache / f"meta-{shape}-{n_events}.json"
    if reuse and state_file.exists() and meta_file.exists():
        meta = json.loads(meta_file.read_text())
        with AnvilNode(1, extra_args=(*anvil_args, "--load-state", str(state_file))) as node:
            print(f"reusing the chain dumped in {state_file}: {meta}", flush=True)
            await measure(node.url, meta["token"], meta["registry"], meta["start"], node.block_number())
        return
    with AnvilNode(1, extra_args=anvil_args) as node:
        w3 = connect(node.url)
        agent = (await w3.eth.accounts)[0]
        start = await w3.eth.block_number + 1
        stack = await deploy_rwa_stack(w3, agent)
        t0 = time.perf_counter()
        if shape == "busy":
            recipients = load_recipients(500)
            await prepare_security_token_load(w3, stack, agent, recipients, supply=10**30)
            load = await send_batch_transfers(
                node.url, stack.token.address, agent, recipients, txs=max(1, n_events // 500)
            )
            print(
                f"generated {load.events} Transfers in {load.txs} txs, blocks {load.first_block}-{load.last_block} "
                f"({time.perf_counter() - t0:.1f}s)",
                flush=True,
            )
        else:
            from bench.realistic_chain import Shape, generate

            counts = await generate(node.url, stack.token.address, stack.registry.address, agent, Shape(n_events))
            print(f"generated {counts} events ({time.perf_counter() - t0:.1f}s)", flush=True)
        head = node.block_number()
        await w3.provider.disconnect()  # else aiohttp warns "Unclosed client session" at exit
        if reuse:
            cache.mkdir(parents=True, exist_ok=True)
            state_file.write_bytes(gzip.decompress(bytes.fromhex(node.rpc("anvil_dumpState")[2:])))
            meta_file.write_text(
                json.dumps({"token": stack.token.address, "registry": stack.registry.address, "start": start})
            )
        await measure(node.url, stack.token.address, stack.registry.address, start, head)


async def measure(rpc_url: str, token: str, registry: str, start: int, head: int) -> None:
    addresses = [token, registry]
    n_read, t_read, n_copy, t_copy = 1, 1.0, 1, 1.0
    if not E2E_ONLY:
        n_read, t_read = await read_baseline(rpc_url, addresses, start, head)
        n_copy, t_copy = await copy_ceiling(rpc_url, addresses, start, head)

    name, db_url = await fresh_db()
    try:
        await add_token(db_url, token, registry, start)
        from bench.indexer_vs_ponder import PgCpu

        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        pg = PgCpu(name)
        spawned = time.perf_counter()
        out = subprocess.run(
            [sys.executable, __file__, "--child", db_url, rpc_url, str(start), str(head)],
            check=True,
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        process_s = time.perf_counter() - spawned
        pg_cpu = pg.stop()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu_s = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        e2e = json.loads(out.stdout.strip().splitlines()[-1])
        conn = await asyncpg.connect(asyncpg_dsn(db_url))
        holders = await conn.fetchval("SELECT count(*) FROM holdings")
        await conn.close()
    finally:
        await drop_db(name)

    e2e_rate = e2e["events"] / e2e["seconds"]
    copy_rate = n_copy / t_copy
    if not E2E_ONLY:
        print(f"read baseline (RpcClient eth_getLogs, no writes): {n_read:>8} logs   {n_read / t_read:>10,.0f} logs/s")
        print(f"COPY ceiling (same rows, asyncpg COPY alone):     {n_copy:>8} rows   {copy_rate:>10,.0f} rows/s")
    print(
        f"end-to-end backfill (fetch+decode+write+holdings): {e2e['events']:>7} events {e2e_rate:>10,.0f} events/s "
        f"({e2e['seconds']:.2f}s, peak RSS {e2e['rss_mb']:.0f} MB, {holders} holdings; CPU in the call "
        f"{e2e['call_cpu_s']:.2f}s = {e2e['call_cpu_s'] / e2e['events'] * 1e6:.0f} us/event)"
    )
    print(
        f"end-to-end from process start (spawn to exit):     {e2e['events']:>7} events "
        f"{e2e['events'] / process_s:>10,.0f} events/s ({process_s:.2f}s, CPU {cpu_s:.2f}s = "
        f"{cpu_s / e2e['events'] * 1e6:.0f} us/event; its Postgres backends {pg_cpu:.2f}s = "
        f"{pg_cpu / e2e['events'] * 1e6:.0f} us/event; load {os.getloadavg()[0]:.1f})"
    )
    if not E2E_ONLY:
        print(
            f"end-to-end / COPY ceiling: {e2e_rate / copy_rate:.0%}   end-to-end / read baseline: "
            f"{e2e_rate / (n_read / t_read):.0%}"
        )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child_backfill(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    else:
        parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
        parser.add_argument("--events", type=int, default=50_000)
        parser.add_argument("--shape", choices=("busy", "realistic", "both"), default="both")
        parser.add_argument(
            "--reuse-chain",
            action="store_true",
            help="dump the generated chain to $BENCH_CHAIN_CACHE (default ~/.cache/rwa-bench/backfill) and load it next time",
        )
        args = parser.parse_args()
        for s in ("busy", "realistic") if args.shape == "both" else (args.shape,):
            asyncio.run(main(args.events, s, args.reuse_chain))
