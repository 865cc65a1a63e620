"""Backfilling identity registrations older than the node's state window (issue 13, item 4).

A node that keeps only recent state answers eth_call at an old block with an error ("BlockOutOfRangeError:
block height is 64 but requested was 7" from anvil --prune-history, "missing trie node" from geth). The
backfill must complete: the country is read at a recent block when the registration is still the current
one there, else recorded as unknown; each identity row says where its country came from.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from aiohttp import web
from eth_utils import to_checksum_address

from chains.anvil import AnvilNode, free_port
from chains.deploy import transact
from core.settings import Settings
from indexer.service import backfill
from tests.fixtures.db import reloaded
from tests.indexer.conftest import TEST_CONFIG, add_tokens, assert_matches_chain, deploy, table_rows
from tests.indexer.scenario import run_scenario

IDENTITIES = "SELECT investor, identity, country, registered, country_source FROM identities ORDER BY investor"


class StateWindowProxy:
    """In front of an archive anvil: eth_call at a block (number or hash) older than ``window`` blocks below
    the head fails the way a geth full node fails; everything else passes through."""

    def __init__(self, upstream: str, window: int) -> None:
        self.upstream, self.window, self.port, self.refused = upstream, window, free_port(), 0
        self._http = httpx.AsyncClient(timeout=10)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> StateWindowProxy:
        app = web.Application()
        app.router.add_post("/", self.handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        await self._http.aclose()

    async def _rpc(self, method: str, *params: Any) -> Any:
        r = await self._http.post(self.upstream, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
        return r.json()["result"]

    async def _too_old(self, item: dict[str, Any]) -> bool:
        if item.get("method") != "eth_call" or len(item.get("params", [])) < 2:
            return False
        at = item["params"][1]
        if isinstance(at, dict) and "blockHash" in at:
            blk = await self._rpc("eth_getBlockByHash", at["blockHash"], False)
            number = int(blk["number"], 16)
        elif isinstance(at, str) and at.startswith("0x"):
            number = int(at, 16)
        else:
            return False
        return number < int(await self._rpc("eth_blockNumber"), 16) - self.window

    async def _answer(self, item: dict[str, Any]) -> dict[str, Any]:
        if await self._too_old(item):
            self.refused += 1
            return {
                "jsonrpc": "2.0",
                "id": item["id"],
                "error": {"code": -32000, "message": "missing trie node 5a1f0c2e (path ) state is not available"},
            }
        r = await self._http.post(self.upstream, json=item)
        return r.json()

    async def handle(self, request: web.Request) -> web.Response:
        payload = json.loads(await request.read())
        if isinstance(payload, list):
            return web.json_response([await self._answer(item) for item in payload])
        return web.json_response(await self._answer(payload))


async def _story(node_url: str, idx_db: str) -> tuple[Any, dict[str, str], str, int]:
    """The scenario (4 registrations, a country update, a removal), then frank registered and, after the
    backfill's end block, removed and re-registered under another identity."""
    d = await deploy(node_url)
    await add_tokens(idx_db, 1, d)
    w = await run_scenario(d)
    frank = d.accounts[6]
    registry = d.stack.registry
    await transact(registry.functions.registerIdentity(frank, to_checksum_address(f"0x{0x1DF01:040x}"), 250), d.agent)
    end = await d.w3.eth.block_number
    await transact(registry.functions.deleteIdentity(frank), d.agent)
    await transact(registry.functions.registerIdentity(frank, to_checksum_address(f"0x{0x1DF02:040x}"), 124), d.agent)
    return d, w, frank, end


async def _check(idx_db: str, d: Any, w: dict[str, str], frank: str) -> None:
    rows = {r[0]: r for r in await table_rows(idx_db, IDENTITIES)}
    alice_like = [rows[w[n]] for n in ("alice", "carol") if rows[w[n]][3]]
    assert alice_like and all(r[4] == "LATEST" for r in alice_like), rows
    assert rows[w["bob"]][2:] == (40, True, "EVENT")  # CountryUpdated carries its country
    assert rows[w["erin"]][3] is False
    # frank's registration as of the backfill's end is no longer the node's current one: unknown, not a guess
    assert rows[frank][1:] == (to_checksum_address(f"0x{0x1DF01:040x}"), None, True, "UNKNOWN")
    registered = await table_rows(
        idx_db, "SELECT args FROM chain_events WHERE event = 'IdentityRegistered' AND subject = $1", frank
    )
    assert json.loads(registered[0][0])["countrySource"] == "UNKNOWN"


async def test_backfill_past_anvils_state_window(
    idx_db: str, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real node that keeps 5 states: the error is anvil's own BlockOutOfRangeError."""
    with AnvilNode(1, extra_args=["--prune-history", "5"]) as pruned:
        monkeypatch.setenv("RPC_URLS_1", pruned.url)
        settings = reloaded(settings)  # per-chain URLs are read when settings are built
        d, w, frank, end = await _story(pruned.url, idx_db)
        pruned.mine(20)
        old = pruned.rpc("eth_getBlockByNumber", hex(d.start_block), False)["hash"]
        with pytest.raises(Exception, match="BlockOutOfRange"):
            pruned.rpc("eth_call", {"to": d.stack.registry.address, "data": "0x"}, {"blockHash": old})
        result = await backfill(settings, 1, d.start_block, end, config=TEST_CONFIG)
        assert result.to_block == end and not result.stopped and result.events > 0
        await _check(idx_db, d, w, frank)
        # the rest of the history: frank's current registration is read at a recent block, the chain agrees
        await backfill(settings, 1, end + 1, pruned.block_number() - 8, config=TEST_CONFIG)
        rows = {r[0]: r for r in await table_rows(idx_db, IDENTITIES)}
        assert rows[frank][2:] == (124, True, "LATEST")
        await assert_matches_chain(idx_db, 1, d)


async def test_backfill_through_a_full_node_refusing_old_state(
    node: AnvilNode, idx_db: str, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """geth's wording ("missing trie node"), injected by a proxy in front of an archive anvil."""
    d, w, frank, end = await _story(node.url, idx_db)
    node.mine(20)
    proxy = await StateWindowProxy(node.url, window=16).start()
    try:
        monkeypatch.setenv("RPC_URLS_1", proxy.url)
        settings = reloaded(settings)  # per-chain URLs are read when settings are built
        result = await backfill(settings, 1, d.start_block, end, config=TEST_CONFIG)
        assert not result.stopped and proxy.refused >= 5
        await _check(idx_db, d, w, frank)
    finally:
        await proxy.stop()
