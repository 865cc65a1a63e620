"""`rwa dev`: the whole product on one machine with no external services.

Embedded Postgres + Redis (data dir), three local anvil chains (Ethereum 1, Polygon 137, BSC 56) with a
USD stablecoin deployed on each, then the API server, the indexer, the on-chain agent and a job worker as child
processes. The chains mine a block every second (besides one per transaction), so finality advances.

Stopping: Ctrl-C / SIGTERM / SIGHUP stops the children, then the chains, then the embedded services. Children and
chains run in their own sessions, so a terminal Ctrl-C reaches only us and each child gets exactly one SIGTERM (a
second would make the indexer cancel mid-batch and dramatiq kill its workers); the chains outlive the children, which
would otherwise spend their shutdown retrying dead RPC endpoints. Another Ctrl-C a second or more later kills the
children at once. If `rwa dev` itself is killed (SIGKILL), a watchdog process (cli/dev_reaper.py) stops everything
it had started.

The local chains persist in the data dir (cli/dev_state.py): a restart continues the same chains, and what a
chain lost (no state yet, or the last seconds before a kill -9) is reconciled with the rows before anything else
starts; `rwa dev` may delete rows of the local chain ids, which is why it refuses RWA_ENV=production.
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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from chains.anvil import AnvilError, AnvilNode, stop_nodes
from cli import dev_chains, dev_state
from cli.dev_reaper import watched
from cli.runtime import err, fail

if TYPE_CHECKING:
    from core.settings import Settings

# anvil's first well-known development account; never valid outside local chains
ANVIL_DEV_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
# anvil's 10th development account: the on-chain agent (and treasury) of `rwa dev`. Not the deployer's key: two
# programs signing with one key race for its nonces (a tokenization's deploy failed "nonce too low" beside the agent)
ANVIL_AGENT_KEY = "0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6"
LOCAL_CHAINS = (1, 137, 56)
DEV_BLOCK_TIME_S = 1.0
STOP_TIMEOUT_S = 20.0  # a child's graceful shutdown: 10 s for requests (uvicorn), then SHUTDOWN_DRAIN_TIMEOUT_S (5)


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]


@dataclass(frozen=True)
class DemoChain:
    stablecoin: str
    token: str
    registry: str


async def seed_demo(database_url: str, urls: dict[int, str]) -> dict[int, DemoChain]:
    """On each chain: deploy the identity registry, a security token wired to it and a 6-decimal USDC, register
    them as watched tokens, and make a little activity for the indexer (three verified investors, a mint, a few
    transfers, USDC balances)."""
    from eth_account import Account
    from sqlalchemy.dialects.postgresql import insert
    from sqlalchemy.ext.asyncio import create_async_engine

    from chains.deploy import connect, deploy_rwa_stack, transact
    from models.tokens import Token, TokenKind

    deployer = Account.from_key(ANVIL_DEV_KEY)
    deployed: dict[int, DemoChain] = {}
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as conn:
            for chain_id, url in urls.items():
                w3 = connect(url)
                try:
                    start = await w3.eth.block_number
                    stack = await deploy_rwa_stack(w3, deployer, "Demo Real Estate Fund", "DREF", 18)
                    # (web3 annotates the accounts as a 1-tuple)
                    investors = list(await w3.eth.accounts)[1:4]
                    for i, investor in enumerate(investors):
                        await transact(stack.registry.functions.registerIdentity(investor, investor, 840 + i), deployer)
                        await transact(stack.stablecoin.functions.mint(investor, 100_000 * 10**6), deployer)
                    await transact(stack.token.functions.mint(investors[0], 1_000 * 10**18), deployer)
                    await transact(stack.token.functions.transfer(investors[1], 250 * 10**18), investors[0])
                    await transact(stack.token.functions.transfer(investors[2], 100 * 10**18), investors[1])
                    await transact(stack.stablecoin.functions.transfer(investors[0], 5_000 * 10**6), investors[2])
                    agent = Account.from_key(ANVIL_AGENT_KEY).address  # settles, registers, pays out (treasury)
                    await transact(stack.token.functions.addAgent(agent), deployer)
                    await transact(stack.registry.functions.addAgent(agent), deployer)
                    await transact(stack.stablecoin.functions.mint(agent, 1_000_000 * 10**6), deployer)
                finally:
                    await w3.provider.disconnect()  # else aiohttp logs "Unclosed client session" at exit
                deployed[chain_id] = DemoChain(stack.stablecoin.address, stack.token.address, stack.registry.address)
                await conn.execute(
                    insert(Token)
                    .values(
                        chain_id=chain_id,
                        address=stack.stablecoin.address,
                        kind=TokenKind.STABLECOIN,
                        name="USD Coin",
                        symbol="USDC",
                        decimals=6,
                        start_block=start,
                    )
                    .on_conflict_do_nothing()
                )
                await conn.execute(
                    insert(Token)
                    .values(
                        chain_id=chain_id,
                        address=stack.token.address,
                        kind=TokenKind.SECURITY,
                        name="Demo Real Estate Fund",
                        symbol="DREF",
                        decimals=18,
                        start_block=start,
                        identity_registry=stack.registry.address,
                    )
                    .on_conflict_do_nothing()
                )
    finally:
        await engine.dispose()
    return deployed


async def _prepare_chains(database_url: str, urls: dict[int, str], restored: dict[int, bool]) -> dict[int, DemoChain]:
    """Reconcile the rows with what each chain kept (cli/dev_state.py), then seed the demo where it is missing."""
    from eth_account import Account

    from core.settings import get_settings

    key = get_settings().deployer_private_key
    deployer = Account.from_key(key.get_secret_value() if key else ANVIL_DEV_KEY).address
    for r in await dev_state.reconcile(database_url, urls, restored, deployer):
        if r.restored and r.rolled_back_to is not None:
            err.print(
                f"[yellow]chain {r.chain_id}: lost its last blocks (killed?); index rolled back to block "
                f"{r.rolled_back_to:,}[/]",
                soft_wrap=True,
                highlight=False,
            )
        elif r.restored and r.reset:
            err.print(f"[yellow]chain {r.chain_id}: lost blocks below the index; re-indexing it[/]", highlight=False)
        if r.lost_tokens:
            err.print(
                f"[yellow]chain {r.chain_id}: registered tokens without a contract: {', '.join(r.lost_tokens)}[/]",
                soft_wrap=True,
                highlight=False,
            )
    kept = await dev_state.existing_demo(database_url, list(urls))
    demo = {cid: DemoChain(*kept[cid]) for cid in urls if cid in kept}
    missing = {cid: url for cid, url in urls.items() if cid not in demo}
    if missing:
        demo.update(await seed_demo(database_url, missing))
    return demo


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


def group_members(pgid: int) -> dict[int, int]:
    """pid -> parent pid of the live (non-zombie) processes in group `pgid`."""
    members = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
                members[int(entry.name)] = int(fields[1])
    return members


def _running(child: Child) -> bool:
    return child.proc.poll() is None or bool(group_members(child.proc.pid))


def _terminate_orphans(child: Child, signalled: set[int]) -> None:
    """After a child exited, SIGTERM (once) the processes of its group it left without a parent in the group.

    `rwa worker` dies of SIGTERM at once when DATABASE_URL/REDIS_URL are set (it installs no handler then),
    orphaning its dramatiq main process. Signalling that one only matters: a second SIGTERM to dramatiq's worker
    processes (ours on top of the one their main forwards) makes them kill themselves mid-job."""
    members = group_members(child.proc.pid)
    for pid, parent in members.items():
        if parent not in members and pid not in signalled:
            signalled.add(pid)
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass


def stop_children(children: list[Child], hurry: Callable[[], bool] = lambda: False) -> None:
    """SIGTERM each child, then the orphans it leaves in its process group; wait up to STOP_TIMEOUT_S (or until
    `hurry()`) for everything in those groups to exit, then SIGKILL what is left."""
    for child in children:
        if child.proc.poll() is None:
            child.proc.terminate()
    signalled: set[int] = set()
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline and not hurry() and any(_running(c) for c in children):
        for child in children:
            if child.proc.poll() is not None:
                _terminate_orphans(child, signalled)
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


class StopSignals:
    """SIGINT/SIGTERM/SIGHUP only record that a stop was asked (no exception lands in the middle of the cleanup).
    A signal at least a second after the first one means "hurry": `timeout`, or a terminal and a script, may
    deliver the same stop twice at once."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def install(self) -> None:
        # SIGINT and SIGTERM always stop: a script's `rwa dev &` starts with SIGINT ignored, and `kill -INT <pid>`
        # must still stop the stack like Ctrl-C (`rwa serve` behaves the same). SIGHUP ignored (nohup) stays ignored.
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            if signum != signal.SIGHUP or signal.getsignal(signum) != signal.SIG_IGN:
                signal.signal(signum, self._record)

    def _record(self, signum: int, frame: FrameType | None) -> None:
        self.times.append(time.monotonic())

    @property
    def stop(self) -> bool:
        return bool(self.times)

    def hurry(self) -> bool:
        return bool(self.times) and self.times[-1] - self.times[0] >= 1.0


