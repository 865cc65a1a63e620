"""`rwa index`: run, backfill, status and verify the multi-chain indexer.

Exit codes (every command):
  0    success (run: stopped by Ctrl-C/SIGTERM after a clean shutdown)
  1    failure: verify found mismatches, the indexer stopped on an error, status: a chain stopped or failing
  2    bad input: unknown chain, bad address or checksum, from-block > to-block, block out of range,
       no RPC URL configured for the chain (RPC_URLS_<chain_id>)
  3    unreachable: the RPC node(s) of a chain, or the database
  130  backfill interrupted (Ctrl-C/SIGTERM); what was written is kept, a rerun resumes

Errors are one line on stderr, never a traceback. RPC endpoints are shown as scheme://host:port only:
provider URLs carry API keys in their paths.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from chains.errors import RpcError, UnknownChain
from chains.inputs import checksum_address, parse_chain
from chains.registry import all_chains, rpc_urls_for
from chains.rpc import RpcClient
from chains.rpc_urls import url_label
from chains.spec import ChainSpec
from cli.indexer_progress import BackfillProgress
from cli.runtime import err, runtime
from core.settings import Settings

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_UNREACHABLE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help=__doc__.split("\n\n", 1)[0]
    + "\n\n"
    + (
        "Exit codes: 0 ok; 1 mismatch or indexer failure; 2 bad input (unknown chain, bad address, from > to, "
        "no RPC_URLS_<id>); 3 RPC node or database unreachable; 130 backfill interrupted (rerun resumes)."
    ),
)

T = TypeVar("T")


@app.callback()
def _dev_chains() -> None:
    """Next to a running `rwa dev` (same data dir), its local chains count as configured (cli/dev_chains.py)."""
    from cli.dev_chains import adopt
    from cli.runtime import load_settings

    adopt(load_settings().data_path())


def fail(message: str, code: int) -> typer.Exit:
    """One line on stderr (never wrapped, whatever the width), then exit with `code`."""
    err.print(f"[bold red]error:[/] {message}", soft_wrap=True, highlight=False)
    return typer.Exit(code)


def _out() -> Console:
    console = Console()
    # Piped output (CI logs, tests): wide enough that 42-character addresses are never cut.
    return console if console.is_terminal else Console(width=200)


# --- input checks --------------------------------------------------------------------------------


def _chain(value: str) -> ChainSpec:
    try:
        return parse_chain(value)
    except UnknownChain as exc:
        raise fail(f"unknown chain {value!r}; known chains: {', '.join(exc.known)}", EXIT_BAD_INPUT)


def _address(value: str, what: str = "token") -> str:
    try:
        return checksum_address(value)
    except ValueError as exc:
        raise fail(f"{what}: {exc}", EXIT_BAD_INPUT)


def _urls(spec: ChainSpec) -> list[str]:
    urls = rpc_urls_for(spec.chain_id)
    if not urls:
        raise fail(
            f"no RPC URL for {spec.short_name} (chain {spec.chain_id}): set RPC_URLS_{spec.chain_id}", EXIT_BAD_INPUT
        )
    return urls


def _where(urls: Sequence[str]) -> str:
    return ", ".join(url_label(u) for u in urls)


HEAD_CHECK_S = 30.0  # how long start-up keeps asking providers that answer, but badly


async def _head(spec: ChainSpec, urls: Sequence[str]) -> int:
    """Check that the node answers for the right chain; return its head. Raises typer.Exit(3).

    Nobody listening on any URL (connection refused, DNS) exits at once; providers that answer with
    transient faults (garbage, 5xx, 401/403, server errors) are asked again with backoff for up to
    HEAD_CHECK_S: a few bad replies from one provider must not stop `run`/`backfill` at start-up."""
    from chains.errors import AllEndpointsFailed, RpcUnavailable

    deadline = time.monotonic() + HEAD_CHECK_S
    async with RpcClient(urls, chain_id=spec.chain_id, timeout=5, max_retries=3, backoff_base=0.2) as rpc:
        while True:
            try:
                await rpc.verify_chain_id()
                return await rpc.block_number()
            except AllEndpointsFailed as exc:
                nobody = all(isinstance(e, RpcUnavailable) for e in exc.errors.values())
                if nobody or time.monotonic() >= deadline:
                    raise _rpc_fail(spec, urls, exc)
                await asyncio.sleep(1.0)
            except RpcError as exc:
                raise _rpc_fail(spec, urls, exc)


def _rpc_fail(spec: ChainSpec, urls: Sequence[str], exc: RpcError) -> typer.Exit:
    from chains.errors import AllEndpointsFailed, ChainIdMismatch

    if isinstance(exc, ChainIdMismatch):
        return fail(
            f"{spec.short_name} (chain {spec.chain_id}): the node at {_where(urls)} serves chain {exc.got}",
            EXIT_BAD_INPUT,
        )
    reason = type(exc.last_error).__name__ if isinstance(exc, AllEndpointsFailed) and exc.last_error else exc.kind
    return fail(
        f"{spec.short_name} (chain {spec.chain_id}): RPC unreachable at {_where(urls)} ({reason})", EXIT_UNREACHABLE
    )


# --- running async work with a clean Ctrl-C ------------------------------------------------------


async def _until_signalled(work: Callable[[asyncio.Event], Awaitable[T]]) -> tuple[T, bool]:
    """Run `work(stop)`; SIGINT/SIGTERM set `stop` (a second one cancels). Returns (result, interrupted)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    task = asyncio.ensure_future(work(stop))

    def on_signal(signum: int) -> None:
        if stop.is_set():
            err.print("[yellow]second signal: cancelling now[/]")
            task.cancel()
            return
        err.print(f"[yellow]{signal.Signals(signum).name}: stopping after the current batch...[/]")
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        return await task, stop.is_set()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def _engine(settings: Settings):
    from core.db import create_engine

    return create_engine(settings.database_url or "", pool_size=2)


