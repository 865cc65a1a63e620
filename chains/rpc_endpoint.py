"""One HTTP round trip to one RPC endpoint: send JSON-RPC bytes, map every failure to an RpcError.

Kept apart from RpcClient so that the retry/failover policy (rpc.py) reads on its own.
"""

from __future__ import annotations

import email.utils
import gc
import importlib.util
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from chains.errors import (
    MalformedResponse,
    RpcError,
    RpcHttpError,
    RpcRateLimited,
    RpcServerError,
    RpcTimeout,
    RpcUnavailable,
)
from chains.metrics import RPC_CALLS, RPC_ERRORS, RPC_LATENCY, RPC_REQUESTS
from chains.rpc_ratelimit import TokenBucket
from chains.rpc_urls import url_label

MAX_RETRY_AFTER_S = 60.0  # never let one server park us for longer than this

# httpcore asks which async library runs it with an `import sniffio` inside the function, twice per request (the
# request, and closing its response stream); sniffio is not installed (anyio 4 no longer needs it), so every request
# searched sys.path for it and failed: 15-25% of the CPU of the countries' eth_call batches. A None entry in
# sys.modules makes that import fail at once, with the same ImportError (httpcore then assumes asyncio, as before).
if importlib.util.find_spec("sniffio") is None:
    sys.modules.setdefault("sniffio", None)  # type: ignore[arg-type]  # None means "not importable" to the import system


@dataclass(slots=True)
class Endpoint:
    url: str  # secret: never log it
    label: str  # scheme://host:port, safe to show
    bucket: TokenBucket | None = None
    not_before: float = 0.0  # monotonic time before which Retry-After asks us to stay away
    chain_label: str = "unknown"

    @classmethod
    def from_url(cls, url: str, *, rate: float | None, chain_label: str) -> Endpoint:
        return cls(url, url_label(url), TokenBucket(rate) if rate else None, chain_label=chain_label)

    def record_error(self, method: str, kind: str) -> None:
        RPC_ERRORS.labels(self.chain_label, method, self.label, kind).inc()


def metric_method(methods: list[str], batch: bool) -> str:
    """A bounded label: the method, batch:<method> for a uniform batch, else batch:mixed."""
    if not batch:
        return methods[0]
    first = methods[0]
    return f"batch:{first}" if all(m == first for m in methods) else "batch:mixed"


async def post(
    client: httpx.AsyncClient,
    endpoint: Endpoint,
    payload: list[dict[str, Any]] | dict[str, Any],
    *,
    label_method: str,
    timeout: float | None = None,
) -> Any:
    """POST one JSON-RPC request (object or batch array) and return the decoded JSON body.

    Raises RetryableRpcError for timeouts, connection failures, 429 and 5xx; RpcHttpError for
    other non-2xx statuses without a JSON body; MalformedResponse for bodies that are not JSON.
    A JSON body on an error status is returned so that its JSON-RPC errors can be classified.
    """
    if endpoint.bucket is not None:
        await endpoint.bucket.acquire()
    fast = label_method in _HEX_ONLY
    body = _dumps(payload) if fast else json.dumps(payload, separators=(",", ":")).encode()
    chain, url = endpoint.chain_label, endpoint.label
    RPC_REQUESTS.labels(chain, label_method, url).inc()
    if isinstance(payload, list):
        # one labelled child per method, not per item: a countries batch is 100 eth_calls
        for method, n in Counter([item["method"] for item in payload]).items():
            RPC_CALLS.labels(chain, method, url).inc(n)
    else:
        RPC_CALLS.labels(chain, payload["method"], url).inc()
    kw: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
    started = time.perf_counter()
    try:
        try:
            # Streamed, so that the body is not kept on the Response: httpx's Response sits in reference
            # cycles, freed only by a full collection, and a getLogs body is ~1.5 MB (issue 16: with the
            # collector's oldest generation run less often during a backfill, kept bodies added 48 MB of RSS).
            async with client.stream("POST", endpoint.url, content=body, **kw) as resp:
                raw = b"".join([chunk async for chunk in resp.aiter_bytes()])
        except httpx.TimeoutException as exc:
            raise RpcTimeout(f"timed out ({type(exc).__name__})", url=url, method=label_method) from None
        except httpx.TransportError as exc:
            # Never include str(exc): some httpx messages quote the request URL.
            raise RpcUnavailable(f"connection failed ({type(exc).__name__})", url=url, method=label_method) from None
        return _decode(resp, raw, url=url, method=label_method, fast=fast)
    except RpcError as err:
        endpoint.record_error(label_method, err.kind)
        raise
    finally:
        RPC_LATENCY.labels(chain, label_method, url).observe(time.perf_counter() - started)


def _decode(resp: httpx.Response, raw: bytes, *, url: str, method: str, fast: bool = False) -> Any:
    status = resp.status_code
    if status == 429:
        retry_after = parse_retry_after(resp.headers.get("retry-after"))
        raise RpcRateLimited("HTTP 429 Too Many Requests", retry_after=retry_after, url=url, method=method)
    try:
        decoded = _loads(raw) if fast else json.loads(raw)
    except ValueError:
        decoded = None
        if status < 400:
            raise MalformedResponse(f"HTTP {status} body is not JSON", url=url, method=method) from None
    if status >= 400 and not _looks_like_jsonrpc(decoded):
        if status >= 500 or status == 408:
            raise RpcServerError(f"HTTP {status}", status_code=status, url=url, method=method)
        raise RpcHttpError(f"HTTP {status}", status_code=status, url=url, method=method)
    return decoded


# The bulk reads of a backfill, whose params and results are hex strings (results read with int(x, 16), which
# refuses a float): sent by _dumps, parsed by _loads. orjson reads an integer beyond 64 bits as a float where json
# keeps it exact, so the other methods keep json. batch:eth_call: the investor countries of a backfill's
# IdentityRegistered logs (indexer/countries.py), two calls per registration.
_HEX_ONLY = frozenset(("eth_getLogs", "batch:eth_getLogs", "batch:eth_getBlockByNumber", "batch:eth_call"))


def _dumps(payload: Any) -> bytes:
    """orjson's compact JSON; json's for what orjson refuses (an integer beyond 64 bits)."""
    try:
        return orjson.dumps(payload)
    except TypeError:
        return json.dumps(payload, separators=(",", ":")).encode()


def _loads(raw: bytes) -> Any:
    """The JSON body; orjson with the cyclic collector paused while it builds the result.

    A getLogs body of 2,500 logs is ~7,500 new dicts and lists: with the collector on, orjson's speed is lost to the
    young collections it triggers over the half-built result (which is acyclic: a tree of dicts, lists, str and
    int, freed by reference counting). Fetch stage of the Ponder comparison's 200,000 logs, CPU of 4 runs each
    (load 6-7.5): json 1.39-1.53 s, orjson 1.45-1.78 s, orjson with the collector paused 1.22-1.31 s. What orjson
    refuses (NaN) goes to json, which decides as before."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)
    finally:
        if enabled:
            gc.enable()


def _looks_like_jsonrpc(body: Any) -> bool:
    if isinstance(body, list):
        return bool(body) and all(isinstance(i, dict) and "id" in i for i in body)
    return isinstance(body, dict) and ("result" in body or "error" in body) and body.get("id") is not None


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After is delta-seconds or an HTTP date; some providers send fractional seconds."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)
