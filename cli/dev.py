"""`rwa dev`: the whole product on one machine with no external services.

Embedded Postgres + Redis (data dir), three local anvil chains (Ethereum 1, Polygon 137, BSC 56) with a
USD stablecoin deployed on each, then the API server, the indexer and a job worker as child processes.

Stopping: Ctrl-C / SIGTERM / SIGHUP stops the children (each in its own session, so a terminal Ctrl-C reaches
only us and each child gets exactly one SIGTERM: a second signal would make the indexer cancel mid-batch),
then the chains, then the embedded services; a second Ctrl-C kills the children at once. If `rwa dev` itself
is killed (SIGKILL), a watchdog process (cli/dev_reaper.py) stops everything it had started.

Local chains are new on every start, so on-chain rows of the local chain ids from a previous run are cleared;
that is why `rwa dev` refuses RWA_ENV=production.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from chains.anvil import AnvilError, AnvilNode, stop_nodes
from cli.dev_reaper import watched
from cli.runtime import err, fail

# anvil's first well-known development account; never valid outside local chains
ANVIL_DEV_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
LOCAL_CHAINS = (1, 137, 56)
STOP_TIMEOUT_S = 15.0  # each child's own graceful shutdown is bounded by 10 s
_CHAIN_TABLES = ("token_transfers", "holdings", "identities", "chain_events", "blocks", "fetched_intervals",
                 "indexer_cursors")


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]


async def reset_local_chain_rows(database_url: str) -> None:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(database_url)
    async with engine.begin() as conn:
        for table in _CHAIN_TABLES:
            await conn.execute(text(f"DELETE FROM {table} WHERE chain_id = ANY(:ids)"), {"ids": list(LOCAL_CHAINS)})
        await conn.execute(text("DELETE FROM tokens WHERE chain_id = ANY(:ids) AND kind = 'STABLECOIN'"),
                           {"ids": list(LOCAL_CHAINS)})
    await engine.dispose()


async def seed_stablecoins(database_url: str, urls: dict[int, str]) -> dict[int, str]:
    """Deploy a 6-decimal USDC on each chain and register it as a watched stablecoin token."""
    from eth_account import Account
    from sqlalchemy.dialects.postgresql import insert
    from sqlalchemy.ext.asyncio import create_async_engine

    from chains.deploy import connect, deploy_stablecoin
    from models.tokens import Token, TokenKind

    deployer = Account.from_key(ANVIL_DEV_KEY)
    addresses: dict[int, str] = {}
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as conn:
            for chain_id, url in urls.items():
                w3 = connect(url)
                try:
                    start = await w3.eth.block_number
                    coin = await deploy_stablecoin(w3, deployer)
                finally:
                    await w3.provider.disconnect()  # else aiohttp logs "Unclosed client session" at exit
                addresses[chain_id] = coin.address
                await conn.execute(insert(Token).values(
                    chain_id=chain_id, address=coin.address, kind=TokenKind.STABLECOIN, name="USD Coin",
                    symbol="USDC", decimals=6, start_block=start).on_conflict_do_nothing())
    finally:
        await engine.dispose()
    return addresses


class SessionAnvil(AnvilNode):
    """An anvil in its own session (util-linux `setsid` execs it under the same pid). A terminal Ctrl-C then
    reaches only `rwa dev`, which stops the chains after the indexer and worker: killed first, they would
    make those spend their shutdown retrying dead RPC endpoints."""

    def _command(self) -> list[str]:
        cmd = super()._command()
        setsid = shutil.which("setsid")
        return [setsid, *cmd] if setsid else cmd


def rwa_command() -> list[str]:
    """This interpreter's `rwa` (not whichever is first on PATH, which may belong to another checkout)."""
    script = Path(sys.executable).with_name("rwa")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "cli.main"]


def _spawn(name: str, args: list[str], env: dict[str, str]) -> Child:
    # Own session: Ctrl-C in the terminal reaches only us; we forward one SIGTERM (see the module doc).
    proc = subprocess.Popen([*rwa_command(), *args], env=env, stdin=subprocess.DEVNULL, start_new_session=True)
    return Child(name, proc)