def _pipeline() -> Any:
    try:
        from indexer import service
    except ImportError as exc:  # the pipeline module is missing from this build
        raise fail(f"indexer pipeline unavailable: {exc}", EXIT_FAILED)
    return service


# --- run -----------------------------------------------------------------------------------------


@app.command()
def run(
    chain: str | None = typer.Option(
        None, "--chain", "-c", help="1/137/56 or ethereum/polygon/bsc; default: every chain with RPC_URLS_<id> set."
    ),
    metrics_port: int = typer.Option(
        9101,
        "--metrics-port",
        envvar="RWA_INDEXER_METRICS_PORT",
        min=0,
        max=65535,
        help="Serve Prometheus /metrics on this port (0: off).",
    ),
    metrics_host: str | None = typer.Option(
        None,
        "--metrics-host",
        envvar="RWA_INDEXER_METRICS_HOST",
        help="Interface of the ops port (default: RWA_OPS_HOST).",
    ),
    ready_max_lag: int = typer.Option(
        100,
        "--ready-max-lag",
        envvar="RWA_INDEXER_READY_MAX_LAG",
        min=0,
        help="/readyz fails while a chain this process writes lags more blocks.",
    ),
) -> None:
    """Index all configured chains (or one) and follow their heads until Ctrl-C/SIGTERM. The ops port
    (--metrics-port) serves Prometheus /metrics (head/indexed/finalized block and lag per chain, events written,
    reorgs by depth, RPC requests/errors/latency by method and URL), /healthz (the process's loop turns) and
    /readyz (per chain: writer within --ready-max-lag blocks of the head, or standby; a stopped chain fails it).

    Exit codes:
    0 stopped cleanly by Ctrl-C/SIGTERM
    1 the indexer stopped on an error
    2 unknown chain, or no RPC_URLS_<id> set
    3 RPC node or database unreachable
    """
    specs = [_chain(chain)] if chain else [s for s in all_chains() if rpc_urls_for(s.chain_id)]
    if not specs:
        raise fail("no chain configured: set RPC_URLS_1, RPC_URLS_137 and/or RPC_URLS_56", EXIT_BAD_INPUT)
    urls = {s.chain_id: _urls(s) for s in specs}
    with runtime() as settings:
        from core.ops_server import Heartbeat, start_ops_server
        from indexer.ops import readiness

        heartbeat = Heartbeat()
        if metrics_port:  # metrics are not worth refusing to index: start_ops_server says why not and goes on
            host = metrics_host or settings.ops_host
            ops = start_ops_server(
                host,
                metrics_port,
                role="indexer",
                liveness=heartbeat.check,
                readiness=readiness([s.chain_id for s in specs], heartbeat, ready_max_lag),
            )
            if ops is not None:
                err.print(f"ops port http://{ops.address} (/metrics /healthz /readyz)", highlight=False)

        async def main() -> bool:
            beating = asyncio.create_task(heartbeat.run())
            for spec in specs:
                head = await _head(spec, urls[spec.chain_id])
                err.print(
                    f"{spec.short_name} (chain {spec.chain_id}): node at {_where(urls[spec.chain_id])}, head {head}",
                    highlight=False,
                )
            service = _pipeline()
            ids = [s.chain_id for s in specs]
            try:
                _, interrupted = await _until_signalled(lambda stop: service.run_indexer(settings, ids, stop=stop))
            finally:
                beating.cancel()
            return interrupted

        _guarded(lambda: asyncio.run(main()), specs, urls)
        err.print("[green]indexer stopped[/]")


