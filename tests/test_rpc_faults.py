"""RpcClient under faults a real node cannot produce on demand (429, 5xx, timeouts, garbage),
injected through httpx.MockTransport. The normal path runs against anvil in test_rpc_anvil.py."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY

from chains.errors import (
    AllEndpointsFailed,
    LogRangeTooLarge,
    MalformedResponse,
    RpcHttpError,
    RpcRateLimited,
    RpcResponseError,
    RpcServerError,
    classify_rpc_error,
)
from chains.rpc import RpcClient
from chains.rpc_endpoint import parse_retry_after
from chains.rpc_ratelimit import TokenBucket
from chains.rpc_urls import url_label

A = "https://user:pw@a.example/v2/SECRETKEYA?apikey=QSECRET"
B = "https://b.example:8545/SECRETKEYB"
LABEL_A, LABEL_B = "https://a.example:443", "https://b.example:8545"

Reply = httpx.Response | Exception | Callable[[Any], httpx.Response]


class Script:
    """Per-host queue of replies; the last reply repeats. Records (host, decoded body) per request."""

    def __init__(self, **per_host: list[Reply]) -> None:
        self.per_host = {h.replace("_", "."): list(r) for h, r in per_host.items()}
        self.seen: list[tuple[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.seen.append((request.url.host, body))
        queue = self.per_host[request.url.host]
        reply = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(reply, Exception):
            raise reply
        if callable(reply):
            return reply(body)
        return reply

    def hosts(self) -> list[str]:
        return [h for h, _ in self.seen]


def ok(result: Any) -> Callable[[Any], httpx.Response]:
    """Echo the request id(s) back with ``result``."""

    def reply(body: Any) -> httpx.Response:
        if isinstance(body, list):
            return httpx.Response(200, json=[{"jsonrpc": "2.0", "id": i["id"], "result": result} for i in body])
        return httpx.Response(200, json={"jsonrpc": "2.0", "id": body["id"], "result": result})

    return reply


def rpc_error(code: int, message: str, status: int = 200) -> Callable[[Any], httpx.Response]:
    return lambda body: httpx.Response(
        status, json={"jsonrpc": "2.0", "id": body["id"], "error": {"code": code, "message": message}}
    )


def make_client(script: Script, urls: list[str] | None = None, **kw: Any) -> RpcClient:
    kw.setdefault("backoff_base", 0.001)
    kw.setdefault("chain_id", 1)
    return RpcClient(urls or [A], transport=httpx.MockTransport(script), **kw)


async def test_429_honours_retry_after_then_succeeds() -> None:
    script = Script(a_example=[httpx.Response(429, headers={"Retry-After": "0.3"}), ok("0x10")])
    async with make_client(script) as client:
        started = time.monotonic()
        assert await client.block_number() == 16
        assert time.monotonic() - started >= 0.29
    assert len(script.seen) == 2


async def test_503_then_success_is_retried() -> None:
    script = Script(a_example=[httpx.Response(503, text="upstream down"), ok("0x1")])
    async with make_client(script) as client:
        assert await client.call("eth_chainId") == "0x1"
    assert len(script.seen) == 2


async def test_5xx_with_json_rpc_error_body_is_classified_from_the_body() -> None:
    script = Script(a_example=[rpc_error(-32000, "header not found", status=500), ok("0x2")])
    async with make_client(script) as client:
        assert await client.call("eth_getBlockByNumber", ["0x5", False]) == "0x2"
    assert len(script.seen) == 2


async def test_timeout_fails_over_and_remembers_the_healthy_url() -> None:
    script = Script(a_example=[httpx.ReadTimeout("slow")], b_example=[ok("0x5")])
    async with make_client(script, [A, B]) as client:
        assert await client.block_number() == 5
        assert client.current_endpoint == LABEL_B
        assert await client.block_number() == 5
    assert script.hosts() == ["a.example", "b.example", "b.example"]


async def test_failover_to_a_fresh_url_does_not_sleep() -> None:
    script = Script(a_example=[httpx.ConnectError("refused")], b_example=[ok("0x5")])
    async with make_client(script, [A, B], backoff_base=5.0) as client:
        started = time.monotonic()
        await client.block_number()
        assert time.monotonic() - started < 2.0  # a backoff sleep would take >= 2.5 s


async def test_html_with_status_200_fails_over_to_the_next_url() -> None:
    script = Script(a_example=[httpx.Response(200, text="<html>gateway</html>")], b_example=[ok("0x1")])
    async with make_client(script, [A, B]) as client:
        assert await client.block_number() == 1
        assert client.current_endpoint == LABEL_B
    assert script.hosts() == ["a.example", "b.example"]


async def test_mismatched_response_id_is_malformed_and_retried() -> None:
    script = Script(
        a_example=[lambda b: httpx.Response(200, json={"jsonrpc": "2.0", "id": 999, "result": "0x1"}), ok("0x2")]
    )
    async with make_client(script) as client:
        assert await client.block_number() == 2
    assert len(script.seen) == 2


async def test_a_malformed_reply_on_every_attempt_ends_in_all_endpoints_failed() -> None:
    script = Script(a_example=[httpx.Response(200, text='{"jsonrpc": "2.0", "resu')])
    async with make_client(script, max_retries=2) as client:
        with pytest.raises(AllEndpointsFailed) as exc:
            await client.block_number()
    assert isinstance(exc.value.last_error, MalformedResponse) and len(script.seen) == 3


async def test_non_idempotent_method_is_never_retried() -> None:
    script = Script(a_example=[httpx.Response(503)], b_example=[ok("0xhash")])
    async with make_client(script, [A, B]) as client:
        with pytest.raises(RpcServerError):
            await client.send_raw_transaction("0x02f8")
    assert script.hosts() == ["a.example"]


async def test_http_401_fails_over_to_the_next_url() -> None:
    script = Script(a_example=[httpx.Response(401, text="invalid api key")], b_example=[ok("0x1")])
    async with make_client(script, [A, B]) as client:
        assert await client.block_number() == 1
    assert script.hosts() == ["a.example", "b.example"]


async def test_http_403_on_the_only_url_is_retried_then_all_endpoints_failed() -> None:
    script = Script(a_example=[httpx.Response(403, text="forbidden")])
    async with make_client(script, max_retries=1) as client:
        with pytest.raises(AllEndpointsFailed) as exc:
            await client.block_number()
    assert isinstance(exc.value.last_error, RpcHttpError) and exc.value.last_error.status_code == 403
    assert len(script.seen) == 2


async def test_json_rpc_revert_is_fatal_with_code_and_message() -> None:
    # Some nodes answer reverts with HTTP 500; the JSON-RPC body decides, not the status.
    script = Script(a_example=[rpc_error(3, "execution reverted: paused", status=500)])
    async with make_client(script) as client:
        with pytest.raises(RpcResponseError) as exc:
            await client.eth_call("0x" + "11" * 20, "0x")
    assert exc.value.code == 3 and "paused" in exc.value.rpc_message
    assert len(script.seen) == 1


async def test_all_endpoints_failing_lists_redacted_urls() -> None:
    script = Script(a_example=[httpx.Response(502)], b_example=[httpx.ConnectError("refused")])
    async with make_client(script, [A, B], max_retries=3) as client:
        with pytest.raises(AllEndpointsFailed) as exc:
            await client.block_number()
    err = exc.value
    assert set(err.errors) == {LABEL_A, LABEL_B}
    assert isinstance(err.errors[LABEL_A], RpcServerError)
    text = str(err) + repr(err.errors)
    assert LABEL_A in text and LABEL_B in text
    for secret in ("SECRETKEY", "QSECRET", "pw@", "/v2/"):
        assert secret not in text
    assert len(script.seen) == 4  # max_retries + 1 attempts, alternating URLs
    assert script.hosts() == ["a.example", "b.example", "a.example", "b.example"]


async def test_json_rpc_rate_limit_error_is_retried() -> None:
    script = Script(a_example=[rpc_error(-32005, "daily request count exceeded, request rate limited"), ok("0x7")])
    async with make_client(script) as client:
        assert await client.block_number() == 7


async def test_range_limit_error_is_raised_not_retried() -> None:
    script = Script(
        a_example=[rpc_error(-32005, "query returned more than 10000 results. Try with this block range [0x10, 0x1f].")]
    )
    async with make_client(script) as client:
        with pytest.raises(LogRangeTooLarge) as exc:
            await client.get_logs(None, None, 16, 100)
    assert exc.value.suggested_range == (16, 31)
    assert len(script.seen) == 1


# --- batches -------------------------------------------------------------------------------------


async def test_batch_matches_results_by_id_and_splits_into_chunks() -> None:
    def reversed_echo(body: list[dict[str, Any]]) -> httpx.Response:
        return httpx.Response(
            200, json=[{"jsonrpc": "2.0", "id": i["id"], "result": i["params"][0]} for i in reversed(body)]
        )

    script = Script(a_example=[reversed_echo])
    async with make_client(script, batch_size=100) as client:
        results = await client.batch([("eth_getBlockByNumber", [hex(n), False]) for n in range(250)])
    assert results == [hex(n) for n in range(250)]
    assert sorted(len(b) for _, b in script.seen) == [50, 100, 100]


async def test_batch_item_error_raises_its_type_or_is_returned_in_place() -> None:
    def mixed(body: list[dict[str, Any]]) -> httpx.Response:
        out = []
        for i in body:
            if i["method"] == "eth_call":
                out.append({"jsonrpc": "2.0", "id": i["id"], "error": {"code": -32602, "message": "invalid params"}})
            else:
                out.append({"jsonrpc": "2.0", "id": i["id"], "result": "0x1"})
        return httpx.Response(200, json=out)

    calls = [("eth_blockNumber", []), ("eth_call", [{}, "latest"]), ("eth_chainId", [])]
    async with make_client(Script(a_example=[mixed])) as client:
        with pytest.raises(RpcResponseError):
            await client.batch(calls)
        results = await client.batch(calls, return_exceptions=True)
    assert results[0] == "0x1" and results[2] == "0x1"
    assert isinstance(results[1], RpcResponseError) and results[1].code == -32602


async def test_batch_retries_only_the_items_that_failed_transiently() -> None:
    flaky = {"left": 1}

    def first_time_header_not_found(body: list[dict[str, Any]]) -> httpx.Response:
        out = []
        for i in body:
            if i["params"][0] == "0x2" and flaky["left"]:
                flaky["left"] -= 1
                out.append({"jsonrpc": "2.0", "id": i["id"], "error": {"code": -32000, "message": "header not found"}})
            else:
                out.append(
                    {
                        "jsonrpc": "2.0",
                        "id": i["id"],
                        "result": {"number": i["params"][0], "hash": "0x1", "parentHash": "0x0"},
                    }
                )
        return httpx.Response(200, json=out)

    script = Script(a_example=[first_time_header_not_found])
    async with make_client(script) as client:
        blocks = await client.get_blocks([1, 2, 3])
    assert [b["number"] for b in blocks] == ["0x1", "0x2", "0x3"]
    assert [len(b) for _, b in script.seen] == [3, 1]


async def test_batch_refused_as_a_whole_is_classified() -> None:
    script = Script(
        a_example=[
            httpx.Response(
                200, json={"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "batch too large"}}
            )
        ]
    )
    async with make_client(script) as client:
        with pytest.raises(RpcResponseError):
            await client.batch([("eth_blockNumber", [])])


# --- pieces --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "message",
    [
        "Log response size exceeded. You can make eth_getLogs requests with up to a 2K block range",
        "query returned more than 10000 results",
        "block range is too large",
        "exceed maximum block range: 5000",
        "limit exceeded",
        "query timeout exceeded",
        "response size should not greater than 10000000 bytes",
    ],
)
def test_provider_range_messages_are_log_range_too_large(message: str) -> None:
    err = classify_rpc_error({"code": -32000, "message": message}, method="eth_getLogs", url=LABEL_A)
    assert isinstance(err, LogRangeTooLarge)
    # The same words on another method are not about log ranges.
    other = classify_rpc_error({"code": -32000, "message": message}, method="eth_call", url=LABEL_A)
    assert not isinstance(other, LogRangeTooLarge)


def test_code_32005_without_a_known_message_is_a_range_error_for_get_logs() -> None:
    err = classify_rpc_error({"code": -32005, "message": "something new"}, method="eth_getLogs", url=None)
    assert isinstance(err, LogRangeTooLarge)
    assert isinstance(classify_rpc_error({"code": -32005, "message": "x"}, method="eth_call", url=None), RpcRateLimited)


def test_url_label_strips_credentials_paths_and_queries() -> None:
    assert url_label(A) == LABEL_A
    assert url_label(B) == LABEL_B
    assert url_label("http://127.0.0.1:8545") == "http://127.0.0.1:8545"
    assert url_label("http://[::1]:8545/x") == "http://[::1]:8545"
    assert url_label("https://h:notaport/key") == "invalid-url"


def test_retry_after_parsing() -> None:
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after("9999") == 60.0  # capped
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_token_bucket_allows_a_burst_then_paces() -> None:
    bucket = TokenBucket(rate=10, burst=3)
    waits = [bucket.reserve(now=100.0) for _ in range(5)]
    assert waits[:3] == [0.0, 0.0, 0.0]
    assert waits[3] == pytest.approx(0.1) and waits[4] == pytest.approx(0.2)
    assert bucket.reserve(now=101.0) == 0.0  # refilled


async def test_rate_limit_per_url_paces_requests() -> None:
    script = Script(a_example=[ok("0x1")])
    async with make_client(script, rate_limit_per_url=20) as client:
        started = time.monotonic()
        for _ in range(25):  # burst of 20, then 5 more at 20/s
            await client.block_number()
        assert time.monotonic() - started >= 0.2


async def test_metrics_are_labelled_without_secrets() -> None:
    def sample(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    before_req = sample("rwa_rpc_requests_total", chain_id="1", method="eth_blockNumber", url=LABEL_A)
    before_err = sample(
        "rwa_rpc_errors_total", chain_id="1", method="eth_blockNumber", url=LABEL_A, kind="server_error"
    )
    script = Script(a_example=[httpx.Response(503), ok("0x1")])
    async with make_client(script) as client:
        await client.block_number()
    assert sample("rwa_rpc_requests_total", chain_id="1", method="eth_blockNumber", url=LABEL_A) == before_req + 2
    assert (
        sample("rwa_rpc_errors_total", chain_id="1", method="eth_blockNumber", url=LABEL_A, kind="server_error")
        == before_err + 1
    )
    assert sample("rwa_rpc_request_seconds_count", chain_id="1", method="eth_blockNumber", url=LABEL_A) >= 2
    for metric in REGISTRY.collect():
        if metric.name.startswith("rwa_rpc"):
            for s in metric.samples:
                assert not any("SECRET" in v or "/v2" in v for v in s.labels.values())
