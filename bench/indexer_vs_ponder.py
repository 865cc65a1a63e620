"""Benchmark: our indexer (`rwa index backfill`) vs Ponder 0.16.10 on the shared peer's chain, same run.

The chain (built once, then reused): the peer's ``chain/`` folder (``../shared/peers/ponder``, copied to
``--work``, default ~/.cache/rwa-bench/ponder, where ``npm ci`` runs): BenchToken (a plain ERC-20 with
``batchTransfer``) deployed on anvil (chain id 1) by ``workload.mjs``, 10 senders (the dev accounts) paying 5,000
holders in batches of 500: ``--events`` Transfer events (default 200,000; the 10 mints included). Then 70 empty
blocks so that every event is final for both sides, and ``anvil_dumpState`` to ``state-<events>.json``.

Each run, for each side (the order alternates between runs), cold:
- a fresh anvil started with ``--load-state`` (the same blocks, nothing cached in the node's memory by the other
  side) and a fresh database (ours migrated to head with the token's row inserted, untimed; Ponder's empty: it
  creates its own tables inside its timed start);
- the clock starts before the process is spawned (interpreter start, imports, connections included) and stops
  when the process has exited (ours: `rwa index backfill --chain 1 --from-block 1 --to-block <F>`) or when
  Ponder's ``GET /ready`` first answers 200 (`ponder start`: historical indexing up to its finalized block done);
  ``F`` = head - 65 = Ponder's finalized block (chain id 1: 65 blocks), so both cover the same blocks;
- peak RSS: the largest of the sampled (every 50 ms) sum of VmRSS over the process tree and the root's VmHWM;
- verified complete after the clock stops: the transfer rows (= the chain's logs), the balance rows, and every
  holder's balance equal to ``balanceOf`` on the chain (5,010 eth_calls in one JSON-RPC batch).

Fairness:
- Ponder does more RPC work: it fetches each block with a log with its transactions (and caches the RPC results in
  its database); we fetch logs and block headers only. Ponder runs a JS handler per event (an insert and two
  upserts through its in-memory cache, flushed in bulk); we write set-based (COPY, balances aggregated per batch).
- We do more: raw events (`chain_events`), blocks, fetched intervals, the supply column, all in Postgres; Ponder
  also writes its RPC cache and checkpoints. Both end with every transfer and every balance.
- Ponder creates its schema at start (timed); ours is migrated before the clock (as in production, by
  `rwa-migrate`). Ours also connects to Redis (the local one) at start.
- Ponder builds its project (esbuild/vite) at start; its ``.ponder`` build dir is deleted before each run. Ponder
  runs on node 22 if ``--node`` points at it (the peer notes node 22 is ~10-20% faster than node 20), else `node`.
- No warm-up run for either; Postgres' shared buffers and the OS page cache are shared and warm for both.
- CPU is each side's own process tree (user + system), and separately the CPU of the Postgres backends serving
  its database (sampled every 100 ms by process title; the parallel workers of an index build are not counted).
- Both build some indexes after the history: Ponder all of its own after its historical sync; ours, into empty
  event tables, every secondary index of ``token_transfers`` and ``chain_events`` but ``ix_chain_events_subject``
  (indexer/deferred_indexes.py, since 2026-12-06 22:50; before, ``ix_token_transfers_from``/``_to`` only), rebuilt
  before the process exits (inside our timed window).
- Ours runs with its production defaults (10,000-event batches since 2026-12-07, before 5,000; up to 8 of them per transaction, a batch joining
  the open one if it is fetched within 2 s: indexer/pipeline.py);
  Ponder with the peer's config. Ours from process start includes the CLI's migration check (since 13:50: one asyncpg query against the
  scripts' revision ids; alembic is imported only when the database is behind).

Why many holders cost (issue 16: "the holder distribution halves the rate"), measured with ``--holders``, same
200,000 events, same 10 senders, batches of 500, 2026-12-06 10:32, load 4.3-4.9, alternating, ours only:
- 510 holders: 11.46 / 11.25 s (17.4k / 17.8k events/s), CPU of our process 5.73 / 5.77 s;
- 5,010 holders: 17.24 / 17.52 s (11.6k / 11.4k events/s), CPU 6.68 / 6.90 s.
So 10x the holders costs 1.5x the wall time but only +1.0 s (+18%) of our CPU: the rest is Postgres. pyinstrument
of the backfill call (``--profile``, one run each, load 7-8; wall seconds awaited per statement): the holdings
upsert (``_ADD_BALANCES``) 0.41 -> 2.01 s, the COPY of chain_events + token_transfers 6.29 -> 7.55 s, decode
3.09 -> 5.16 s (of it 1.27 s in ``to_checksum_address``: the first sight of each address, 56 us each unloaded).
Cause: each 5,000-event write batch upserts one holdings row per distinct address it touches: 5,010 rows per batch
(200,000 row versions over the run) against 510 (20,000). Every such update is non-HOT (``balance`` is in
``ix_holdings_token_balance``), so each writes a new heap tuple plus entries in both holdings indexes (and, not
measured, the next batch's ON CONFLICT probe may walk the key's dead versions until vacuum); the COPY spreads index inserts of
``ix_token_transfers_to`` over 10x more keys. Larger write batches amortize the upserts (one row per holder per
batch): ``RWA_INDEXER_BATCH_EVENTS=20000`` ran 26.4 / 12.4 s against 30.7 / 19.0 s at 5,000 (same run, load 7-9)
but peaks at 231-233 MB RSS instead of 159-160 MB (the 256 MB budget of issue 16), so the default stays.
What was done about it (2026-12-06 13:00): while the writer is behind, up to 8 write batches share one transaction
and their balance deltas are summed in memory and applied once before its commit (indexer/pipeline.py), so a
holder's row is updated once per 40,000 events instead of once per 5,000, at the memory of one batch. Same chain,
the backfill call in-process (one run each, load 5-6.5): CPU of the indexer + of its Postgres backend 7.2 + 9.0 s
with one batch per transaction, 6.1 + 6.2 s with 4, 5.0 + 5.0 s with 8; peak RSS unchanged (161-164 MB). Dropping
``ix_holdings_token_balance`` so that the upserts become HOT (fillfactor 70) was measured apart (40 upserts of the
same 5,010 rows): 47-80% HOT, WAL 102 -> 43-69 MB; not done: that index serves the holders of a token by balance
(``holdings(token)``, keyset pages), and the shared transactions already cut those updates eightfold.
After it, ``--holders 500`` vs 5,000 (13:16, load 5.3-6.3, ours only, two runs each): 23.53 / 26.29 s vs
21.62 / 19.10 s, CPU 7.8 / 8.4 vs 7.8 / 7.3 s: the holder count no longer shows.
The project's own bench (37-47k events/s) times inside the backfill call on a quieter machine; from process start
the CLI adds 1.4-2.5 s (``rwa index backfill --help`` alone, under load) before the first block; since 13:50 about
0.7 s (process start to the backfill call: imports 0.63 s under ``-X importtime``, no alembic, sqlalchemy, models,
redis or opentelemetry). Tried and
dropped (14:00, load 1.5-3.2): the cyclic GC's young threshold at 50,000 cut the process's CPU by ~11% (5 pairs,
5.43 -> 4.81 s) but raised its peak RSS from 121-125 to 216-222 MB (small cyclic garbage of httpx requests, freed
late, pins allocator arenas); at 10,000 (RSS 123-130 MB) the CPU difference was lost in the noise (5 pairs, means
6.36 vs 6.47 s).

Where the time went (16:00, in-process trace of the backfill call, load 4-7): the writer was busy ~95% of the call
(the fetch side was never the wait after the first batch); of our process's ~5.5 s CPU, the cyclic GC took 1.7 s
(1.1 s in full collections traversing the start-up heap), asyncpg's encoding ~1.2 s (token_transfers 3.2 us/row,
2.6 of it the numeric and timestamptz columns; chain_events 2.2 us/row, the topics array's ABC checks), JSON
0.6 s, decode 0.65 s; the writer's Postgres backend used 4.5-5.4 s, anvil 0.8 s. COPYing the same decoded rows
alone (8 batches per transaction) into variants of the tables: all 9 indexes 4.5-5.0 s backend CPU, primary keys
only 1.95 s, none 1.29 s; the holder-keyed ``ix_token_transfers_from``/``_to`` cost the most (random leaf inserts;
the 9 indexes, 136 MB, outgrow the 128 MB shared_buffers, so the backend evicts dirty pages itself: 400 MB of
backend writes per run). ``SET LOCAL synchronous_commit = off``: no difference (5 commits per run). A self-built text COPY of chain_events
(no asyncpg encoding): our side 2.2-2.4 -> 1.8-2.1 us/row, the backend's 3.0-4.0 -> 4.7-5.1 us/row: not done. Done since:
``gc.freeze()`` of the start-up heap (process CPU 5.80 / 6.35 -> 5.14 / 5.01 s) and, into an empty
``token_transfers``, ``ix_token_transfers_from``/``_to`` built after the rows (indexer/deferred_indexes.py:
backend CPU 4.5-5.2 -> 2.8-3.0 s + 0.6 s to build them). Variance: the server ran 0-9 checkpoints during one run
(other sessions' DROP DATABASE, max_wal_size); each adds full-page images and competes for the disk; now printed.

    .venv/bin/python bench/indexer_vs_ponder.py                   # 200,000 events, 2 runs
    .venv/bin/python bench/indexer_vs_ponder.py --events 20000 --runs 1   # quick check
    .venv/bin/python bench/indexer_vs_ponder.py --only ours       # skip Ponder (profiling)
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import asyncpg
import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from chains.anvil import AnvilNode, free_port  # noqa: E402
from indexer.lock import asyncpg_dsn  # noqa: E402

ADMIN_URL = os.environ.get("BENCH_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
PEER = REPO.parent / "shared" / "peers" / "ponder"
TOKEN = "0x5FbDB2315678afecb367f032d93F642f64180aa3"  # ponder.config.ts: the first deployment on a fresh anvil
PONDER_FINALITY = 65  # Ponder's fixed finality for chain id 1
NHOLDERS = 5000


def sh(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
    subprocess.run(cmd, cwd=cwd, check=True, env={**os.environ, **(env or {})})


def setup(work: Path) -> None:
    """Copy the peer's folders to ``work`` (writable) and install their npm packages once."""
    if not (work / "chain").exists():
        shutil.copytree(PEER, work, dirs_exist_ok=True)
        sh(["chmod", "-R", "u+w", str(work)], work)
    if not (work / "chain" / "node_modules").exists():
        sh(["npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts"], work / "chain")
    if not (work / "chain" / "BenchToken.json").exists():
        sh(["node", "compile.js"], work / "chain")
    if not (work / "indexer" / "node_modules").exists():
        sh(["npm", "ci", "--no-audit", "--no-fund"], work / "indexer")
    wl = work / "chain" / "workload.mjs"
    text = (PEER / "chain" / "workload.mjs").read_text()
    line = "const TOTAL = 200_000, BATCH = 500, NHOLDERS = 5000;"
    if line in text:  # the event and holder counts as parameters
        wl.write_text(
            text.replace(
                line,
                "const TOTAL = Number(process.env.EVENTS ?? 200000), BATCH = 500, "
                "NHOLDERS = Number(process.env.HOLDERS ?? 5000);",
            )
        )


