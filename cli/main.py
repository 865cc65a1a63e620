"""`rwa`: the operator CLI. Every command works on the embedded default when no DATABASE_URL/REDIS_URL is set."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from cli.runtime import check_secrets, err, fail, runtime

if TYPE_CHECKING:
    import uvicorn  # imported where used: `rwa` starts without it

app = typer.Typer(no_args_is_help=True, add_completion=False, help="StableRWA: API server, indexer and workers.")
user_app = typer.Typer(no_args_is_help=True, help="Manage users.")
schema_app = typer.Typer(no_args_is_help=True, help="GraphQL schema tools.")
app.add_typer(user_app, name="user")
app.add_typer(schema_app, name="schema")

try:  # `rwa index`: the indexer's command group (cli/indexer.py)
    from cli.indexer import app as index_app

    app.add_typer(index_app, name="index")
except ImportError:  # pragma: no cover - indexer not installed in this build
    pass

try:  # the on-chain agent (executor of the operations outbox)
    from cli.agent import app as agent_app

    app.add_typer(agent_app, name="agent")
except ImportError:  # pragma: no cover
    pass

from cli.demo import demo as _demo  # noqa: E402  (`rwa demo`: the scripted first session against `rwa dev`)

app.command("demo")(_demo)

from cli.keys import app as _keys_app  # noqa: E402  (`rwa keys jwt-new | jwt-status`: JWT key rotation)
from cli.kyc import app as _kyc_app  # noqa: E402  (`rwa kyc rekey`: KYC key rotation)
from cli.mfa import mfa_enrol as _mfa_enrol  # noqa: E402  (`rwa user mfa-enrol`: MFA for staff, from a host)

app.add_typer(_kyc_app, name="kyc")
app.add_typer(_keys_app, name="keys")

user_app.command("mfa-enrol")(_mfa_enrol)

# uvicorn's websocket implementation (bench/trading_fanout.py measures the one `rwa serve` uses)
WEBSOCKETS = "websockets-sansio"


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to bind."),
    port: int = typer.Option(8000, min=1, max=65535, help="TCP port."),
    workers: int = typer.Option(1, min=1, help="uvicorn worker processes."),
    metrics_port: int | None = typer.Option(
        None,
        "--metrics-port",
        min=0,
        max=65535,
        help="Ops port: /metrics of all workers, /healthz, /readyz (default RWA_API_METRICS_PORT; 0: off).",
    ),
) -> None:
    """Run the GraphQL API (/graphql, /healthz, /readyz); Prometheus /metrics of every worker on the ops port."""
    import uvicorn

    from server.http_protocol import BoundedHeadProtocol
    from server.ws_protocol import BoundedWebSocketProtocol

    with runtime() as settings:
        check_secrets(settings)
        url = f"http://{host}:{port}/graphql"
        if settings.log_json:  # a service's stderr is its log stream: keep every line JSON
            logging.getLogger("rwa.cli").info(
                "serving", extra={"url": url, "env": settings.env.value, "workers": workers}
            )
        else:
            err.print(f"[green]API[/] on {url} (env={settings.env.value})")
        # each worker's /readyz compares the supervisor's live workers with N (server/health.py)
        os.environ["RWA_SERVE_WORKERS"] = str(workers)
        # a websocket message is bounded like an HTTP body (uvicorn's default is 16 MiB)
        # X-Forwarded-For/-Proto are believed from FORWARDED_ALLOW_IPS peers only (the client IP the login rate limit
        # keys on); everyone else's are ignored.
        # uvicorn has no header read timeout nor (httptools) header-size limit: BoundedHeadProtocol adds both; bodies
        # have none, so production runs behind a proxy with read timeouts (README "Slow clients").
        # limit_concurrency stays unset: it counts half-open connections, so a flood would 503 everyone sooner
        config = uvicorn.Config(
            "server.app:create_app_from_env",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_config=None,
            timeout_graceful_shutdown=10,
            ws=BoundedWebSocketProtocol,  # WEBSOCKETS, with a bound on unread frames (server/ws_protocol.py)
            http=BoundedHeadProtocol,
            proxy_headers=True,
            forwarded_allow_ips=settings.forwarded_allow_ips,
            ws_max_size=settings.max_request_bytes,
        )
        from core.ops_server import prepare_multiproc_dir, remove_multiproc_dir, start_ops_server

        # every worker writes its metrics there; the supervisor's ops port serves their sum
        metrics_dir = prepare_multiproc_dir("serve")
        port_ = settings.api_metrics_port if metrics_port is None else metrics_port
        ops = start_ops_server(settings.ops_host, port_, role="api") if port_ else None
        try:
            _supervise(config)
        finally:
            if ops is not None:
                ops.stop()
            remove_multiproc_dir(metrics_dir)


def _supervise(config: uvicorn.Config) -> None:
    """uvicorn's multiprocess supervisor for every worker count, one included: a worker that dies (SIGKILL, a
    segfault) is replaced instead of taking the API down. uvicorn.run supervises only from two workers on."""
    from uvicorn.server import STARTUP_FAILURE
    from uvicorn.supervisors import Multiprocess

    supervisor = Multiprocess(config, sockets=[config.bind_socket()])
    supervisor.run()
    if any(p.exitcode == STARTUP_FAILURE for p in supervisor.processes):  # the app cannot start: not a clean exit
        raise typer.Exit(STARTUP_FAILURE)


@app.command()
def dev(
    host: str = typer.Option("127.0.0.1", help="API interface."),
    port: int = typer.Option(8000, min=1, max=65535, help="API port."),
    worker: bool = typer.Option(True, help="Also run a background-job worker."),
) -> None:
    """Run everything locally: embedded Postgres/Redis, three anvil chains, API, indexer and worker."""
    from cli.dev import run_dev

    run_dev(host, port, None, worker)


@app.command()
def worker(
    processes: int = typer.Option(1, min=1, help="Worker processes."),
    threads: int = typer.Option(4, min=1, help="Threads per process."),
    metrics_port: int | None = typer.Option(
        None,
        "--metrics-port",
        min=0,
        max=65535,
        help="Ops port: /metrics (jobs processed/failed/duration of every "
        "worker process), /healthz (dramatiq running), /readyz (and "
        "the broker reachable); default RWA_WORKER_METRICS_PORT, "
        "0: off.",
    ),
) -> None:
    """Run the background-job workers (dramatiq) for every actor in jobs/actors.py.

    SIGTERM/SIGINT are forwarded once to dramatiq (which finishes the messages in hand); if it has not stopped
    after the shutdown timeout, its whole process group is killed. Nothing is left running either way.
    """
    import signal
    import subprocess
    import sys

    with runtime() as settings:
        check_secrets(settings)
        err.print(
            f"[green]worker[/] broker={'rabbitmq' if (settings.broker_url or '').startswith('amqp') else 'redis'}"
        )
        from core.ops_server import prepare_multiproc_dir, remove_multiproc_dir, start_ops_server
        from jobs.ops import WorkerHealth

        metrics_dir = prepare_multiproc_dir("worker")  # dramatiq's processes write their job metrics there
        # its own session: a terminal's Ctrl-C reaches dramatiq only through us, exactly once
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dramatiq",
                "jobs.actors",
                "--processes",
                str(processes),
                "--threads",
                str(threads),
                "--worker-shutdown-timeout",
                "10000",
            ],
            start_new_session=True,
        )
        broker_url = settings.broker_url or settings.redis_url or ""
        health = WorkerHealth(proc, broker_url, "rabbitmq" if broker_url.startswith("amqp") else "redis")
        port_ = settings.worker_metrics_port if metrics_port is None else metrics_port
        ops = (
            start_ops_server(
                settings.ops_host, port_, role="worker", liveness=health.liveness, readiness=health.readiness
            )
            if port_
            else None
        )
        stopping: list[int] = []

        def forward(signum: int, frame: object) -> None:
            if not stopping and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            stopping.append(signum)

        previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            while True:
                try:
                    code = proc.wait(timeout=0.5)
                    break
                except subprocess.TimeoutExpired:
                    continue
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                err.print("[yellow]worker did not stop in 20 s; killing it[/]")
            import os

            try:  # dramatiq's worker processes share its process group
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            if ops is not None:
                ops.stop()
            remove_multiproc_dir(metrics_dir)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        raise SystemExit(0 if stopping else code)


@app.command()
def migrate() -> None:
    """Apply database migrations (idempotent). Refuses to run while another migration holds the migration lock
    (exit 5); a DDL waiting longer than MIGRATION_LOCK_TIMEOUT_S for a table lock aborts it with nothing applied
    (exit 6)."""
    from cli.runtime import migrate_exclusive

    with runtime(migrate=False) as settings:
        migrate_exclusive(settings)
        err.print("[green]database is at the latest migration[/]")


def _email(value: str) -> str:
    """Checked before the password prompt: a typo in the address should not cost typing the password twice."""
    from core.errors import AppError
    from resolvers.identity.validation import normalize_email

    try:
        normalize_email(value)
    except AppError as exc:
        raise typer.BadParameter(exc.message) from None
    return value


@user_app.command("create-admin")
def create_admin(
    email: str = typer.Option(..., help="Admin email.", callback=_email),
    password: str = typer.Option(
        ..., prompt=True, hide_input=True, confirmation_prompt=True, help="Password (prompted if omitted)."
    ),
) -> None:
    """Create the first ADMIN (or promote an existing user)."""
    from core.db import create_engine, create_session_factory
    from core.errors import AppError
    from resolvers.identity.accounts import create_admin as _create

    with runtime(quiet_logs=True) as settings:

        async def _run() -> tuple[str, str]:
            engine = create_engine(settings.database_url or "", pool_size=1)
            try:
                async with create_session_factory(engine)() as session:
                    user = await _create(session, email, password)
                    return str(user.id), user.email
            finally:
                await engine.dispose()

        try:
            user_id, stored_email = asyncio.run(_run())
        except AppError as exc:
            raise fail(exc.message, 2)
        err.print(f"[green]admin ready[/]: {stored_email} ({user_id})")  # as stored: normalized


@schema_app.command("export")
def schema_export(out: Path = typer.Option(Path("schema.graphql"), help="Where to write the SDL.")) -> None:
    """Write the production GraphQL SDL (committed as schema.graphql; a test fails when it is stale)."""
    from schema import production_sdl

    sdl = production_sdl()
    out.write_text(sdl)
    err.print(f"wrote {out} ({len(sdl.splitlines())} lines)")


if __name__ == "__main__":
    app()