def _group_alive(pgid: int) -> bool:
    """A live (non-zombie) process is in group `pgid`: a child's own children (dramatiq) may outlive it."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
                return True
    return False


def _running(child: Child) -> bool:
    return child.proc.poll() is None or _group_alive(child.proc.pid)


def stop_children(children: list[Child], hurry: list[int]) -> None:
    """SIGTERM each child's process group; wait up to STOP_TIMEOUT_S (less if a signal lands in `hurry`) for it and everything in
    its process group to exit, then SIGKILL the group."""
    for child in children:
        # The whole group: `rwa worker` dies of SIGTERM at once when DATABASE_URL/REDIS_URL are set (it installs
        # no handler then), so its dramatiq processes must get the SIGTERM themselves.
        try:
            os.killpg(child.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline and not hurry and any(_running(c) for c in children):
        time.sleep(0.2)
    for child in children:
        if _running(child):
            left = "did not stop" if child.proc.poll() is None else "exited but left processes behind"
            err.print(f"[red]{child.name} {left}; killing its process group[/]")
            try:
                os.killpg(child.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        child.proc.wait()


def _check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise fail(f"cannot listen on {host}:{port} ({exc.strerror}); pick another with --port", 2)


def _start_reaper(data_dir: Path | None) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "cli.dev_reaper", *([str(data_dir)] if data_dir else [])]
    return subprocess.Popen(args, stdin=subprocess.PIPE, start_new_session=True)


def _watch(reaper: subprocess.Popen[bytes], pid: int | None, group: bool = False) -> None:
    if pid is None or reaper.stdin is None:
        return
    try:
        reaper.stdin.write(watched(pid, group).line().encode())
        reaper.stdin.flush()
    except OSError:  # the watchdog is gone; the normal shutdown path still works
        pass


def _release_reaper(reaper: subprocess.Popen[bytes]) -> None:
    try:
        if reaper.stdin is not None:
            reaper.stdin.write(b"done\n")
            reaper.stdin.close()
        reaper.wait(5)
    except (OSError, subprocess.TimeoutExpired):
        reaper.kill()


def run_dev(host: str, port: int, chain_ports: tuple[int, int, int] | None, with_worker: bool) -> None:
    from cli.runtime import load_settings, runtime

    configured = load_settings()
    if configured.is_production:
        raise fail("rwa dev clears the local chains' rows on start; it refuses RWA_ENV=production", 2)
    _check_port_free(host, port)
    with runtime() as settings:  # from here on settings carry the embedded URLs: ask `configured`
        reaper = _start_reaper(configured.data_path() if configured.embedded else None)
        nodes = [SessionAnvil(cid, port=chain_ports[i] if chain_ports else None)
                 for i, cid in enumerate(LOCAL_CHAINS)]
        children: list[Child] = []
        requested = False
        try:
            for node in nodes:
                try:
                    node.start()
                except AnvilError as exc:  # e.g. `npm ci` not run: say so in one line
                    raise fail(str(exc), 3) from None
                _watch(reaper, node.pid)
            urls = {n.chain_id: n.url for n in nodes}
            asyncio.run(reset_local_chain_rows(settings.database_url or ""))
            coins = asyncio.run(seed_stablecoins(settings.database_url or "", urls))
            env = {**os.environ, **{f"RPC_URLS_{cid}": url for cid, url in urls.items()}}
            env.setdefault("DEPLOYER_PRIVATE_KEY", ANVIL_DEV_KEY)
            commands = [("api", ["serve", "--host", host, "--port", str(port)]), ("indexer", ["index", "run"])]
            if with_worker:
                commands.append(("worker", ["worker"]))
            for name, args in commands:
                children.append(_spawn(name, args, env))
                _watch(reaper, children[-1].proc.pid, group=True)
            for cid, url in urls.items():  # one line each (soft_wrap): scripts and tests parse them
                err.print(f"chain {cid} {url}  USDC {coins[cid]}", soft_wrap=True, highlight=False)
            err.print(f"[bold green]StableRWA dev[/]: GraphiQL at http://{host}:{port}/graphql  (Ctrl-C to stop)",
                      soft_wrap=True, highlight=False)
            while True:
                for child in children:
                    code = child.proc.poll()
                    if code is not None:
                        err.print(f"[red]{child.name} exited with {code}; stopping[/]")
                        raise SystemExit(code or 1)
                time.sleep(0.5)
        except KeyboardInterrupt:
            requested = True
        except SystemExit as exc:
            requested = exc.code in (128 + signal.SIGTERM, 128 + signal.SIGHUP)  # from install_signal_handlers
            if not requested:
                raise
        finally:
            hurry = _hurry_on_further_signals()
            err.print("stopping...")
            stop_children(children, hurry)
            stop_nodes(nodes)
        # leaving runtime() stops the embedded services; only then is the watchdog no longer needed
    _release_reaper(reaper)
    if requested:
        err.print("[green]stopped[/]")


def _hurry_on_further_signals() -> list[int]:
    """During shutdown a further Ctrl-C/SIGTERM only hurries it (kills the children) instead of aborting it."""
    hurry: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        hurry.append(signum)

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(signum) != signal.SIG_IGN:
            signal.signal(signum, on_signal)
    return hurry