def _start_all(
    host: str,
    port: int,
    with_worker: bool,
    settings: Settings,
    nodes: list[SessionAnvil],
    children: list[Child],
    reaper: subprocess.Popen[bytes],
    signals: StopSignals,
) -> bool:
    """Chains, seed, child processes. False when a stop signal arrived meanwhile."""
    restored = {n.chain_id: dev_state.has_state(settings.data_path(), n.chain_id) for n in nodes}
    for node in nodes:
        try:
            node.start()
        except AnvilError as exc:  # e.g. `npm ci` not run: say so in one line
            if not restored[node.chain_id]:
                raise fail(str(exc), 3) from None
            aside = dev_state.set_aside(settings.data_path(), node.chain_id)  # unreadable state: start new
            err.print(f"[yellow]chain {node.chain_id}: saved state unreadable ({aside}); starting a new chain[/]")
            restored[node.chain_id] = False
            try:
                node.start()
            except AnvilError as again:
                raise fail(str(again), 3) from None
        _watch(reaper, node.pid)
        if signals.stop:
            return False
    urls = {n.chain_id: n.url for n in nodes}
    demo = asyncio.run(_prepare_chains(settings.database_url or "", urls, restored))
    dev_chains.publish(settings.data_path(), urls)  # for `rwa index ...` in another shell
    env = {**os.environ, **{f"RPC_URLS_{cid}": url for cid, url in urls.items()}}
    env.setdefault("DEPLOYER_PRIVATE_KEY", ANVIL_DEV_KEY)
    env.setdefault("AGENT_PRIVATE_KEY", ANVIL_AGENT_KEY)  # tokenization makes it an agent of what it deploys
    commands = [
        ("api", ["serve", "--host", host, "--port", str(port)]),
        ("indexer", ["index", "run"]),
        ("agent", ["agent", "run"]),
    ]
    if with_worker:
        commands.append(("worker", ["worker"]))
    for name, args in commands:
        if signals.stop:
            return False
        children.append(_spawn(name, args, env))
        _watch(reaper, children[-1].proc.pid, group=True)
    _wait_listening(host, port, children[0], signals)  # the URL below answers once it is printed
    for cid, url in urls.items():  # one line each (soft_wrap): scripts and tests parse them
        err.print(
            f"chain {cid} {url}  USDC {demo[cid].stablecoin}  DREF {demo[cid].token}", soft_wrap=True, highlight=False
        )
    err.print(
        f"[bold green]StableRWA dev[/]: GraphiQL at http://{host}:{port}/graphql  (Ctrl-C to stop)",
        soft_wrap=True,
        highlight=False,
    )
    return not signals.stop