def _guarded(call: Callable[[], T], specs: Sequence[ChainSpec], urls: dict[int, list[str]]) -> T:
    """Turn failures escaping the pipeline into one-line messages and exit codes."""
    try:
        return call()
    except typer.Exit:
        raise
    except RpcError as exc:  # RpcError texts carry redacted endpoint labels only
        if len(specs) == 1:
            raise _rpc_fail(specs[0], urls.get(specs[0].chain_id, []), exc)
        raise fail(f"RPC failure: {exc}", EXIT_UNREACHABLE)
    except (asyncio.CancelledError, KeyboardInterrupt):
        raise fail("interrupted", EXIT_INTERRUPTED)
    except OSError as exc:
        raise fail(f"database or network unreachable: {type(exc).__name__}: {exc}", EXIT_UNREACHABLE)
    except Exception as exc:
        code = _pipeline_error_code(exc)
        if code is not None:
            raise fail(str(exc), code)
        # anything else: say what, not where (the traceback is for the logs, not the operator's screen)
        raise fail(f"indexer stopped: {type(exc).__name__}: {exc}", EXIT_FAILED)


def _pipeline_error_code(exc: Exception) -> int | None:
    """The pipeline's own errors: bad input (unknown token, no RPC URL, a range above the finalized head) is 2;
    another writer holding the chain's lock, or a reorg deeper than finality, is 1."""
    try:
        from indexer.errors import IndexerBusy, NoRpcUrls, ReorgTooDeep, UnknownToken
    except ImportError:  # pragma: no cover - pipeline missing
        return None
    if isinstance(exc, (UnknownToken, NoRpcUrls)):
        return EXIT_BAD_INPUT
    if isinstance(exc, (IndexerBusy, ReorgTooDeep)):
        return EXIT_FAILED
    if isinstance(exc, ValueError) and str(exc).startswith("bad block range"):
        return EXIT_BAD_INPUT
    return None


# --- backfill ------------------------------------------------------------------------------------