def build_chain(work: Path, events: int, n_holders: int) -> tuple[Path, dict]:
    """The chain with ``events`` Transfers to ``n_holders`` holders, dumped once: (state file, workload.json)."""
    tag = f"{events}" if n_holders == NHOLDERS else f"{events}-{n_holders}"
    state = work / f"state-{tag}.json"
    meta_file = work / f"workload-{tag}.json"
    if state.exists() and meta_file.exists():
        return state, json.loads(meta_file.read_text())
    t0 = time.perf_counter()
    with AnvilNode(1, slots_in_an_epoch=32) as node:
        sh(
            ["node", "workload.mjs"],
            work / "chain",
            {"RPC": node.url, "EVENTS": str(events), "HOLDERS": str(n_holders)},
        )
        node.mine(PONDER_FINALITY + 5)
        dumped = node.rpc("anvil_dumpState")
        state.write_bytes(gzip.decompress(bytes.fromhex(dumped[2:])))
    shutil.copy(work / "chain" / "workload.json", meta_file)
    meta = json.loads(meta_file.read_text())
    if meta["token"].lower() != TOKEN.lower():
        raise SystemExit(f"token deployed at {meta['token']}, ponder.config.ts expects {TOKEN}")
    print(
        f"built the chain: {meta['events']} events, {state.stat().st_size >> 20} MB state ({time.perf_counter() - t0:.0f}s)"
    )
    return state, meta