def _wait_listening(host: str, port: int, api: Child, signals: StopSignals, timeout_s: float = 60.0) -> None:
    """Until the API accepts connections (uvicorn listens after its startup), it exits, or a stop is asked."""
    target = "127.0.0.1" if host in ("0.0.0.0", "") else ("::1" if host == "::" else host)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not signals.stop and api.proc.poll() is None:
        try:
            with socket.create_connection((target, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)


def _watch_children(children: list[Child], signals: StopSignals) -> int | None:
    """Until a stop signal (None) or a child exits (its exit code, at least 1)."""
    while not signals.stop:
        for child in children:
            code = child.proc.poll()
            if code is not None:
                err.print(f"[red]{child.name} exited with {code}; stopping[/]")
                return code or 1
        time.sleep(0.2)
    return None


def _chain_port(host: str, avoid: set[int]) -> int:
    """A free port for a chain that is not the API's: the API binds its port only later, so the OS could hand
    the same number to an anvil first."""
    from chains.anvil import free_port

    while True:
        candidate = free_port(host)
        if candidate not in avoid:
            avoid.add(candidate)
            return candidate


def run_dev(host: str, port: int, chain_ports: tuple[int, int, int] | None, with_worker: bool) -> None:
    from cli.runtime import load_settings, runtime

    configured = load_settings()
    if configured.is_production:
        raise fail("rwa dev clears the local chains' rows on start; it refuses RWA_ENV=production", 2)
    _check_port_free(host, port)
    failed: int | None = None
    # runtime() starts the embedded services with handlers that turn a signal into an exception (it cleans up);
    # from then on StopSignals takes over, so the shutdown below always runs to the end.
    with runtime() as settings:  # from here on settings carry the embedded URLs: ask `configured`
        signals = StopSignals()
        signals.install()
        reaper = _start_reaper(configured.data_path() if configured.embedded else None)
        taken = {port}
        # a block every second besides the automined ones (--mixed-mining): finality advances without traffic, so
        # a trade settles (at the finalized block) a few seconds after it is matched
        nodes = [
            SessionAnvil(
                cid,
                port=chain_ports[i] if chain_ports else _chain_port(host, avoid=taken),
                block_time=DEV_BLOCK_TIME_S,
                extra_args=(*dev_state.anvil_args(configured.data_path(), cid), "--mixed-mining"),
            )
            for i, cid in enumerate(LOCAL_CHAINS)
        ]
        children: list[Child] = []
        try:
            if _start_all(host, port, with_worker, settings, nodes, children, reaper, signals):
                failed = _watch_children(children, signals)
        finally:
            err.print("stopping...")
            stop_children(children, signals.hurry)
            stop_nodes(nodes)
            dev_chains.withdraw(settings.data_path())
        # leaving runtime() stops the embedded services; only then is the watchdog no longer needed
    _release_reaper(reaper)
    if failed is not None:
        raise SystemExit(failed)
    err.print("[green]stopped[/]")
