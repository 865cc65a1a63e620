"""Async JSON-RPC client for EVM nodes: raw JSON over one pooled httpx client (not web3).

Policy, in one place:
- retry with exponential backoff + jitter only RetryableRpcError, and only for the idempotent
  read methods in RETRYABLE_METHODS (eth_sendRawTransaction and other writes: one attempt);
- on each retryable failure move to the next URL (round-robin); the URL that last answered
  is where the next call starts; sleep only after a full round of URLs has failed;
- 429 Retry-After parks that URL until the time given; rate_limit_per_url paces requests;
- a reply that is not a well-formed answer to what was asked (garbage, wrong id, no result, a
  result of the wrong shape, a null block that must exist) counts as a transient failure of
  that URL (chains/errors.py lists what is transient and what is fatal);
- with ``verify_chain`` every URL is asked eth_chainId before its first use: a URL serving
  another chain is dropped from the rotation (logged once), the others go on; ChainIdMismatch
  only when none is left;
- when attempts run out: AllEndpointsFailed with the last error per (redacted) URL.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import time
import urllib.request
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any, TypeVar, cast

import httpx

from chains.errors import (
    AllEndpointsFailed,
    BlockUnavailable,
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
from chains.rpc_params import BlockRef, block_param, logs_filter, logs_filter_by_hash

T = TypeVar("T")
Validator = Callable[[Any], None]  # raises MalformedResponse/BlockUnavailable for a result that cannot be right

log = logging.getLogger(__name__)

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
        verify_chain: bool = False,
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
        # URL label -> chain id it proved to serve; only consulted with verify_chain (and chain_id given)
        self.verify_chain = verify_chain and chain_id is not None
        self._chain_ok: set[str] = set()
        self._dropped: dict[str, int] = {}  # label -> the chain id it serves instead
        self._verify_lock = asyncio.Lock()
        self._ids = itertools.count(1)
        self._http = httpx.AsyncClient(
            transport=transport,
            verify=_needs_tls(self._endpoints),
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            headers={"content-type": "application/json", "accept": "application/json"},
        )

    @property
    def endpoint_labels(self) -> list[str]:
        """The URLs as scheme://host:port, in failover order (safe to log)."""
        return [e.label for e in self._endpoints]

    @property
    def dropped_endpoints(self) -> dict[str, int]:
        """Labels of URLs dropped from the rotation -> the chain id they serve instead."""
        return dict(self._dropped)

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

    async def call(
        self,
        method: str,
        params: Sequence[Any] | None = None,
        *,
        timeout: float | None = None,
        validate: Validator | None = None,
    ) -> Any:
        """One JSON-RPC call; returns ``result`` or raises an RpcError subclass. ``validate`` checks the
        result inside the attempt, so a wrong-shaped answer is retried and failed over like garbage."""
        params = list(params or [])
        idempotent = method in self.retryable_methods

        async def attempt(ep: Endpoint) -> Any:
            req_id = next(self._ids)
            req = {"jsonrpc": "2.0", "id": req_id, "method": method, "params": params}
            body = await post(self._http, ep, req, label_method=method, timeout=timeout)
            if not isinstance(body, dict) or body.get("id") != req_id:
                raise MalformedResponse(f"response id does not match request id {req_id}", url=ep.label, method=method)
            if "error" in body and body["error"] is not None:
                err = classify_rpc_error(body["error"], method=method, url=ep.label, idempotent=idempotent)
                ep.record_error(method, err.kind)
                raise err
            if "result" not in body:
                raise _malformed(ep, method, "response has neither result nor error")
            result = body["result"]
            if validate is not None:
                _checked(validate, result, ep, method)
            return result

        return await self._with_failover(method, idempotent, attempt)

    async def batch(
        self,
        calls: Sequence[tuple[str, Sequence[Any]]],
        *,
        return_exceptions: bool = False,
        validate: Validator | None = None,
    ) -> list[Any]:
        """Many calls as JSON arrays of at most ``batch_size`` items, chunks sent concurrently.

        Results come back in the order of ``calls``. A failed item raises its own error type
        (or is returned in place with ``return_exceptions``); items that failed with retryable
        errors are retried (if every method in the chunk is idempotent) without re-sending the rest.
        """
        if not calls:
            return []
        chunks = [calls[i : i + self.batch_size] for i in range(0, len(calls), self.batch_size)]
        parts = await asyncio.gather(*(self._batch_chunk(c, return_exceptions, validate) for c in chunks))
        return [r for part in parts for r in part]

    async def _batch_chunk(
        self, calls: Sequence[tuple[str, Sequence[Any]]], return_exceptions: bool, validate: Validator | None
    ) -> list[Any]:
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
                refused = classify_rpc_error(body["error"], method=label, url=ep.label, idempotent=retryable)
                ep.record_error(label, refused.kind)
                raise refused
            if not isinstance(body, list):
                raise _malformed(ep, label, "batch response is not a JSON array")
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
                err: RpcError | None = None
                if item.get("error") is not None:
                    err = classify_rpc_error(
                        item["error"], method=method, url=ep.label, idempotent=method in self.retryable_methods
                    )
                    ep.record_error(method, err.kind)
                elif "result" not in item:
                    err = _malformed(ep, method, "batch item has neither result nor error")
                elif validate is not None:
                    try:
                        _checked(validate, item["result"], ep, method)
                    except RetryableRpcError as bad:
                        err = bad
                if err is None:
                    results[pos] = item["result"]
                elif isinstance(err, RetryableRpcError):
                    still.append(pos)  # what did arrive is kept; only this item is asked again
                    retry_err = retry_err or err
                elif return_exceptions:
                    results[pos] = err
                else:
                    raise err
            pending = sorted(still)
            if retry_err is not None:
                raise retry_err

        await self._with_failover(label, retryable, attempt)
        return results

    # --- retry / failover ---------------------------------------------------------------------

    async def _with_failover(self, method: str, retryable: bool, attempt: Callable[[Endpoint], Awaitable[T]]) -> T:
        idx = self._current
        n = len(self._endpoints)
        attempts = max(self.max_retries + 1, n) if retryable else 1
        last: dict[str, RpcError] = {}
        tried = 0
        while tried < attempts:
            n = len(self._endpoints)
            idx %= n
            ep = self._endpoints[idx]
            wait = ep.not_before - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                if self.verify_chain and ep.label not in self._chain_ok:
                    if not await self._verify_endpoint(ep):
                        continue  # dropped: the list shrank, idx now points at the next URL
                result = await attempt(ep)
            except RetryableRpcError as err:
                tried += 1
                if not retryable:
                    raise
                last.pop(ep.label, None)  # keep insertion order = order of last failure
                last[ep.label] = err
                if isinstance(err, RpcRateLimited) and err.retry_after is not None:
                    ep.not_before = time.monotonic() + err.retry_after
                idx = (idx + 1) % n
                if tried % n == 0 and tried < attempts:  # a whole round failed: back off
                    await asyncio.sleep(self._backoff(tried // n - 1))
                continue
            except FatalRpcError:
                self._current = idx  # the endpoint answered; it is healthy
                raise
            self._current = idx
            return result
        raise AllEndpointsFailed(last, method=method)

    async def _verify_endpoint(self, ep: Endpoint) -> bool:
        """Ask ``ep`` for its chain id once (RetryableRpcError propagates: try again on its next turn).
        False if it serves another chain: it is dropped from the rotation, or ChainIdMismatch if it was
        the last one."""
        async with self._verify_lock:
            if ep.label in self._chain_ok:
                return True
            if ep not in self._endpoints:
                return False
            req_id = next(self._ids)
            body = await post(
                self._http,
                ep,
                {"jsonrpc": "2.0", "id": req_id, "method": "eth_chainId", "params": []},
                label_method="eth_chainId",
            )
            got = _chain_id_of(body, req_id, ep)
            if got == self.expected_chain_id:
                self._chain_ok.add(ep.label)
                return True
            pos = self._endpoints.index(ep)
            if len(self._endpoints) == 1:
                raise ChainIdMismatch(expected=self.expected_chain_id or 0, got=got, url=ep.label)
            self._endpoints.pop(pos)
            self._dropped[ep.label] = got
            if self._current > pos or self._current >= len(self._endpoints):
                self._current = max(0, self._current - 1) % len(self._endpoints)
            log.error(
                "RPC endpoint %s serves chain %s, not %s: dropped from the rotation (%s left: %s)",
                ep.label,
                got,
                self.expected_chain_id,
                len(self._endpoints),
                ", ".join(self.endpoint_labels),
            )
            return False

    def _backoff(self, round_no: int) -> float:
        """Exponential backoff with equal jitter: half fixed, half random."""
        delay = min(self.backoff_max, self.backoff_base * (2**round_no))
        return delay / 2 + random.uniform(0, delay / 2)

    # --- typed helpers ------------------------------------------------------------------------

    async def block_number(self) -> int:
        return int(await self.call("eth_blockNumber", validate=_hex_quantity), 16)

    async def chain_id(self) -> int:
        """The node's eth_chainId (the constructor's ``chain_id`` is kept as ``expected_chain_id``)."""
        return int(await self.call("eth_chainId", validate=_hex_quantity), 16)

    async def verify_chain_id(self) -> int:
        """Ask every URL for its chain id: URLs serving another chain are dropped from the rotation (logged);
        ChainIdMismatch if none is left, AllEndpointsFailed if none answered. From then on a URL not yet
        checked (it failed here) is checked before its first use."""
        if self.expected_chain_id is None:
            return await self.chain_id()
        self.verify_chain = True
        errors: dict[str, RpcError] = {}
        for round_no in range(self.max_retries + 1):  # rounds over the URLs, with backoff, until one answers
            if round_no:
                await asyncio.sleep(self._backoff(round_no - 1))
            for ep in [e for e in self._endpoints if e.label not in self._chain_ok]:
                try:
                    await self._verify_endpoint(ep)
                except RetryableRpcError as err:
                    errors[ep.label] = err
            if self._chain_ok:
                return self.expected_chain_id
        raise AllEndpointsFailed(errors, method="eth_chainId")

    async def get_block(
        self, block: BlockRef, full_txs: bool = False, *, require: bool = False
    ) -> dict[str, Any] | None:
        """Block by number, tag (latest/safe/finalized/earliest/pending) or 32-byte hash; None if unknown.
        With ``require`` (the caller knows the block exists) a null answer is BlockUnavailable, retried
        and failed over like any transient failure."""
        check = _block_required if require else _block_or_none
        if isinstance(block, str) and len(block) == 66 and block.startswith("0x"):
            return await self.call("eth_getBlockByHash", [block, full_txs], validate=check)
        return await self.call("eth_getBlockByNumber", [block_param(block), full_txs], validate=check)

    async def get_blocks(
        self, numbers: Sequence[BlockRef], full_txs: bool = False, *, require: bool = False
    ) -> list[dict[str, Any] | None]:
        """Blocks by number in one batched round trip per ``batch_size``; None where unknown (with
        ``require``: BlockUnavailable, after retrying just those items)."""
        check = _block_required if require else _block_or_none
        return await self.batch([("eth_getBlockByNumber", [block_param(n), full_txs]) for n in numbers], validate=check)

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
        return await self.call(
            "eth_getLogs", [logs_filter(address, topics, from_block, to_block)], timeout=timeout, validate=_log_list
        )

    async def get_logs_by_hash(
        self,
        address: str | Sequence[str] | None,
        topics: Sequence[str | Sequence[str] | None] | None,
        block_hashes: Sequence[str],
    ) -> list[list[dict[str, Any]]]:
        """The logs of each block hash (EIP-234 ``blockHash`` filter), batched: exactly the logs of that
        block, whatever the node's canonical chain is now. A hash the node does not know is an error
        ("unknown block"), never an empty list."""
        calls = [("eth_getLogs", [logs_filter_by_hash(address, topics, h)]) for h in block_hashes]
        return await self.batch(calls, validate=_log_list)

    async def eth_call(self, to: str, data: str, block: BlockRef = "latest") -> str:
        return await self.call("eth_call", [{"to": to, "data": data}, block_param(block)])

    async def get_transaction_receipt(self, tx_hash: str) -> dict[str, Any] | None:
        return await self.call("eth_getTransactionReceipt", [tx_hash])

    async def send_raw_transaction(self, raw_tx: str) -> str:
        """Never retried: a retry after a lost response could race a replacement transaction."""
        return await self.call("eth_sendRawTransaction", [raw_tx])


# --- reply checks (run inside an attempt: a failure is retried and failed over) ------------------


def _needs_tls(endpoints: Sequence[Endpoint]) -> bool:
    """True unless every URL is plain http and no proxy comes from the environment: building httpx's TLS
    context (loading the CA bundle) is ~40 ms of CPU, paid at every `rwa index backfill` start against a
    local node. Certificates are verified whenever TLS can be used."""
    return any(not ep.url.startswith("http://") for ep in endpoints) or bool(urllib.request.getproxies())


def _malformed(ep: Endpoint, method: str, why: str) -> MalformedResponse:
    err = MalformedResponse(why, url=ep.label, method=method)
    ep.record_error(method, err.kind)
    return err


def _checked(validate: Validator, result: Any, ep: Endpoint, method: str) -> None:
    try:
        validate(result)
    except RetryableRpcError as err:
        err.url, err.method = ep.label, method
        ep.record_error(method, err.kind)
        raise


def _hex_quantity(result: Any) -> None:
    if not (isinstance(result, str) and result.startswith("0x") and len(result) > 2):
        raise MalformedResponse(f"expected a hex quantity, got {result!r:.80}")
    try:
        int(result, 16)
    except ValueError:
        raise MalformedResponse(f"expected a hex quantity, got {result!r:.80}") from None


def _block_or_none(result: Any) -> None:
    if result is None:
        return
    if not isinstance(result, dict) or not all(
        isinstance(result.get(k), str) for k in ("hash", "parentHash", "number")
    ):
        raise MalformedResponse("block without hash/parentHash/number")


def _block_required(result: Any) -> None:
    if result is None:
        raise BlockUnavailable("node answered null for a block that exists")
    _block_or_none(result)


def _log_list(result: Any) -> None:
    # Only the shape: the indexer checks each log against the block it belongs to (indexer/fetch.py).
    if not isinstance(result, list) or not all(isinstance(lg, dict) for lg in result):
        raise MalformedResponse(f"eth_getLogs result is not a list of objects: {result!r:.80}")


def _chain_id_of(body: Any, req_id: int, ep: Endpoint) -> int:
    if not isinstance(body, dict) or body.get("id") != req_id:
        raise _malformed(ep, "eth_chainId", f"response id does not match request id {req_id}")
    if body.get("error") is not None:
        err = classify_rpc_error(body["error"], method="eth_chainId", url=ep.label, idempotent=True)
        ep.record_error("eth_chainId", err.kind)
        raise err
    result = body.get("result")
    _checked(_hex_quantity, result, ep, "eth_chainId")
    return int(cast(str, result), 16)  # _hex_quantity checked it is a hex string
