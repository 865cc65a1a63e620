"""Local EVM chains: launch ``anvil`` nodes and drive its test-only RPC methods.

``AnvilNode`` owns one anvil child process on 127.0.0.1 (a free port unless given). Finality tags
are meaningful: with ``slots_in_an_epoch=4`` anvil reports ``safe`` = head - 4 and ``finalized`` =
head - 8, so reorg and finality code paths can be exercised locally.

Binary lookup: ``$ANVIL_BIN``, else ``<repo>/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil``,
else ``anvil`` on PATH.

The anvil_/evm_ helpers exist twice: as sync methods on ``AnvilNode`` (fixtures, CLI) and as async
functions taking an RPC url (async tests, the dev seeder).
"""

from __future__ import annotations

import atexit
import itertools
import os
import shutil
import socket
import subprocess
import time
import weakref
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

REPO_ROOT = Path(__file__).resolve().parent.parent
NPM_ANVIL = REPO_ROOT / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"
LOCAL_CHAIN_IDS: tuple[int, ...] = (1, 137, 56)

# A reorg replacement: (tx, block offset within the new blocks). tx is a raw signed tx hex string
# or a JSON transaction request ({"from": ..., "to": ..., "data": ...}) for an unlocked account.
ReorgTx = tuple[str | dict[str, Any], int]


class AnvilError(RuntimeError):
    """anvil is missing, failed to start, or answered an RPC call with an error."""


def find_anvil_binary() -> str:
    env = os.environ.get("ANVIL_BIN")
    if env:
        if not (os.path.isfile(env) and os.access(env, os.X_OK)):
            raise AnvilError(f"ANVIL_BIN={env!r} is not an executable file")
        return env
    if NPM_ANVIL.is_file():
        return str(NPM_ANVIL)
    on_path = shutil.which("anvil")
    if on_path:
        return on_path
    raise AnvilError(
        f"anvil binary not found (looked at $ANVIL_BIN, {NPM_ANVIL}, PATH): "
        f"run `npm ci --ignore-scripts` in {REPO_ROOT} to install it"
    )


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


_ids = itertools.count(1)


