"""`rwa agent`: run the on-chain executor, and show its status.

Exit codes: 0 ok; 1 status found an unhealthy chain (out of gas, node unreachable, stale operations) or the agent
stopped on an error; 2 bad configuration (unknown chain, no RPC_URLS_<id>, missing/refused key); 3 database
unreachable.
"""

from __future__ import annotations

import asyncio
import json

import typer
from rich.table import Table

from cli.runtime import err, fail, runtime

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__.split("\n\n", 1)[0])


@app.callback()
def _dev_chains() -> None:
    """Next to a running `rwa dev` (same data dir), its local chains count as configured, with its agent's key."""
    from cli.dev_chains import adopt, adopt_agent_key
    from cli.runtime import load_settings

    adopted = adopt(load_settings().data_path())
    if adopted:
        from cli.dev import ANVIL_AGENT_KEY

        adopt_agent_key(adopted, ANVIL_AGENT_KEY)


def _chain_ids(chain: str | None, settings: object) -> list[int]:
    from chains.errors import UnknownChain
    from chains.registry import all_chains, get_chain, rpc_urls_for

    if chain:
        try:
            return [get_chain(chain).chain_id]
        except UnknownChain as exc:
            raise fail(str(exc), 2) from None
    ids = [c.chain_id for c in all_chains() if rpc_urls_for(c.chain_id)]
    if not ids:
        raise fail("no chain configured: set RPC_URLS_1, RPC_URLS_137 and/or RPC_URLS_56", 2)
    return ids


@app.command()
def run(
    chain: str | None = typer.Option(
        None, "--chain", "-c", help="1/137/56 or a name; default: every chain with RPC_URLS_<id> set."
    ),
    metrics_port: int = typer.Option(
        0,
        "--metrics-port",
        envvar="RWA_AGENT_METRICS_PORT",
        min=0,
        max=65535,
        help="Ops port: /metrics, /healthz, /readyz (0: off).",
    ),
    metrics_host: str | None = typer.Option(
        None,
        "--metrics-host",
        envvar="RWA_AGENT_METRICS_HOST",
        help="Interface of the ops port (default: RWA_OPS_HOST).",
    ),
) -> None:
    """Sign, send, replace and confirm the outbox's operations until Ctrl-C/SIGTERM. The ops port serves /metrics,
    /healthz (the loop turns) and /readyz (no signer this process sends for is below its gas threshold)."""
    import signal

    from agent.config import AgentConfig
    from agent.errors import AgentError
    from agent.executor import run_agent
    from core.settings import ConfigError

    with runtime() as settings:
        ids = _chain_ids(chain, settings)
        try:
            config = AgentConfig.from_env()
        except ValueError as exc:
            raise fail(f"invalid configuration: {exc}", 2) from None
        from agent.ops import readiness
        from core.ops_server import Heartbeat, start_ops_server

        heartbeat = Heartbeat()
        if metrics_port:
            start_ops_server(
                metrics_host or settings.ops_host,
                metrics_port,
                role="agent",
                liveness=heartbeat.check,
                readiness=readiness(heartbeat),
            )

        async def main() -> None:
            beating = asyncio.create_task(heartbeat.run())
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, stop.set)
            try:
                await run_agent(settings, ids, stop=stop, config=config)
            finally:
                beating.cancel()

        err.print(f"[green]agent[/] chains {', '.join(map(str, ids))}", highlight=False)
        try:
            asyncio.run(main())
        except (ConfigError, AgentError) as exc:
            raise fail(str(exc), 2) from None
        except OSError as exc:
            raise fail(f"database unreachable: {exc}", 3) from None
        except ValueError as exc:
            raise fail(f"invalid configuration: {exc}", 2) from None
        err.print("[green]agent stopped[/]")


@app.command()
def status(
    chain: str | None = typer.Option(None, "--chain", "-c", help="One chain (default: all configured)."),
    as_json: bool = typer.Option(False, "--json", help="JSON lines for scripts and health checks."),
) -> None:
    """Per chain and signer: address, gas balance, next nonce, open operations and the oldest one's age.
    Exits 1 when a chain is unhealthy (usable as a health check)."""
    from agent.status import collect
    from core.db import create_engine

    with runtime(quiet_logs=True) as settings:
        ids = _chain_ids(chain, settings)

        async def main() -> list:
            engine = create_engine(settings.database_url or "", pool_size=2)
            try:
                return await collect(settings, engine, ids)
            finally:
                await engine.dispose()

        try:
            rows = asyncio.run(main())
        except OSError as exc:
            raise fail(f"database unreachable: {exc}", 3) from None
        except Exception as exc:  # noqa: BLE001  (one line, never a traceback)
            raise fail(
                f"status failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}", 1
            ) from None
    if as_json:
        typer.echo(json.dumps({"healthy": all(r.healthy for r in rows), "signers": [r.as_dict() for r in rows]}))
    else:
        table = Table(
            "chain", "roles", "signer", "gas balance", "next nonce", "open", "oldest open", "failed", "sender", "health"
        )
        for r in rows:
            table.add_row(
                f"{r.chain} ({r.chain_id})",
                ",".join(r.roles),
                r.address or "-",
                "-" if r.gas_balance_wei is None else f"{r.gas_balance_wei / 1e18:.6f}",
                "-" if r.next_nonce is None else str(r.next_nonce),
                str(r.pending),
                "-" if r.oldest_pending_age_s is None else f"{r.oldest_pending_age_s:.0f} s",
                str(r.failed),
                "running" if r.sender_running else "stopped",
                "ok" if r.healthy else "; ".join(r.problems),
            )
        err.print(table)
    if not all(r.healthy for r in rows):
        raise typer.Exit(1)