def holders(n: int) -> list[str]:
    return ["0x" + hashlib.sha256(f"holder-{i}".encode()).hexdigest()[:40] for i in range(n)]


def chain_balances(url: str, accounts: list[str], n_holders: int) -> dict[str, int]:
    addrs = [a.lower() for a in accounts] + holders(n_holders)
    calls = [
        {
            "jsonrpc": "2.0",
            "id": i,
            "method": "eth_call",
            "params": [{"to": TOKEN, "data": "0x70a08231" + a[2:].rjust(64, "0")}, "latest"],
        }
        for i, a in enumerate(addrs)
    ]
    out = httpx.post(url, json=calls, timeout=120).json()
    by_id = {r["id"]: int(r["result"], 16) for r in out}
    return {a: by_id[i] for i, a in enumerate(addrs)}


class PeakRss:
    """Samples the process tree of ``pid`` every 50 ms: max of sum(VmRSS) over the tree and the root's VmHWM."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak_kb, self._stop = pid, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @staticmethod
    def _field(pid: int, name: str) -> int:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith(name):
                    return int(line.split()[1])
        except (OSError, ValueError):
            pass
        return 0

    def _tree(self, pid: int) -> list[int]:
        out, todo = [], [pid]
        while todo:
            p = todo.pop()
            out.append(p)
            try:
                for task in Path(f"/proc/{p}/task").iterdir():
                    todo += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                pass
        return out

    def cpu_s(self) -> float:
        """utime + stime of the live tree, all threads (Ponder's at ready)."""
        ticks = 0
        for p in self._tree(self.pid):
            try:
                fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
                ticks += int(fields[11]) + int(fields[12])
            except (OSError, ValueError, IndexError):
                pass
        return ticks / os.sysconf("SC_CLK_TCK")

    def sample(self) -> None:
        total = sum(self._field(p, "VmRSS:") for p in self._tree(self.pid))
        self.peak_kb = max(self.peak_kb, total, self._field(self.pid, "VmHWM:"))

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.sample()

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak_kb / 1024


class PgCpu:
    """CPU (user + system) of the Postgres backends serving database ``name``: every 100 ms, the processes whose
    title is ``postgres: ... <user> <name> ...``; each backend's last reading counts. (Parallel workers of an
    index build are titled by their leader's pid, not the database: not counted.)"""

    def __init__(self, name: str) -> None:
        self.name, self._stop = f" {name} ", threading.Event()
        self.ticks: dict[int, int] = {}
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def sample(self) -> None:
        for d in Path("/proc").iterdir():
            if not d.name.isdigit():
                continue
            try:
                title = (d / "cmdline").read_bytes()
                if not title.startswith(b"postgres:") or self.name.encode() not in title:
                    continue
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
                self.ticks[int(d.name)] = int(fields[11]) + int(fields[12])
            except (OSError, ValueError, IndexError):
                pass

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self.sample()

    def stop(self) -> float:
        self.sample()
        self._stop.set()
        self._thread.join()
        return sum(self.ticks.values()) / os.sysconf("SC_CLK_TCK")


async def checkpoints() -> tuple[int, int]:
    """(checkpoints, MB of buffers written by backends themselves) so far, server-wide: a checkpoint during a run
    adds full-page images to its WAL and competes for the disk (other sessions' DROP DATABASE requests one, as
    does max_wal_size); a backend that finds no clean buffer writes a dirty one itself (and first flushes WAL)."""
    admin = await asyncpg.connect(asyncpg_dsn(ADMIN_URL))
    try:
        row = await admin.fetchrow(
            "SELECT checkpoints_timed + checkpoints_req AS n, buffers_backend * current_setting('block_size')::bigint "
            "/ 1048576 AS mb FROM pg_stat_bgwriter"
        )
        return int(row["n"]), int(row["mb"])
    finally:
        await admin.close()


def since(before: tuple[int, int], after: tuple[int, int]) -> str:
    return f"{after[0] - before[0]} checkpoints, {after[1] - before[1]} MB backend writes (server-wide)"


async def fresh_db(migrate: bool) -> tuple[str, str]:
    name = f"rwa_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(asyncpg_dsn(ADMIN_URL))
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    url = ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    if migrate:
        from core.migrate import upgrade

        await upgrade(url)
    return name, url


async def drop_db(name: str) -> None:
    admin = await asyncpg.connect(asyncpg_dsn(ADMIN_URL))
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


def check(side: str, transfers: int, rows: dict[str, int], expected: dict[str, int], events: int) -> str:
    bad = [a for a, b in expected.items() if rows.get(a, 0) != b]
    extra = [a for a in rows if a not in expected and rows[a] != 0]
    ok = transfers == events and not bad and not extra
    if not ok:
        raise SystemExit(
            f"{side}: NOT complete: {transfers}/{events} transfers, {len(bad)} wrong balances, {extra[:3]}"
        )
    return f"verified: {transfers} transfers, {len(rows)} balances = balanceOf"


async def run_ours(state: Path, meta: dict, expected: dict[str, int], profile: str | None = None) -> dict:
    name, db_url = await fresh_db(migrate=True)
    try:
        conn = await asyncpg.connect(asyncpg_dsn(db_url))
        await conn.execute(
            "INSERT INTO tokens (id, chain_id, address, kind, decimals, total_supply, paused, start_block, name, "
            "symbol) VALUES ($1, 1, $2, 'SECURITY', 18, 0, false, 1, 'Bench', 'BNCH')",
            uuid.uuid4(),
            TOKEN,
        )
        await conn.close()
        with AnvilNode(1, slots_in_an_epoch=32, extra_args=("--load-state", str(state))) as node:
            to_block = node.block_number() - PONDER_FINALITY
            env = {**os.environ, "DATABASE_URL": db_url, "REDIS_URL": REDIS_URL, "RPC_URLS_1": node.url}
            cmd = [str(REPO / ".venv" / "bin" / "rwa"), "index", "backfill", "--chain", "1"]
            cmd += ["--from-block", "1", "--to-block", str(to_block)]
            if profile:  # the same backfill call under pyinstrument (bench/indexer_backfill.py's child)
                cmd = [sys.executable, str(REPO / "bench" / "indexer_backfill.py"), "--child", db_url, node.url]
                cmd += ["1", str(to_block)]
                env["BENCH_PROFILE"] = profile
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            ck = await checkpoints()
            pg = PgCpu(name)
            started = time.perf_counter()
            proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            rss = PeakRss(proc.pid)
            _, err = proc.communicate()
            wall = time.perf_counter() - started
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
            peak = rss.stop()
            pg_cpu = pg.stop()
            ck_note = since(ck, await checkpoints())
            if proc.returncode:
                raise SystemExit(f"rwa index backfill failed ({proc.returncode}): {err.decode()[-2000:]}")
            conn = await asyncpg.connect(asyncpg_dsn(db_url))
            transfers = await conn.fetchval("SELECT count(*) FROM token_transfers")
            rows = {
                r["holder"].lower(): int(r["balance"])
                for r in await conn.fetch("SELECT holder, balance FROM holdings WHERE chain_id = 1")
            }
            await conn.close()
    finally:
        await drop_db(name)
    return {
        "wall": wall,
        "rss": peak,
        "cpu": cpu,
        "pg_cpu": pg_cpu,
        "checkpoints": ck_note,
        "verified": check("ours", transfers, rows, expected, meta["events"]),
    }


async def run_ponder(work: Path, node_bin: str, state: Path, meta: dict, expected: dict[str, int]) -> dict:
    name, db_url = await fresh_db(migrate=False)
    idx = work / "indexer"
    shutil.rmtree(idx / ".ponder", ignore_errors=True)
    try:
        with AnvilNode(1, slots_in_an_epoch=32, extra_args=("--load-state", str(state))) as node:
            port = free_port()
            dsn = asyncpg_dsn(db_url)
            env = {**os.environ, "DATABASE_URL": dsn, "PONDER_RPC_URL_1": node.url, "PONDER_TELEMETRY_DISABLED": "1"}
            cmd = [node_bin, str(idx / "node_modules" / "ponder" / "dist" / "esm" / "bin" / "ponder.js")]
            cmd += ["start", "--schema", "bench", "--port", str(port), "--log-level", "warn"]
            log = open(work / "ponder-last.log", "wb")  # noqa: SIM115
            ck = await checkpoints()
            pg = PgCpu(name)
            started = time.perf_counter()
            proc = subprocess.Popen(cmd, cwd=idx, env=env, stdout=log, stderr=subprocess.STDOUT)
            rss = PeakRss(proc.pid)
            try:
                with httpx.Client(timeout=2) as http:
                    while True:
                        if proc.poll() is not None:
                            raise SystemExit(f"ponder exited {proc.returncode}: see {work / 'ponder-last.log'}")
                        try:
                            if http.get(f"http://127.0.0.1:{port}/ready").status_code == 200:
                                break
                        except httpx.HTTPError:
                            pass
                        time.sleep(0.05)
                wall = time.perf_counter() - started
                cpu = rss.cpu_s()
                pg_cpu = pg.stop()
                rss.sample()
                peak = rss.stop()
            finally:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                log.close()
            ck_note = since(ck, await checkpoints())
            conn = await asyncpg.connect(dsn)
            transfers = await conn.fetchval("SELECT count(*) FROM bench.transfer")
            rows = {r["address"].lower(): int(r["balance"]) for r in await conn.fetch("SELECT * FROM bench.account")}
            await conn.close()
    finally:
        await drop_db(name)
    return {
        "wall": wall,
        "rss": peak,
        "cpu": cpu,
        "pg_cpu": pg_cpu,
        "checkpoints": ck_note,
        "verified": check("ponder", transfers, rows, expected, meta["events"]),
    }


async def main(args: argparse.Namespace) -> None:
    work = Path(args.work).expanduser()
    setup(work)
    state, meta = build_chain(work, args.events, args.holders)
    node_bin = args.node or shutil.which("node") or "node"
    node_version = subprocess.run([node_bin, "--version"], capture_output=True, text=True).stdout.strip()
    with AnvilNode(1, slots_in_an_epoch=32, extra_args=("--load-state", str(state))) as node:
        expected = chain_balances(node.url, meta["senders"], args.holders)
    expected = {a: b for a, b in expected.items() if b}
    n = meta["events"]
    print(f"chain: {n} Transfer events, {len(expected)} holders with a balance; Ponder on node {node_version}")
    sides = ["ours", "ponder"] if args.only is None else [args.only]
    results: dict[str, list[dict]] = {s: [] for s in sides}
    for run in range(args.runs):
        order = sides if run % 2 == 0 else sides[::-1]
        load = os.getloadavg()[0]
        for side in order:
            if side == "ours":
                r = await run_ours(state, meta, expected, args.profile)
            else:
                r = await run_ponder(work, node_bin, state, meta, expected)
            results[side].append(r)
            print(
                f"run {run + 1} {side:>6}: {r['wall']:6.2f} s  {n / r['wall']:>8,.0f} events/s  "
                f"CPU {r['cpu']:6.2f} s + its Postgres {r['pg_cpu']:5.2f} s  peak RSS {r['rss']:5.0f} MB  "
                f"({r['verified']}; load {load:.1f}, {r['checkpoints']})",
                flush=True,
            )
        if len(sides) == 2:
            o, p = results["ours"][-1], results["ponder"][-1]
            print(
                f"run {run + 1} ratio: ours {p['wall'] / o['wall']:.2f}x faster than Ponder (wall), "
                f"{p['cpu'] / o['cpu']:.2f}x less CPU, {(p['cpu'] + p['pg_cpu']) / (o['cpu'] + o['pg_cpu']):.2f}x with "
                "each side's Postgres backends",
                flush=True,
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000, help="Transfer events on the chain (default 200,000)")
    parser.add_argument("--holders", type=int, default=NHOLDERS, help="distinct recipients (default 5,000)")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--only", choices=("ours", "ponder"), default=None)
    parser.add_argument("--work", default="~/.cache/rwa-bench/ponder", help="writable copy of the peer's folders")
    parser.add_argument("--profile", help="ours: write a pyinstrument report of the backfill call to this file")
    parser.add_argument("--node", default=os.environ.get("BENCH_NODE"), help="node binary for Ponder (default: node)")
    asyncio.run(main(parser.parse_args()))