def _payload(method: str, params: Sequence[Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": next(_ids), "method": method, "params": list(params)}


def _result(method: str, reply: httpx.Response) -> Any:
    reply.raise_for_status()
    body = reply.json()
    if "error" in body:
        raise AnvilError(f"{method} failed: {body['error']}")
    return body["result"]


def _reorg_params(depth: int, txs: Iterable[ReorgTx]) -> list[Any]:
    return [depth, [[tx, offset] for tx, offset in txs]]


# Coinbases the replacement blocks of a reorg are mined with: anvil re-mines a replaced block with the
# same timestamp, and once the base fee of empty blocks has sunk to its floor (7 wei, ~150 blocks in)
# an empty replacement block was the same block again, same hash. The first replacement block gets a
# miner other than the replaced block's, so it and every block after it (they name it as parent) differ.
_REORG_COINBASES = ("0x00000000000000000000000000000000000000f1", "0x00000000000000000000000000000000000000f2")


def _reorg_coinbase(replaced: dict[str, Any] | None) -> str:
    first, second = _REORG_COINBASES
    return second if replaced is not None and replaced["miner"].lower() == first else first


# Nodes still running at interpreter exit (a test run or `rwa dev` ended without stop()) are
# stopped then, so no anvil outlives its parent after a normal exit or Ctrl-C.
_running: weakref.WeakSet[AnvilNode] = weakref.WeakSet()


@atexit.register
def _stop_leftover_nodes() -> None:
    for node in list(_running):
        node.stop(timeout=2.0)


class AnvilNode:
    """One anvil process. Use as a context manager or call ``start()`` / ``stop()``."""

    def __init__(
        self,
        chain_id: int,
        port: int | None = None,
        host: str = "127.0.0.1",
        block_time: float | None = None,
        slots_in_an_epoch: int = 4,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.chain_id = chain_id
        self.host = host
        self.block_time = block_time  # None: automine, one block per transaction
        self.slots_in_an_epoch = slots_in_an_epoch
        self.extra_args = tuple(extra_args)
        self._requested_port = port
        self.port: int = port or 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._client: httpx.Client | None = None

    @property
    def url(self) -> str:
        if not self.port:
            raise AnvilError("node not started yet: its port is unknown")
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _command(self) -> list[str]:
        cmd = [
            find_anvil_binary(),
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--chain-id",
            str(self.chain_id),
            "--slots-in-an-epoch",
            str(self.slots_in_an_epoch),
            "--silent",
        ]
        if self.block_time is not None:
            cmd += ["--block-time", str(self.block_time)]
        return cmd + list(self.extra_args)

    def start(self, timeout: float = 10.0) -> AnvilNode:
        if self.running:
            return self
        # A free port can be taken between probing and binding (other processes start nodes too):
        # retry with a new port when the child exits early and the port was ours to choose.
        attempts = 1 if self._requested_port else 3
        last_error = ""
        for _ in range(attempts):
            self.port = self._requested_port or free_port(self.host)
            self._proc = subprocess.Popen(
                self._command(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
            ok, last_error = self._wait_ready(timeout)
            if ok:
                self._client = httpx.Client(base_url=self.url, timeout=30.0)
                _running.add(self)
                return self
            self._terminate()
        raise AnvilError(f"anvil (chain {self.chain_id}) did not start on {self.host}:{self.port}: {last_error}")

    def _wait_ready(self, timeout: float) -> tuple[bool, str]:
        assert self._proc is not None
        deadline = time.monotonic() + timeout
        url = f"http://{self.host}:{self.port}"
        with httpx.Client(timeout=1.0) as probe:
            while time.monotonic() < deadline:
                if self._proc.poll() is not None:
                    err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
                    return False, f"exited with {self._proc.returncode}: {err.strip()[-500:]}"
                try:
                    reply = probe.post(url, json=_payload("eth_chainId", []))
                    if int(_result("eth_chainId", reply), 16) == self.chain_id:
                        return True, ""
                except (httpx.HTTPError, AnvilError, ValueError):
                    pass
                time.sleep(0.05)
        return False, f"no RPC answer within {timeout}s"

    def _terminate(self, timeout: float = 5.0) -> None:
        _running.discard(self)
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stderr:
            proc.stderr.close()

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate this node's own process (SIGTERM, then SIGKILL after ``timeout``)."""
        if self._client is not None:
            self._client.close()
            self._client = None
        self._terminate(timeout)

    def __enter__(self) -> AnvilNode:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = self.url if self.running else "stopped"
        return f"AnvilNode(chain_id={self.chain_id}, {state})"

    # --- sync RPC helpers -----------------------------------------------------------------------

    def rpc(self, method: str, *params: Any) -> Any:
        if self._client is None:
            raise AnvilError("node is not running")
        return _result(method, self._client.post("", json=_payload(method, params)))

    def block_number(self) -> int:
        return int(self.rpc("eth_blockNumber"), 16)

    def mine(self, blocks: int = 1) -> None:
        self.rpc("anvil_mine", hex(blocks))

    def reorg(self, depth: int, txs: Iterable[ReorgTx] = ()) -> None:
        """Replace the last ``depth`` blocks (same height, new hashes: mined by another coinbase, the
        node's own coinbase restored afterwards); their txs are dropped."""
        params = _reorg_params(depth, txs)
        coinbase = self.rpc("eth_coinbase")
        replaced = self.rpc("eth_getBlockByNumber", hex(self.block_number() - depth + 1), False)
        self.rpc("anvil_setCoinbase", _reorg_coinbase(replaced))
        try:
            self.rpc("anvil_reorg", *params)
        finally:
            self.rpc("anvil_setCoinbase", coinbase)

    def snapshot(self) -> str:
        return str(self.rpc("evm_snapshot"))

    def revert(self, snapshot_id: str) -> bool:
        return bool(self.rpc("evm_revert", snapshot_id))

    def set_next_block_timestamp(self, timestamp: int) -> None:
        self.rpc("evm_setNextBlockTimestamp", timestamp)

    def set_automine(self, enabled: bool) -> None:
        self.rpc("evm_setAutomine", enabled)


def start_local_chains(chain_ids: Iterable[int] = LOCAL_CHAIN_IDS, **kwargs: Any) -> dict[int, AnvilNode]:
    """Start one node per chain id; on failure the nodes already started are stopped again."""
    nodes: dict[int, AnvilNode] = {}
    try:
        for chain_id in chain_ids:
            nodes[chain_id] = AnvilNode(chain_id, **kwargs).start()
    except BaseException:
        stop_nodes(nodes.values())
        raise
    return nodes


def stop_nodes(nodes: Iterable[AnvilNode]) -> None:
    for node in nodes:
        node.stop()


# --- async RPC helpers (take the node's url) ----------------------------------------------------


async def rpc(url: str, method: str, *params: Any, client: httpx.AsyncClient | None = None) -> Any:
    if client is not None:
        return _result(method, await client.post(url, json=_payload(method, params)))
    async with httpx.AsyncClient(timeout=30.0) as own:
        return _result(method, await own.post(url, json=_payload(method, params)))


async def mine(url: str, blocks: int = 1) -> None:
    await rpc(url, "anvil_mine", hex(blocks))


async def reorg(url: str, depth: int, txs: Iterable[ReorgTx] = ()) -> None:
    """Replace the last ``depth`` blocks (same height, new hashes), as ``AnvilNode.reorg``."""
    params = _reorg_params(depth, txs)
    async with httpx.AsyncClient(timeout=30.0) as client:
        coinbase = await rpc(url, "eth_coinbase", client=client)
        head = int(await rpc(url, "eth_blockNumber", client=client), 16)
        replaced = await rpc(url, "eth_getBlockByNumber", hex(head - depth + 1), False, client=client)
        await rpc(url, "anvil_setCoinbase", _reorg_coinbase(replaced), client=client)
        try:
            await rpc(url, "anvil_reorg", *params, client=client)
        finally:
            await rpc(url, "anvil_setCoinbase", coinbase, client=client)


async def snapshot(url: str) -> str:
    return str(await rpc(url, "evm_snapshot"))


async def revert(url: str, snapshot_id: str) -> bool:
    return bool(await rpc(url, "evm_revert", snapshot_id))


async def set_next_block_timestamp(url: str, timestamp: int) -> None:
    await rpc(url, "evm_setNextBlockTimestamp", timestamp)


async def set_automine(url: str, enabled: bool) -> None:
    await rpc(url, "evm_setAutomine", enabled)
