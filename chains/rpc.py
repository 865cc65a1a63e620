"""Async JSON-RPC client for EVM nodes: raw JSON over one pooled httpx client (not web3).

Policy, in one place:
- retry with exponential backoff + jitter only RetryableRpcError, and only for the idempotent
  read methods in RETRYABLE_METHODS (eth_sendRawTransaction and other writes: one attempt);
- on each retryable failure move to the next URL (round-robin); the URL that last answered
  is where the next call starts; sleep only after a full round of URLs has failed;
- 429 Retry-After parks that URL until the time given; rate_limit_per_url paces requests;
- when attempts run out: AllEndpointsFailed with the last error per (redacted) URL.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any, TypeVar

import httpx

from chains.errors import (
    AllEndpointsFailed,
    ChainIdMismatch,
    FatalRpcError,
    MalformedResponse,
    RetryableRpcError,
    RpcError,
    RpcRateLimited,
    RpcServerError,
    classify_rpc_error,
)
from chains.rpc_endpoint import Endpoint, metric_method, post
from chains.rpc_params import BlockRef, block_param, logs_filter

T = TypeVar("T")

RETRYABLE_METHODS: frozenset[str] = frozenset(
    {
        "eth_blockNumber",
        "eth_chainId",
        "net_version",
        "web3_clientVersion",
        "eth_syncing",
        "eth_getBlockByNumber",
        "eth_getBlockByHash",
        "eth_getBlockReceipts",
        "eth_getBlockTransactionCountByNumber",
        "eth_getLogs",
        "eth_call",
        "eth_estimateGas",
        "eth_getBalance",
        "eth_getCode",
        "eth_getStorageAt",
        "eth_getTransactionCount",
        "eth_getTransactionByHash",
        "eth_getTransactionReceipt",
        "eth_gasPrice",
        "eth_maxPriorityFeePerGas",
        "eth_feeHistory",
    }
)


class RpcClient:
    """JSON-RPC client with batching, retries, failover across URLs and per-URL rate limits.

    ``transport`` replaces httpx's network transport (tests inject faults with httpx.MockTransport).
    """

    def __init__(
        self,
        urls: Sequence[str],
        *,
        chain_id: int | None = None,
        timeout: float = 10,
        max_retries: int = 4,
        backoff_base: float = 0.2,
        backoff_max: float = 5.0,
        rate_limit_per_url: float | None = None,
        batch_size: int = 100,
        max_connections: int = 20,
        retryable_methods: frozenset[str] = RETRYABLE_METHODS,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not urls:
            raise ValueError("RpcClient needs at least one URL")
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.expected_chain_id = chain_id
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.batch_size = batch_size
        self.retryable_methods = retryable_methods
        chain_label = str(chain_id) if chain_id is not None else "unknown"
        self._endpoints = [Endpoint.from_url(u, rate=rate_limit_per_url, chain_label=chain_label) for u in urls]
        self._current = 0  # index of the endpoint that answered last
        self._ids = itertools.count(1)
        self._http = httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            headers={"content-type": "application/json", "accept": "application/json"},
        )

    @property
    def endpoint_labels(self) -> list[str]:
        """The URLs as scheme://host:port, in failover order (safe to log)."""
        return [e.label for e in self._endpoints]

    @property
    def current_endpoint(self) -> str:
        return self._endpoints[self._current].label

    # --- lifecycle ----------------------------------------------------------------------------

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> RpcClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # --- raw calls ----------------------------------------------------------------------------

    async def call(self, method: str, params: Sequence[Any] | None = None, *, timeout: float | None = None) -> Any:
        """One JSON-RPC call; returns ``result`` or raises an RpcError subclass."""
        params = list(params or [])

        async def attempt(ep: Endpoint) -> Any:
            req_id = next(self._ids)
            req = {"jsonrpc": "2.0", "id": req_id, "method": method, "params": params}
            body = await post(self._http, ep, req, label_method=method, timeout=timeout)
            if not isinstance(body, dict) or body.get("id") != req_id:
                raise MalformedResponse(f"response id does not match request id {req_id}", url=ep.label, method=method)
            if "error" in body and body["error"] is not None:
                err = classify_rpc_error(body["error"], method=method, url=ep.label)
                ep.record_error(method, err.kind)
                raise err
            if "result" not in body:
                raise MalformedResponse("response has neither result nor error", url=ep.label, method=method)
            return body["result"]

        return await self._with_failover(method, method in self.retryable_methods, attempt)

    async def batch(
        self, calls: Sequence[tuple[str, Sequence[Any]]], *, return_exceptions: bool = False
    ) -> list[Any]:
        """Many calls as JSON arrays of at most ``batch_size`` items, chunks sent concurrently.

        Results come back in the order of ``calls``. A failed item raises its own error type
        (or is returned in place with ``return_exceptions``); items that failed with retryable
        errors are retried (if every method in the chunk is idempotent) without re-sending the rest.
        """
        if not calls:
            return []
        chunks = [calls[i : i + self.batch_size] for i in range(0, len(calls), self.batch_size)]
        parts = await asyncio.gather(*(self._batch_chunk(c, return_exceptions) for c in chunks))
        return [r for part in parts for r in part]

    async def _batch_chunk(self, calls: Sequence[tuple[str, Sequence[Any]]], return_exceptions: bool) -> list[Any]:
        methods = [m for m, _ in calls]
        label = metric_method(methods, batch=True)
        retryable = all(m in self.retryable_methods for m in methods)
        results: list[Any] = [None] * len(calls)
        pending = list(range(len(calls)))  # positions still without an answer

        async def attempt(ep: Endpoint) -> None:
            nonlocal pending
            ids = {next(self._ids): pos for pos in pending}
            payload = [
                {"jsonrpc": "2.0", "id": req_id, "method": calls[pos][0], "params": list(calls[pos][1])}
                for req_id, pos in ids.items()
            ]
            body = await post(self._http, ep, payload, label_method=label)
            if isinstance(body, dict) and "error" in body:  # the whole batch was refused
                refused = classify_rpc_error(body["error"], method=label, url=ep.label)
                ep.record_error(label, refused.kind)
                raise refused
            if not isinstance(body, list):
                raise MalformedResponse("batch response is not a JSON array", url=ep.label, method=label)
            by_id = {item.get("id"): item for item in body if isinstance(item, dict)}
            missing = [i for i in ids if i not in by_id]
            if missing:
                # Some load balancers drop items under load; what did arrive is kept.
                first_missing = ids[missing[0]]
                retry_err: RpcError | None = RpcServerError(
                    f"{len(missing)} batch item(s) missing from response", url=ep.label, method=calls[first_missing][0]
                )
            else:
                retry_err = None
            still: list[int] = [ids[i] for i in missing]
            for req_id, pos in ids.items():
                item = by_id.get(req_id)
                if item is None:
                    continue
                method = calls[pos][0]
                if item.get("error") is not None:
                    err = classify_rpc_error(item["error"], method=method, url=ep.label)
                    ep.record_error(method, err.kind)
                    if isinstance(err, RetryableRpcError):
                        still.append(pos)
                        retry_err = retry_err or err
                    elif return_exceptions:
                        results[pos] = err
                    else:
                        raise err
                elif "result" in item:
                    results[pos] = item["result"]
                else:
                    raise MalformedResponse("batch item has neither result nor error", url=ep.label, method=method)
            pending = sorted(still)
            if retry_err is not None:
                raise retry_err

        await self._with_failover(label, retryable, attempt)
        return results

    # --- retry / failover ---------------------------------------------------------------------

    async def _with_failover(self, method: str, retryable: bool, attempt: Callable[[Endpoint], Awaitable[T]]) -> T:
        n = len(self._endpoints)
        idx = self._current
        attempts = max(self.max_retries + 1, n) if retryable else 1
        last: dict[str, RpcError] = {}
        for i in range(attempts):
            ep = self._endpoints[idx]
            wait = ep.not_before - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                result = await attempt(ep)
            except RetryableRpcError as err:
                if not retryable:
                    raise
                last.pop(ep.label, None)  # keep insertion order = order of last failure
                last[ep.label] = err
                if isinstance(err, RpcRateLimited) and err.retry_after is not None:
                    ep.not_before = time.monotonic() + err.retry_after
                idx = (idx + 1) % n
                if (i + 1) % n == 0 and i + 1 < attempts:  # a whole round failed: back off
                    await asyncio.sleep(self._backoff((i + 1) // n - 1))
                continue
            except FatalRpcError:
                self._current = idx  # the endpoint answered; it is healthy
                raise
            self._current = idx
            return result
        raise AllEndpointsFailed(last, method=method)

    def _backoff(self, round_no: int) -> float:
        """Exponential backoff with equal jitter: half fixed, half random."""
        delay = min(self.backoff_max, self.backoff_base * (2**round_no))
        return delay / 2 + random.uniform(0, delay / 2)

    # --- typed helpers ------------------------------------------------------------------------

    async def block_number(self) -> int:
        return int(await self.call("eth_blockNumber"), 16)

    async def chain_id(self) -> int:
        """The node's eth_chainId (the constructor's ``chain_id`` is kept as ``expected_chain_id``)."""
        return int(await self.call("eth_chainId"), 16)

    async def verify_chain_id(self) -> int:
        """Raise ChainIdMismatch if the node serves another chain than ``expected_chain_id``."""
        got = await self.chain_id()
        if self.expected_chain_id is not None and got != self.expected_chain_id:
            raise ChainIdMismatch(expected=self.expected_chain_id, got=got, url=self.current_endpoint)
        return got

    async def get_block(self, block: BlockRef, full_txs: bool = False) -> dict[str, Any] | None:
        """Block by number, tag (latest/safe/finalized/earliest/pending) or 32-byte hash; None if unknown."""
        if isinstance(block, str) and len(block) == 66 and block.startswith("0x"):
            return await self.call("eth_getBlockByHash", [block, full_txs])
        return await self.call("eth_getBlockByNumber", [block_param(block), full_txs])

    async def get_blocks(self, numbers: Sequence[BlockRef], full_txs: bool = False) -> list[dict[str, Any] | None]:
        """Blocks by number in one batched round trip per ``batch_size``; None where unknown."""
        return await self.batch([("eth_getBlockByNumber", [block_param(n), full_txs]) for n in numbers])

    async def get_logs(
        self,
        address: str | Sequence[str] | None,
        topics: Sequence[str | Sequence[str] | None] | None,
        from_block: BlockRef,
        to_block: BlockRef,
        *,
        timeout: float | None = None,
    ) -> list[dict[str, Any]]:
        """Logs in [from_block, to_block]. ``timeout`` overrides the client's for wide scans."""
        return await self.call("eth_getLogs", [logs_filter(address, topics, from_block, to_block)], timeout=timeout)

    async def eth_call(self, to: str, data: str, block: BlockRef = "latest") -> str:
        return await self.call("eth_call", [{"to": to, "data": data}, block_param(block)])

    async def get_transaction_receipt(self, tx_hash: str) -> dict[str, Any] | None:
        return await self.call("eth_getTransactionReceipt", [tx_hash])

    async def send_raw_transaction(self, raw_tx: str) -> str:
        """Never retried: a retry after a lost response could race a replacement transaction."""
        return await self.call("eth_sendRawTransaction", [raw_tx])
