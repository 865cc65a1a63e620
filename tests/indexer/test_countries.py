"""Investor countries of old IdentityRegistered logs, read at the head (indexer/countries.py).

Many registrations are read with one eth_call of the reader's creation code (two STATICCALLs per registration);
what it cannot answer is read with two plain eth_calls per registration. Either way each registration gets the
same reading: the head's country when the investor is still registered there under the logged identity
(LATEST), else UNKNOWN.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import httpx
import pytest
from eth_utils import to_checksum_address

from chains.anvil import AnvilNode
from chains.deploy import transact
from chains.rpc import RpcClient
from indexer import countries
from indexer.countries import LATEST, UNKNOWN, CountryReading, read_countries
from tests.indexer.conftest import deploy
from tests.indexer.scenario import run_scenario


class CountingClient(RpcClient):
    """Counts the eth_calls sent, and which of them were the reader's (no "to")."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.plain = self.reader = 0

    async def batch(self, calls: Sequence[tuple[str, Sequence[Any]]], **kwargs: Any) -> list[Any]:
        for method, params in calls:
            if method == "eth_call":
                if "to" in params[0]:
                    self.plain += 1
                else:
                    self.reader += 1
        return await super().batch(calls, **kwargs)


class NoCreationCalls(httpx.AsyncBaseTransport):
    """Forwards to the node, except an eth_call without "to", answered the way a node refusing it might."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.refused = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        payload = json.loads(await request.aread())
        items = payload if isinstance(payload, list) else [payload]
        if not any(i["method"] == "eth_call" and "to" not in i["params"][0] for i in items):
            return await self.inner.handle_async_request(request)
        self.refused += 1
        error = {"code": -32602, "message": "invalid argument 0: missing 'to'"}
        out = [{"jsonrpc": "2.0", "id": i["id"], "error": error} for i in items]
        return httpx.Response(200, json=out if isinstance(payload, list) else out[0])

    async def aclose(self) -> None:
        await self.inner.aclose()


async def _registrations(node: AnvilNode) -> tuple[list[dict[str, Any]], dict[str, str], str]:
    """The scenario's registrations (alice, bob, carol, erin; bob's country updated, erin removed, alice recovered to
    dave), then frank
    registered, removed and registered again under another identity; the registry's IdentityRegistered logs,
    with the head 100 blocks above them (old: read at the head)."""
    d = await deploy(node.url)
    w = await run_scenario(d)
    frank = d.accounts[6]
    registry = d.stack.registry
    await transact(registry.functions.registerIdentity(frank, to_checksum_address(f"0x{0x1DF01:040x}"), 250), d.agent)
    await transact(registry.functions.deleteIdentity(frank), d.agent)
    await transact(registry.functions.registerIdentity(frank, to_checksum_address(f"0x{0x1DF02:040x}"), 124), d.agent)
    node.mine(countries.RECENT_BLOCKS + 36)
    async with RpcClient([node.url], chain_id=1) as client:
        logs = await client.get_logs(
            [registry.address], [[countries.BY_NAME["IdentityRegistered"].topic0]], d.start_block, node.block_number()
        )
    return logs, {**w, "frank": frank}, registry.address


def _by_investor(logs: list[dict[str, Any]], got: dict[tuple[str, int], CountryReading]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for lg in logs:
        r = got[(lg["blockHash"], int(lg["logIndex"], 16))]
        out.setdefault(to_checksum_address("0x" + lg["topics"][1][-40:]), []).append((r.country, r.source))
    return out


def _expected(w: dict[str, str]) -> dict[str, list[Any]]:
    return {
        w["alice"]: [(None, UNKNOWN)],  # recovered to dave since: no longer registered
        w["dave"]: [(250, LATEST)],  # registered by the recovery under alice's identity
        w["bob"]: [(40, LATEST)],  # today's country: CountryUpdated came later
        w["carol"]: [(840, LATEST)],
        w["erin"]: [(None, UNKNOWN)],  # removed since
        w["frank"]: [(None, UNKNOWN), (124, LATEST)],  # only the current registration is read
    }


async def test_one_reader_call_reads_every_registration(node: AnvilNode) -> None:
    logs, w, _ = await _registrations(node)
    async with CountingClient([node.url], chain_id=1) as client:
        got = await read_countries(client, logs)
    assert len(got) == len(logs) == 7
    assert _by_investor(logs, got) == _expected(w)
    assert (client.reader, client.plain) == (1, 0)
    assert {r.block for r in got.values() if r.source == LATEST} == {node.block_number()}


async def test_registrations_over_several_reader_calls_keep_their_order(
    node: AnvilNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    logs, w, _ = await _registrations(node)
    monkeypatch.setattr(countries, "READS_PER_CALL", 4)
    async with CountingClient([node.url], chain_id=1) as client:
        got = await read_countries(client, logs)
    assert _by_investor(logs, got) == _expected(w)
    assert (client.reader, client.plain) == (2, 0)


async def test_a_group_the_reader_cannot_answer_is_read_call_by_call(
    node: AnvilNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A registration log of an account without code (the reader's STATICCALL gets no word back): its group
    reverts and is read the plain way, where the empty answers make it UNKNOWN; the other group still reads
    in one call."""
    logs, w, _ = await _registrations(node)
    stranger = {**logs[0], "address": to_checksum_address(f"0x{0xBEEF:040x}"), "logIndex": "0x77"}
    monkeypatch.setattr(countries, "READS_PER_CALL", 4)
    async with CountingClient([node.url], chain_id=1) as client:
        got = await read_countries(client, [*logs, stranger])
    assert got[(stranger["blockHash"], 0x77)] == CountryReading(None, UNKNOWN, None)
    del got[(stranger["blockHash"], 0x77)]
    assert _by_investor(logs, got) == _expected(w)
    assert client.reader == 2 and client.plain == 2 * 4  # the second group (3 logs + the stranger's) call by call


async def test_a_node_refusing_creation_calls_gets_plain_calls(node: AnvilNode) -> None:
    logs, w, _ = await _registrations(node)
    transport = NoCreationCalls()
    async with CountingClient([node.url], chain_id=1, transport=transport) as client:
        got = await read_countries(client, logs)
    assert transport.refused >= 1
    assert _by_investor(logs, got) == _expected(w)
    assert client.plain == 2 * len(logs)


def test_the_reader_fits_the_creation_limits() -> None:
    """EIP-170 caps the output (returned as code) at 24,576 bytes: one word plus two per registration;
    EIP-3860 caps the creation code with its arguments at 49,152 bytes."""
    assert 32 + 64 * countries.READS_PER_CALL <= 24_576
    assert len(countries.READER_CODE) // 2 + 64 * countries.READS_PER_CALL <= 49_152