@app.command()
def backfill(
    chain: str = typer.Option(..., "--chain", "-c", help="1/137/56 or ethereum/polygon/bsc."),
    from_block: int = typer.Option(..., "--from-block", min=0, help="First block (inclusive)."),
    to_block: int | None = typer.Option(
        None, "--to-block", min=0, help="Last block (inclusive); default: the finalized head."
    ),
    token: str | None = typer.Option(
        None,
        "--token",
        help="Only this contract (checksummed or lowercase 0x address); default: every watched contract.",
    ),
    no_wait: bool = typer.Option(
        False,
        "--no-wait",
        help="When a running `rwa index run` holds the "
        "chain: file the request and return at once (progress in `rwa index "
        "status` and indexerStatus).",
    ),
) -> None:
    """Index a block range (idempotent: rerunning a range changes nothing).

    Ctrl-C stops after the current batch; a rerun resumes where it stopped.

    Next to a running `rwa index run` the range is handed to it as a backfill request: it executes the
    request between follow steps while this command shows its progress (Ctrl-C cancels the request).

    Exit codes:
    0 done
    1 the indexer stopped on an error
    2 bad input: unknown chain, bad address, from-block > to-block, block above the head, no RPC_URLS_<id>
    3 RPC node or database unreachable
    130 interrupted (rerun to resume)
    """
    spec = _chain(chain)
    address = _address(token) if token else None
    if to_block is not None and from_block > to_block:
        raise fail(f"--from-block {from_block} is above --to-block {to_block}", EXIT_BAD_INPUT)
    urls = {spec.chain_id: _urls(spec)}
    with runtime(quiet_logs=True) as settings:
        view = BackfillProgress(
            f"{spec.short_name} {from_block}..{to_block if to_block is not None else 'finalized'}", err
        )

        async def main() -> tuple[Any, bool]:
            head = await _head(spec, urls[spec.chain_id])
            for name, value in (("--from-block", from_block), ("--to-block", to_block)):
                if value is not None and value > head:
                    raise fail(f"{name} {value} is above the head {head} of {spec.short_name}", EXIT_BAD_INPUT)
            service = _pipeline()
            from indexer.errors import IndexerBusy

            try:
                with view.progress:
                    return await _until_signalled(
                        lambda stop: service.backfill(
                            settings, spec.chain_id, from_block, to_block, token=address, progress=view, stop=stop
                        )
                    )
            except IndexerBusy:  # a running indexer holds the chain: hand it the range
                pass
            err.print(
                f"{spec.short_name}: a running indexer holds the chain; it will execute this backfill", highlight=False
            )
            waiting = BackfillProgress(view.progress.tasks[0].description, err)
            with waiting.progress:
                return await _until_signalled(
                    lambda stop: service.request_backfill(
                        settings,
                        spec.chain_id,
                        from_block,
                        to_block,
                        token=address,
                        wait=not no_wait,
                        progress=waiting,
                        stop=stop,
                    )
                )

        result, _ = _guarded(lambda: asyncio.run(main()), [spec], urls)
    if hasattr(result, "state"):
        _request_outcome(result, no_wait)
        return
    summary = (
        view.line(view.last)
        if view.last is not None
        else (
            f"{result.blocks:,} blocks, {result.events:,} events in {result.elapsed_s:.1f}s (nothing left to fetch "
            f"in {result.from_block:,}..{result.to_block:,})"
        )
    )
    if result.stopped:  # a signal that came after the last batch changed nothing: that run is done
        err.print(
            f"[yellow]interrupted[/]: {summary}; rerun the same command to resume", soft_wrap=True, highlight=False
        )
        raise typer.Exit(EXIT_INTERRUPTED)
    err.print(f"[green]backfill done[/]: {summary}", soft_wrap=True, highlight=False)


