"""AdaptiveLogRange and iter_logs: providers that refuse large ranges (faults injected with
httpx.MockTransport); iter_logs must still cover the range exactly once, in order."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chains.errors import AllEndpointsFailed, LogRangeTooLarge, RpcResponseError
from chains.log_range import AdaptiveLogRange, iter_logs
from chains.registry import get_chain
from chains.rpc import RpcClient

URL = "https://logs.example/v3/KEY"


class RangeLimitedNode:
    """Serves one log per block; refuses spans over ``limit`` blocks with ``message``."""

    def __init__(self, limit: int, message: str, code: int = -32005, *, hint: bool = False, timeout: bool = False):
        self.limit, self.message, self.code, self.hint, self.timeout = limit, message, code, hint, timeout
        self.spans: list[tuple[int, int, bool]] = []  # (from, to, accepted)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        flt = body["params"][0]
        lo, hi = int(flt["fromBlock"], 16), int(flt["toBlock"], 16)
        if hi - lo + 1 > self.limit:
            self.spans.append((lo, hi, False))
            if self.timeout:
                raise httpx.ReadTimeout("scan too slow")
            msg = self.message
            if self.hint:
                msg += f" Try with this block range [{hex(lo)}, {hex(lo + self.limit - 1)}]."
            return httpx.Response(
                200, json={"jsonrpc": "2.0", "id": body["id"], "error": {"code": self.code, "message": msg}}
            )
        self.spans.append((lo, hi, True))
        logs = [{"blockNumber": hex(n), "logIndex": "0x0", "address": flt.get("address")} for n in range(lo, hi + 1)]
        return httpx.Response(200, json={"jsonrpc": "2.0", "id": body["id"], "result": logs})


def client_for(node: RangeLimitedNode, **kw: Any) -> RpcClient:
    return RpcClient([URL], chain_id=1, backoff_base=0.001, transport=httpx.MockTransport(node), **kw)


async def collect(client: RpcClient, lo: int, hi: int, ranger: AdaptiveLogRange) -> list[tuple[int, int, list[Any]]]:
    return [chunk async for chunk in iter_logs(client, "0x" + "ab" * 20, None, lo, hi, ranger)]


def assert_exact_cover(chunks: list[tuple[int, int, list[Any]]], lo: int, hi: int) -> None:
    expected = lo
    for start, end, logs in chunks:
        assert start == expected and start <= end  # no gap, no overlap, in order
        assert [int(entry["blockNumber"], 16) for entry in logs] == list(range(start, end + 1))
        expected = end + 1
    assert expected == hi + 1


PROVIDER_MESSAGES = [
    ("Log response size exceeded. You can make eth_getLogs requests with up to a 2K block range", -32602),
    ("query returned more than 10000 results", -32005),
    ("block range is too large", -32000),
    ("exceed maximum block range: 5000", -32000),
    ("limit exceeded", -32005),
    ("query timeout exceeded", -32000),
    ("response size should not greater than 10000000 bytes", -32000),
    ("", -32005),
]


@pytest.mark.parametrize(("message", "code"), PROVIDER_MESSAGES)
async def test_range_limit_messages_shrink_until_success_and_cover_exactly_once(message: str, code: int) -> None:
    node = RangeLimitedNode(limit=37, message=message, code=code)
    ranger = AdaptiveLogRange(initial=500, floor=1, ceiling=1000, sparse_below=10)
    async with client_for(node) as client:
        chunks = await collect(client, 1000, 2999, ranger)
    assert_exact_cover(chunks, 1000, 2999)
    refused = [s for s in node.spans if not s[2]]
    assert refused, "the provider never refused: the test does not exercise shrinking"
    assert all(hi - lo + 1 <= 37 for lo, hi, ok in node.spans if ok)


async def test_provider_hint_is_used_directly() -> None:
    node = RangeLimitedNode(limit=100, message="query returned more than 10000 results.", hint=True)
    ranger = AdaptiveLogRange(initial=1000, floor=1, ceiling=1000, sparse_below=0)  # never grow
    async with client_for(node) as client:
        chunks = await collect(client, 0, 999, ranger)
    assert_exact_cover(chunks, 0, 999)
    # One refusal, then the hinted span (100) straight away instead of 500, 250, 125, 62.
    assert [s for s in node.spans if not s[2]] == [(0, 999, False)]
    assert node.spans[1] == (0, 99, True)


async def test_timeouts_on_get_logs_halve_the_range() -> None:
    node = RangeLimitedNode(limit=64, message="", timeout=True)
    ranger = AdaptiveLogRange(initial=256, floor=1, ceiling=256, sparse_below=0)
    async with client_for(node, max_retries=0) as client:
        chunks = await collect(client, 0, 511, ranger)
    assert_exact_cover(chunks, 0, 511)
    assert [hi - lo + 1 for lo, hi, ok in node.spans[:3]] == [256, 128, 64]


async def test_refused_at_the_floor_raises() -> None:
    node = RangeLimitedNode(limit=0, message="block range is too large")
    async with client_for(node) as client:
        with pytest.raises(LogRangeTooLarge):
            await collect(client, 10, 20, AdaptiveLogRange(initial=4, floor=1, ceiling=4))
    assert [hi - lo + 1 for lo, hi, _ in node.spans] == [4, 2, 1]


async def test_other_errors_propagate_without_shrinking() -> None:
    def bad_params(request: httpx.Request) -> httpx.Response:
        rid = json.loads(request.content)["id"]
        return httpx.Response(
            200, json={"jsonrpc": "2.0", "id": rid, "error": {"code": -32602, "message": "invalid address"}}
        )

    async with RpcClient([URL], transport=httpx.MockTransport(bad_params)) as client:
        with pytest.raises(RpcResponseError):
            await collect(client, 0, 10, AdaptiveLogRange(initial=8))


async def test_timeouts_on_every_url_count_as_a_timeout() -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow")

    async with RpcClient([URL], backoff_base=0.001, max_retries=1, transport=httpx.MockTransport(slow)) as client:
        with pytest.raises(AllEndpointsFailed) as exc:
            await collect(client, 0, 1, AdaptiveLogRange(initial=2))
    assert exc.value.all_timeouts


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    limit=st.integers(1, 300),
    lo=st.integers(0, 10_000),
    length=st.integers(1, 1500),
    initial=st.integers(1, 2000),
    sparse_below=st.integers(0, 400),
)
async def test_iter_logs_covers_any_range_exactly_once(
    limit: int, lo: int, length: int, initial: int, sparse_below: int
) -> None:
    node = RangeLimitedNode(limit=limit, message="exceed maximum block range: %d" % limit)
    ranger = AdaptiveLogRange(initial=initial, floor=1, ceiling=max(initial, 4000), sparse_below=sparse_below)
    async with client_for(node) as client:
        chunks = await collect(client, lo, lo + length - 1, ranger)
    assert_exact_cover(chunks, lo, lo + length - 1)


async def test_empty_range_yields_nothing() -> None:
    node = RangeLimitedNode(limit=10, message="")
    async with client_for(node) as client:
        assert await collect(client, 5, 4, AdaptiveLogRange(initial=2)) == []
    assert node.spans == []


def test_ranger_grows_when_sparse_and_never_passes_the_ceiling() -> None:
    r = AdaptiveLogRange(initial=100, floor=10, ceiling=300, sparse_below=1000)
    r.observe(100, 5)
    assert r.size == 200
    r.observe(200, 5)
    assert r.size == 300
    r.observe(50, 0)  # a short tail span says nothing about the full size
    assert r.size == 300
    r.observe(300, 5000)  # dense: keep
    assert r.size == 300


def test_ranger_shrinks_to_the_floor_then_refuses() -> None:
    r = AdaptiveLogRange(initial=100, floor=10, ceiling=100)
    assert r.shrink(100) and r.size == 50
    assert r.shrink(30) and r.size == 15  # a short failed span shrinks below it
    assert r.shrink(15) and r.size == 10
    assert not r.shrink(10)


def test_ranger_for_chain_uses_the_spec() -> None:
    r = AdaptiveLogRange.for_chain(get_chain("bsc"))
    assert (r.size, r.floor, r.ceiling) == (5000, 1, 5000)
    with pytest.raises(ValueError):
        AdaptiveLogRange(initial=5, floor=10)
