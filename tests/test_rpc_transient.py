"""Issue 13, item 3: every malformed or refused reply from one provider is transient: retried with backoff
and sent to the next URL, never fatal; a provider serving another chain is dropped from the rotation.
Faults injected with respx (a real node cannot produce them on demand); the classification of JSON-RPC
error objects (transient vs the deterministic answers that must stop) is checked alongside."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import respx

from chains.errors import (
    AllEndpointsFailed,
    BlockUnavailable,
    ChainIdMismatch,
    MalformedResponse,
    RetryableRpcError,
    RpcResponseError,
    RpcServerError,
    classify_rpc_error,
)
from chains.rpc import RpcClient

A = "https://a.example/v2/SECRETA"
B = "https://b.example/v2/SECRETB"
BLOCK = {"number": "0x5", "hash": "0x" + "55" * 32, "parentHash": "0x" + "44" * 32, "timestamp": "0x1"}

Handler = Callable[[dict[str, Any] | list[dict[str, Any]]], httpx.Response]


def answer(result: Any) -> Handler:
    """A healthy node: echoes every id with ``result`` (eth_chainId answers chain 1)."""

    def reply(body: Any) -> httpx.Response:
        def one(item: dict[str, Any]) -> dict[str, Any]:
            res = "0x1" if item["method"] == "eth_chainId" else result
            return {"jsonrpc": "2.0", "id": item["id"], "result": res}

        return httpx.Response(200, json=[one(i) for i in body] if isinstance(body, list) else one(body))

    return reply


def route(mock: respx.MockRouter, url: str, *handlers: Handler) -> list[Any]:
    """Serve ``handlers`` in turn at ``url`` (the last one repeats); returns the bodies received."""
    seen: list[Any] = []
    queue = list(handlers)

    def side_effect(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        seen.append(body)
        handler = queue.pop(0) if len(queue) > 1 else queue[0]
        return handler(body)

    mock.post(url).mock(side_effect=side_effect)
    return seen


def client(*urls: str, **kw: Any) -> RpcClient:
    kw.setdefault("backoff_base", 0.001)
    return RpcClient(list(urls), chain_id=1, **kw)


def raw(text: str, status: int = 200, content_type: str = "application/json") -> Handler:
    return lambda body: httpx.Response(status, text=text, headers={"content-type": content_type})


def json_reply(make: Callable[[Any], Any], status: int = 200) -> Handler:
    return lambda body: httpx.Response(status, json=make(body))


def error(code: int, message: str) -> Handler:
    return json_reply(lambda b: {"jsonrpc": "2.0", "id": b["id"], "error": {"code": code, "message": message}})


# One entry per bad reply a provider (or a proxy/load balancer in front of it) gives.
BAD_REPLIES: dict[str, Handler] = {
    "truncated_json": raw('{"jsonrpc": "2.0", "id": 1, "resu'),
    "not_json": raw("\x00\x01garbage"),
    "html_200": raw("<html><body>502 Bad Gateway</body></html>", content_type="text/html"),
    "missing_result": json_reply(lambda b: {"jsonrpc": "2.0", "id": b["id"]}),
    "wrong_id": json_reply(lambda b: {"jsonrpc": "2.0", "id": b["id"] + 1000, "result": "0x5"}),
    "null_id": json_reply(lambda b: {"jsonrpc": "2.0", "id": None, "result": "0x5"}),
    "internal_error_32603": error(-32603, "internal error"),
    "server_error_32000_unknown": error(-32000, "something went wrong on our side"),
    "method_not_found_on_one_provider": error(-32601, "the method eth_blockNumber does not exist/is not available"),
    "custom_code": error(19, "Temporary internal error. Please retry"),
    "http_401": raw("invalid api key", 401, "text/plain"),
    "http_403": raw("forbidden", 403, "text/plain"),
    "http_404": raw("not found", 404, "text/plain"),
    "http_500_html": raw("<html>oops</html>", 500, "text/html"),
    "result_wrong_shape": json_reply(lambda b: {"jsonrpc": "2.0", "id": b["id"], "result": {"oops": 1}}),
}


@pytest.mark.parametrize("kind", sorted(BAD_REPLIES))
async def test_a_bad_reply_is_retried_on_the_next_url(kind: str) -> None:
    with respx.mock(assert_all_called=False) as mock:
        seen_a = route(mock, A, BAD_REPLIES[kind])
        seen_b = route(mock, B, answer("0x7"))
        async with client(A, B) as c:
            assert await c.block_number() == 7
            assert await c.block_number() == 7  # and the healthy URL is where the next call starts
    assert len(seen_a) == 1 and len(seen_b) == 2


@pytest.mark.parametrize("kind", sorted(BAD_REPLIES))
async def test_a_bad_reply_once_on_the_only_url_is_retried_after_a_backoff(kind: str) -> None:
    with respx.mock() as mock:
        seen = route(mock, A, BAD_REPLIES[kind], answer("0x7"))
        async with client(A) as c:
            assert await c.block_number() == 7
    assert len(seen) == 2


@pytest.mark.parametrize("kind", ["wrong_id", "missing_result", "internal_error_32603", "result_wrong_shape"])
async def test_a_bad_batch_item_is_asked_again_alone(kind: str) -> None:
    """In a batch, one item with a wrong id / no result / a server error is retried; the rest is kept."""
    first = {"done": False}

    def batch(body: list[dict[str, Any]]) -> httpx.Response:
        out = []
        for item in body:
            good = {"jsonrpc": "2.0", "id": item["id"], "result": dict(BLOCK, number=item["params"][0])}
            if item["params"][0] == "0x2" and not first["done"]:
                first["done"] = True
                out.append(
                    {
                        "wrong_id": {"jsonrpc": "2.0", "id": item["id"] + 1000, "result": good["result"]},
                        "missing_result": {"jsonrpc": "2.0", "id": item["id"]},
                        "internal_error_32603": {
                            "jsonrpc": "2.0",
                            "id": item["id"],
                            "error": {"code": -32603, "message": "internal error"},
                        },
                        "result_wrong_shape": {"jsonrpc": "2.0", "id": item["id"], "result": "0x2"},
                    }[kind]
                )
            else:
                out.append(good)
        return httpx.Response(200, json=out)

    with respx.mock() as mock:
        seen = route(mock, A, batch)
        async with client(A) as c:
            blocks = await c.get_blocks([1, 2, 3])
    assert [b["number"] for b in blocks] == ["0x1", "0x2", "0x3"]
    assert [len(body) for body in seen] == [3, 1]


async def test_a_truncated_batch_reply_is_retried() -> None:
    with respx.mock() as mock:
        seen = route(mock, A, raw('[{"jsonrpc": "2.0", "id": 1, "result": {"hash": "0x'), answer(BLOCK))
        async with client(A) as c:
            blocks = await c.get_blocks([5, 6])
    assert all(b["hash"] == BLOCK["hash"] for b in blocks) and len(seen) == 2


async def test_an_error_on_eth_get_logs_only_fails_over() -> None:
    """A provider that serves everything but eth_getLogs (plan limits, a broken log index)."""

    def logs_broken(body: Any) -> httpx.Response:
        if body["method"] == "eth_getLogs":
            return httpx.Response(
                200,
                json={"jsonrpc": "2.0", "id": body["id"], "error": {"code": -32603, "message": "failed to query logs"}},
            )
        return answer("0x10")(body)

    with respx.mock() as mock:
        seen_a = route(mock, A, logs_broken)
        route(mock, B, answer([]))
        async with client(A, B) as c:
            assert await c.block_number() == 16
            assert await c.get_logs(None, None, 1, 2) == []
    assert [b["method"] for b in seen_a] == ["eth_blockNumber", "eth_getLogs"]


async def test_null_for_a_block_that_must_exist_is_block_unavailable_and_failed_over() -> None:
    with respx.mock() as mock:
        route(mock, A, answer(None))
        route(mock, B, answer(BLOCK))
        async with client(A, B) as c:
            assert await c.get_block(5) is None  # plain lookup: null means "no such block"
            assert (await c.get_block(5, require=True))["hash"] == BLOCK["hash"]
    with respx.mock() as mock:
        route(mock, A, answer(None))
        async with client(A, max_retries=2) as c:
            with pytest.raises(AllEndpointsFailed) as exc:
                await c.get_block(5, require=True)
    assert isinstance(exc.value.last_error, BlockUnavailable)


async def test_every_url_failing_transiently_still_ends_in_all_endpoints_failed() -> None:
    with respx.mock() as mock:
        seen = route(mock, A, BAD_REPLIES["html_200"])
        async with client(A, max_retries=3) as c:
            with pytest.raises(AllEndpointsFailed) as exc:
                await c.block_number()
    assert isinstance(exc.value.last_error, MalformedResponse) and len(seen) == 4


# --- wrong chain id ------------------------------------------------------------------------------


def serving_chain(chain_hex: str, result: Any = "0x9") -> Handler:
    def reply(body: Any) -> httpx.Response:
        res = chain_hex if body["method"] == "eth_chainId" else result
        return httpx.Response(200, json={"jsonrpc": "2.0", "id": body["id"], "result": res})

    return reply


async def test_a_url_serving_another_chain_is_dropped_with_a_clear_log(caplog: pytest.LogCaptureFixture) -> None:
    with respx.mock() as mock:
        seen_a = route(mock, A, serving_chain("0x89"))  # Polygon behind an Ethereum URL
        seen_b = route(mock, B, serving_chain("0x1"))
        async with client(A, B, verify_chain=True) as c:
            with caplog.at_level(logging.ERROR, logger="chains.rpc"):
                assert await c.block_number() == 9
                assert await c.block_number() == 9
            assert c.dropped_endpoints == {"https://a.example:443": 137}
            assert c.endpoint_labels == ["https://b.example:443"]
    assert [b["method"] for b in seen_a] == ["eth_chainId"]  # never asked anything else
    assert [b["method"] for b in seen_b] == ["eth_chainId", "eth_blockNumber", "eth_blockNumber"]
    text = caplog.text
    assert "https://a.example:443 serves chain 137, not 1: dropped" in text and "SECRET" not in text


async def test_verify_chain_id_checks_every_url_and_fails_only_when_none_is_left() -> None:
    with respx.mock() as mock:
        route(mock, A, serving_chain("0x89"))
        route(mock, B, serving_chain("0x1"))
        async with client(A, B) as c:
            assert await c.verify_chain_id() == 1
            assert c.endpoint_labels == ["https://b.example:443"]
    with respx.mock() as mock:
        route(mock, A, serving_chain("0x89"))
        route(mock, B, serving_chain("0x38"))
        async with client(A, B) as c:
            with pytest.raises(ChainIdMismatch):
                await c.verify_chain_id()


async def test_a_url_that_cannot_be_checked_yet_is_checked_before_its_first_use() -> None:
    with respx.mock() as mock:
        seen_a = route(mock, A, raw("down", 503, "text/plain"), serving_chain("0x89"))
        route(mock, B, serving_chain("0x1"))
        async with client(A, B) as c:
            assert await c.verify_chain_id() == 1  # A did not answer: kept, unchecked
            assert len(c.endpoint_labels) == 2
            c._current = 0  # make the next call start at A
            assert await c.block_number() == 9  # A is checked first, dropped, B answers
            assert c.dropped_endpoints == {"https://a.example:443": 137}
    assert [b["method"] for b in seen_a] == ["eth_chainId", "eth_chainId"]


# --- classification ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "message", "method", "idempotent", "expected"),
    [
        (-32603, "internal error", "eth_getLogs", True, RpcServerError),
        (-32000, "some new failure", "eth_call", True, RpcServerError),
        (-32601, "method not found", "eth_getBlockReceipts", True, RpcServerError),
        (-32700, "parse error", "eth_blockNumber", True, RpcServerError),
        (3, "execution reverted: paused", "eth_call", True, RpcResponseError),
        (-32000, "execution reverted", "eth_call", True, RpcResponseError),
        (-32602, "invalid argument 0: hex string without 0x prefix", "eth_getBlockByNumber", True, RpcResponseError),
        (-32600, "invalid request", "eth_blockNumber", True, RpcResponseError),
        (-32602, "BlockOutOfRangeError: block height is 300 but requested was 7", "eth_call", True, RpcResponseError),
        (-32000, "missing trie node abc (path )", "eth_call", True, RpcResponseError),
        (-32000, "nonce too low", "eth_sendRawTransaction", False, RpcResponseError),
        (-32000, "header not found", "eth_getBlockByNumber", True, RpcServerError),
        (-32000, "header not found", "eth_sendRawTransaction", False, RpcServerError),
    ],
)
def test_classification(code: int, message: str, method: str, idempotent: bool, expected: type) -> None:
    err = classify_rpc_error({"code": code, "message": message}, method=method, url=None, idempotent=idempotent)
    assert type(err) is expected
    assert isinstance(err, RetryableRpcError) == (expected is RpcServerError)


async def test_a_deterministic_error_is_not_retried() -> None:
    with respx.mock(assert_all_called=False) as mock:
        seen_a = route(mock, A, error(-32602, "invalid argument 0: json: cannot unmarshal"))
        seen_b = route(mock, B, answer("0x1"))
        async with client(A, B) as c:
            with pytest.raises(RpcResponseError):
                await c.block_number()
    assert len(seen_a) == 1 and not seen_b


async def test_verify_chain_id_retries_a_single_url_that_answers_badly_once() -> None:
    with respx.mock() as mock:
        seen = route(mock, A, BAD_REPLIES["truncated_json"], serving_chain("0x1"))
        async with client(A) as c:
            assert await c.verify_chain_id() == 1
    assert len(seen) == 2


def test_certificates_are_verified_whenever_tls_can_be_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """Plain-http local nodes skip building a TLS context; an https URL or a proxy from the environment keeps
    certificate checks on."""
    from chains.rpc import _needs_tls

    for var in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "https_proxy", "http_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    local = RpcClient(["http://127.0.0.1:8545"], chain_id=1)
    remote = RpcClient(["http://127.0.0.1:8545", A], chain_id=1)
    assert not _needs_tls(local._endpoints)
    assert _needs_tls(remote._endpoints)
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:3128")
    assert _needs_tls(local._endpoints)