def _request_outcome(req: Any, no_wait: bool) -> None:
    """Exit as a direct backfill would: 0 done, 1 failed, 130 cancelled; --no-wait: 0 once filed."""
    blocks = f"{req.blocks_done:,}/{req.blocks_total:,} blocks" if req.blocks_total is not None else "not started"
    what = (
        f"backfill request {req.id} ({req.from_block:,}..{req.to_block if req.to_block is not None else 'finalized'})"
    )
    if no_wait and not req.finished:
        err.print(
            f"[green]filed[/] {what}: the running indexer executes it; follow it with `rwa index status`",
            soft_wrap=True,
            highlight=False,
        )
        return
    if req.state == "DONE":
        err.print(
            f"[green]backfill done[/] by the running indexer: {what}, {blocks}, {req.events:,} events",
            soft_wrap=True,
            highlight=False,
        )
        return
    if req.state == "FAILED":
        raise fail(f"{what} failed: {req.error}", EXIT_FAILED)
    err.print(
        f"[yellow]cancelled[/]: {what} after {blocks}; what was written is kept, rerun to resume",
        soft_wrap=True,
        highlight=False,
    )
    raise typer.Exit(EXIT_INTERRUPTED)


# --- status --------------------------------------------------------------------------------------


@app.command()
def status(
    chain: str | None = typer.Option(None, "--chain", "-c", help="Only this chain."),
    as_json: bool = typer.Option(False, "--json", help="JSON on stdout instead of a table."),
    window: int = typer.Option(100, min=1, help="Blocks over which recent events/s is measured."),
    timeout: float = typer.Option(5.0, min=0.1, help="Seconds to wait for each node."),
) -> None:
    """Per chain: node head, safe, finalized, indexed block, lag, recent events/s, the indexer's state
    (ok, stopped: a reorg below finality, with the reason; failing: 3+ failed steps in a row, with the last
    error) and its backfill requests.

    A node that does not answer is shown on its own row.

    Exit codes:
    0 at least one configured node answered (or no chain has RPC_URLS_<id>), and no chain is stopped or failing
    1 a chain's indexer is stopped or failing (for health checks: `rwa index status --json`)
    2 unknown chain
    3 every configured node is unreachable, or the database is
    """
    from sqlalchemy.ext.asyncio import AsyncSession

    from indexer.status import chain_status

    specs = [_chain(chain)] if chain else list(all_chains())
    urls = {s.chain_id: rpc_urls_for(s.chain_id) for s in specs}
    with runtime(quiet_logs=True) as settings:

        async def main() -> list[Any]:
            engine = _engine(settings)
            try:
                async with AsyncSession(engine) as session:
                    return await chain_status(session, specs, urls, timeout=timeout, window_blocks=window)
            finally:
                await engine.dispose()

        rows = _guarded(lambda: asyncio.run(main()), specs, urls)
    if as_json:
        print(json.dumps({"chains": [r.as_json() for r in rows]}, indent=2))
    else:
        _status_table(rows)
    configured = [r for r in rows if r.configured]
    if configured and not any(r.reachable for r in configured):
        raise typer.Exit(EXIT_UNREACHABLE)
    if any(r.unhealthy for r in rows):
        raise typer.Exit(EXIT_FAILED)


def _fmt(value: object) -> str:
    if value is None:
        return "-"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _status_table(rows: Sequence[Any]) -> None:
    table = Table(title="indexer status")
    for name in ("chain", "state", "node", "head", "safe", "finalized", "indexed", "lag", "events/s"):
        table.add_column(
            name,
            justify="left" if name in ("chain", "state", "node") else "right",
            no_wrap=name not in ("node", "state"),
        )
    notes: list[str] = []
    for r in rows:
        node = ", ".join(r.endpoints) if r.reachable else f"[red]{r.error}[/]" if r.configured else f"[dim]{r.error}[/]"
        rate = (
            "-"
            if r.events_per_second is None
            else f"{r.events_per_second:,.1f} ({r.recent_events:,} in {r.window_blocks} blocks)"
        )
        state = {"stopped": "[bold red]STOPPED[/]", "failing": "[red]failing[/]"}.get(r.state, r.state)
        table.add_row(
            f"{r.chain} ({r.chain_id})",
            state,
            node,
            _fmt(r.head),
            _fmt(r.safe),
            _fmt(r.finalized),
            _fmt(r.indexed),
            _fmt(r.lag),
            rate,
        )
        if r.stopped_reason:
            notes.append(f"{r.chain}: stopped: {r.stopped_reason}")
        elif r.state == "failing":
            notes.append(f"{r.chain}: {r.error_count} failed steps in a row; last: {r.last_error}")
        for b in r.backfills:
            total = "?" if b["blocks_total"] is None else f"{b['blocks_total']:,}"
            notes.append(
                f"{r.chain}: backfill request {b['id']} {b['from_block']:,}.."
                f"{'finalized' if b['to_block'] is None else format(b['to_block'], ',')}"
                f"{' token ' + b['token'] if b['token'] else ''}: {b['state']} {b['blocks_done']:,}/{total} "
                f"blocks, {b['events']:,} events{' (' + b['error'] + ')' if b['error'] else ''}"
            )
    out = _out()
    out.print(table)
    for note in notes:
        out.print(note, soft_wrap=True, highlight=False, markup=False)


