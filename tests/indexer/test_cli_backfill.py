"""`rwa index backfill` / `run` end to end, as an operator runs them: progress with events, Ctrl-C then a rerun
that resumes, an idempotent third run, `verify` on the result, `run` stopped cleanly by SIGTERM while `status`
reports it; and the GraphQL resolvers over the indexed rows."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

from chains.deploy import transact
from chains.loadgen import load_recipients, send_batch_transfers
from resolvers.holdings import holder_balance, token_holdings
from resolvers.viewer import Viewer
from tests.indexer.cli_helpers import REPO, RWA, run_rwa, rwa_env
from tests.indexer.conftest import add_tokens, cursor_block, deploy, snapshot


class RangeLimitedProxy:
    """A provider that refuses eth_getLogs over more than `max_span` blocks (as hosted RPCs do) and answers them
    slowly, in front of anvil: the backfill shrinks its spans to fit, so it writes many small batches and a
    Ctrl-C reliably lands mid-way."""

    def __init__(self, upstream: str, max_span: int = 4, delay_s: float = 0.02) -> None:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                reply = proxy.refusal(body)
                data = (
                    json.dumps(reply).encode()
                    if reply is not None
                    else httpx.post(upstream, json=body, timeout=30).content
                )
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.max_span, self.delay_s = max_span, delay_s
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def refusal(self, body: object) -> dict[str, object] | None:
        if not isinstance(body, dict) or body.get("method") != "eth_getLogs":
            return None
        time.sleep(self.delay_s)
        flt = body["params"][0]
        if int(flt["toBlock"], 16) - int(flt["fromBlock"], 16) + 1 > self.max_span:
            error = {"code": -32602, "message": "block range is too large"}
            return {"jsonrpc": "2.0", "id": body["id"], "error": error}
        return None

    def __enter__(self) -> RangeLimitedProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


PROGRESS = re.compile(r"([\d,]+)/([\d,]+) blocks, ([\d,]+) events")
RECIPIENTS = 25
TXS = 120  # one block each: many small write batches, so a Ctrl-C lands mid-way


def _numbers(line: str) -> tuple[int, int, int]:
    m = PROGRESS.search(line)
    assert m, line
    return tuple(int(g.replace(",", "")) for g in m.groups())  # type: ignore[return-value]


async def test_backfill_progress_interrupt_resume_verify(idx_db, node, redis_url) -> None:
    d = await deploy(node.url)
    usd = d.stack.stablecoin
    await add_tokens(idx_db, 1, d, security=False, stable=True)
    await transact(usd.functions.mint(d.agent, 10**12), d.agent)
    await send_batch_transfers(node.url, usd.address, d.agent, load_recipients(RECIPIENTS), TXS, rpc_batch=1)
    node.mine(10)  # everything below the finalized head (head - 8)
    rpc = {1: node.url}
    args = ["backfill", "--chain", "1", "--from-block", str(d.start_block), "--token", usd.address.lower()]

    with RangeLimitedProxy(node.url) as proxy:
        env = rwa_env(idx_db, redis_url, {1: proxy.url}, {"RWA_INDEXER_BATCH_EVENTS": "1"})
        proc = subprocess.Popen(
            [RWA, "index", *args], env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            first = proc.stderr.readline()  # type: ignore[union-attr]  # piped stderr: one line per update
            assert PROGRESS.search(first), first + proc.stderr.read()  # type: ignore[union-attr]
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 130, first + err
    assert "interrupted" in err and "rerun the same command to resume" in err
    done_first, total, _ = _numbers(err.strip().splitlines()[-1])
    assert 0 < done_first < total

    resumed = run_rwa(args, idx_db, redis_url, rpc, extra={"RWA_INDEXER_BATCH_EVENTS": "1000"})
    assert resumed.code == 0, resumed.output
    assert "backfill done" in resumed.stderr
    done_second, total_second, events_second = _numbers(resumed.stderr.strip().splitlines()[-1])
    assert total_second == total - done_first  # only what the first run had not fetched
    assert events_second > 0 and "events/s" in resumed.stderr and "blocks/s" in resumed.stderr
    transfers = TXS * RECIPIENTS + 1  # + the mint
    before = await snapshot(idx_db)
    assert len([r for r in before["token_transfers"] if r[6] == usd.address]) == transfers

    again = run_rwa(args, idx_db, redis_url, rpc)
    assert again.code == 0, again.output
    assert "0 events" in again.stderr
    assert await snapshot(idx_db) == before  # idempotent: re-running the range changed nothing

    verified = run_rwa(["verify", "--chain", "1", "--token", usd.address], idx_db, redis_url, rpc)
    assert verified.code == 0, verified.output
    assert f"OK: {RECIPIENTS + 1} holder(s)" in verified.stdout

    # the API's read path over the same rows
    from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

    engine = create_async_engine(idx_db)
    try:
        async with AsyncSession(engine) as session:
            staff = Viewer(user_id=uuid.uuid4(), roles=frozenset({"ADMIN"}))
            page = await token_holdings(session, staff, chain_id=1, token=usd.address, first=3)
            assert page.rows[0].holder == d.agent and page.has_next_page
            assert page.rows[0].balance == await usd.functions.balanceOf(d.agent).call()
            someone = load_recipients(RECIPIENTS)[0]
            now = await holder_balance(session, staff, chain_id=1, token=usd.address, holder=someone)
            assert now.balance == TXS == await usd.functions.balanceOf(someone).call()
            before_load = await holder_balance(
                session, staff, chain_id=1, token=usd.address, holder=someone, at_block=d.start_block + 5
            )
            assert before_load.balance == await usd.functions.balanceOf(someone).call(
                block_identifier=d.start_block + 5
            )
    finally:
        await engine.dispose()


async def test_run_follows_until_sigterm_and_status_reports_it(idx_db, node, redis_url) -> None:
    d = await deploy(node.url)
    await add_tokens(idx_db, 1, d, security=False, stable=True)
    await transact(d.stack.stablecoin.functions.mint(d.agent, 10**9), d.agent)
    rpc = {1: node.url}
    env = rwa_env(idx_db, redis_url, rpc, {"RWA_INDEXER_POLL_S": "0.1", "RWA_FINALITY_DEPTH_1": "8"})
    import httpx

    from tests.fixtures.app import free_port

    metrics_port = free_port()
    proc = subprocess.Popen(
        [RWA, "index", "run", "--chain", "ethereum", "--metrics-port", str(metrics_port)],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        head = node.block_number()
        deadline = time.monotonic() + 60
        while (await cursor_block(idx_db, 1) or -1) < head:
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "indexer did not reach the head"
            time.sleep(0.1)
        status = run_rwa(["status", "--json", "--chain", "1"], idx_db, redis_url, rpc)
        # the indexer process serves Prometheus metrics: per-chain blocks and lag, RPC calls by method and URL
        metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
        indexed = [line for line in metrics.splitlines() if line.startswith("rwa_indexer_indexed_block{")]
        assert indexed and float(indexed[0].rsplit(" ", 1)[1]) >= head, indexed
        assert 'rwa_rpc_requests_total{chain_id="1"' in metrics
        proc.send_signal(signal.SIGTERM)  # what a process manager sends; the backfill test covers Ctrl-C
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert f"ethereum (chain 1): node at http://127.0.0.1:{node.port}, head" in err
    assert "indexer stopped" in err and "Traceback" not in err
    assert status.code == 0, status.output
    (row,) = status.json()["chains"]
    assert row["reachable"] and row["indexed"] >= head and row["lag"] == row["head"] - row["indexed"]
    assert row["recent_events"] >= 1  # the mint, at least

    # the API's indexerStatus reads the heads the indexer wrote into its cursor
    from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

    from resolvers.indexer import indexer_status

    engine = create_async_engine(idx_db)
    try:
        async with AsyncSession(engine) as session:
            (api_row,) = await indexer_status(session, 1)
    finally:
        await engine.dispose()
    assert api_row.indexed_block is not None and api_row.indexed_block >= head
    assert api_row.head_block is not None and api_row.head_block >= api_row.indexed_block
    assert api_row.finalized_block is not None and api_row.lag == api_row.head_block - api_row.indexed_block