# --- verify --------------------------------------------------------------------------------------


@app.command()
def verify(
    chain: str = typer.Option(..., "--chain", "-c", help="1/137/56 or ethereum/polygon/bsc."),
    token: str = typer.Option(..., "--token", "-t", help="Token contract address."),
    block: int | None = typer.Option(None, "--block", min=0, help="Default: the indexed block."),
) -> None:
    """Check indexed holdings of a token against balanceOf/totalSupply on the node.

    Each holding vs balanceOf(holder), by batched eth_call at the block (default: the indexed block).
    totalSupply() vs the sum of indexed balances. Mismatches are listed in a table.

    Exit codes:
    0 every balance and the total supply match
    1 at least one mismatch
    2 bad input: unknown chain, bad address, block above the indexed block, nothing indexed, no RPC_URLS_<id>
    3 RPC node or database unreachable
    """
    from indexer.verify import VerifyError, verify_token

    spec = _chain(chain)
    address = _address(token)
    urls = {spec.chain_id: _urls(spec)}
    with runtime(quiet_logs=True) as settings:

        async def main() -> Any:
            await _head(spec, urls[spec.chain_id])  # a wrong or dead node is reported before anything else
            engine = _engine(settings)
            try:
                async with RpcClient(urls[spec.chain_id], chain_id=spec.chain_id, timeout=20, max_retries=2) as rpc:
                    return await verify_token(engine, rpc, spec.chain_id, address, block)
            except VerifyError as exc:
                raise fail(str(exc), EXIT_BAD_INPUT)
            finally:
                await engine.dispose()

        report = _guarded(lambda: asyncio.run(main()), [spec], urls)
    _verify_output(spec, report)
    if not report.ok:
        raise typer.Exit(EXIT_FAILED)


def _verify_output(spec: ChainSpec, report: Any, limit: int = 1000) -> None:
    out = _out()
    where = f"{report.token} on {spec.short_name} (chain {spec.chain_id}) at block {report.block:,}"
    if report.mismatches:
        table = Table(title=f"{len(report.mismatches)} mismatched holding(s)")
        for name in ("holder", "indexed", "on chain", "indexed - on chain"):
            table.add_column(name, justify="left" if name == "holder" else "right", no_wrap=True)
        for m in report.mismatches[:limit]:
            table.add_row(m.holder, f"{m.indexed:,}", f"{m.onchain:,}", f"{m.difference:+,}")
        out.print(table)
        if len(report.mismatches) > limit:
            out.print(f"... and {len(report.mismatches) - limit} more")
    supply = (
        "matches"
        if report.supply_matches
        else (
            f"MISMATCH: totalSupply {report.total_supply:,} vs indexed sum {report.indexed_sum:,} "
            f"({report.indexed_sum - report.total_supply:+,})"
        )
    )
    verdict = "[green]OK[/]" if report.ok else "[bold red]MISMATCH[/]"
    out.print(
        f"{verdict}: {report.holders_checked:,} holder(s) of {where}; "
        f"{len(report.mismatches)} mismatched; total supply {supply}",
        highlight=False,
    )
