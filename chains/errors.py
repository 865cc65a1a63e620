"""Errors of the chains package.

RPC failures are split by what the caller should do about them (cf. httpx/_exceptions.py):

    RpcError                      any failure talking to a node
    ├── RetryableRpcError         transient: the same request may succeed later or on another URL;
    │   │                         RpcClient retries these (idempotent methods only) with backoff and
    │   │                         jitter, moving to the next URL after each failure
    │   ├── RpcTimeout            connect/read/write/pool timeout
    │   ├── RpcRateLimited        HTTP 429 or a JSON-RPC rate-limit error; carries retry_after
    │   ├── RpcServerError        HTTP 5xx/408; a JSON-RPC error that is not about our request: -32603
    │   │   │                     "internal error", -32000.. server codes, -32601 on one provider, a
    │   │   │                     lagging node's "header not found"/"unknown block", any unclassified
    │   │   │                     code on a read method
    │   │   └── BlockUnavailable  a block the caller knows exists came back null/absent (a lagging or
    │   │                         load-balanced node): never evidence of a reorg
    │   ├── RpcUnavailable        connection refused/reset, DNS failure, protocol error
    │   ├── RpcHttpError          any other non-2xx status without a JSON-RPC body (401/403: a bad
    │   │                         key on one provider, 404: a wrong path): the next URL may work
    │   └── MalformedResponse     not JSON, truncated JSON, HTML with status 200, no ``result``, a
    │                             wrong ``id`` (single or batch item), a result of the wrong shape
    ├── FatalRpcError             retrying cannot help; never retried
    │   ├── RpcResponseError      a JSON-RPC error about the request itself, the same on every node:
    │   │                         execution reverted (code 3), -32600 invalid request or -32602
    │   │                         invalid params (our bug), state outside the node's window
    │   │                         ("missing trie node", "BlockOutOfRange"); on a write method (not
    │   │                         idempotent) every unclassified JSON-RPC error is fatal too
    │   └── ChainIdMismatch       every configured URL serves another chain than configured (one
    │                             wrong URL among several is dropped from the rotation instead)
    ├── LogRangeTooLarge          eth_getLogs span or result count over the provider's limit:
    │                             neither retried as-is nor fatal; ask again for a smaller range
    └── AllEndpointsFailed        every URL failed with retryable errors until retries ran out;
                                  transient from the caller's point of view (back off, then retry)

URLs in these errors are always redacted to scheme://host:port, since provider URLs carry API keys.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence


class UnknownChain(LookupError):
    """A chain id or name that the registry does not know."""

    def __init__(self, key: object, known: Sequence[str]) -> None:
        self.key = key
        self.known = list(known)
        super().__init__(f"unknown chain {key!r}; known chains: {', '.join(self.known)}")


class RpcError(Exception):
    """Base of every RPC failure. ``url`` is the redacted endpoint label, ``method`` the JSON-RPC method."""

    kind = "error"  # short label for metrics and logs

    def __init__(self, message: str, *, url: str | None = None, method: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.url = url
        self.method = method

    def __str__(self) -> str:
        where = " ".join(p for p in (self.method, f"@ {self.url}" if self.url else None) if p)
        return f"{self.message} ({where})" if where else self.message


class RetryableRpcError(RpcError):
    """Transient failure: retry later or on another endpoint (idempotent methods only)."""


class RpcTimeout(RetryableRpcError):
    kind = "timeout"


class RpcRateLimited(RetryableRpcError):
    """429 or a JSON-RPC rate-limit error. ``retry_after`` is in seconds when the server said."""

    kind = "rate_limited"

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: str | None) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class RpcServerError(RetryableRpcError):
    kind = "server_error"

    def __init__(self, message: str, *, status_code: int | None = None, **kw: str | None) -> None:
        super().__init__(message, **kw)
        self.status_code = status_code


class BlockUnavailable(RpcServerError):
    """A block that must exist (at or below a head the node reported, or stored by us) came back null."""

    kind = "block_unavailable"


class RpcUnavailable(RetryableRpcError):
    kind = "unavailable"


class RpcHttpError(RetryableRpcError):
    """A non-2xx status without a JSON-RPC body. 401/403/404 are about that provider (key, plan, path),
    not about the request: the next URL may serve it, so the client fails over."""

    kind = "http_error"

    def __init__(self, message: str, *, status_code: int, **kw: str | None) -> None:
        super().__init__(message, **kw)
        self.status_code = status_code


class MalformedResponse(RetryableRpcError):
    """Garbage from a proxy, a load balancer or a node under stress: the same request usually succeeds
    on a retry or on another URL."""

    kind = "malformed"


class FatalRpcError(RpcError):
    """Retrying the same request cannot help."""


class RpcResponseError(FatalRpcError):
    """A JSON-RPC error object that is not retryable (bad params, execution reverted, ...)."""

    kind = "response_error"

    def __init__(self, code: int, message: str, data: object = None, **kw: str | None) -> None:
        super().__init__(f"JSON-RPC error {code}: {message}", **kw)
        self.code = code
        self.rpc_message = message
        self.data = data


class ChainIdMismatch(FatalRpcError):
    """The node serves another chain than the one configured (a misconfigured RPC_URLS_<id>).

    RpcClient drops such a URL from its rotation; this is raised when no URL is left."""

    kind = "chain_id_mismatch"

    def __init__(self, *, expected: int, got: int, url: str | None = None) -> None:
        super().__init__(f"node reports chain id {got}, expected {expected}", url=url, method="eth_chainId")
        self.expected = expected
        self.got = got


class LogRangeTooLarge(RpcError):
    """eth_getLogs asked for too many blocks or results. ``suggested_range`` is the (from, to)
    the provider proposed in its message (Alchemy and Infura do), else None."""

    kind = "range_too_large"

    def __init__(
        self,
        code: int | None,
        message: str,
        *,
        suggested_range: tuple[int, int] | None = None,
        **kw: str | None,
    ) -> None:
        super().__init__(f"log range too large ({code}): {message}", **kw)
        self.code = code
        self.rpc_message = message
        self.suggested_range = suggested_range


class AllEndpointsFailed(RpcError):
    """Retries ran out. ``errors`` maps each redacted URL to the last error it gave."""

    kind = "all_failed"

    def __init__(self, errors: Mapping[str, RpcError], *, method: str | None = None) -> None:
        self.errors = dict(errors)
        detail = "; ".join(f"{url}: {type(e).__name__}: {e.message}" for url, e in self.errors.items())
        super().__init__(f"all {len(self.errors)} RPC endpoint(s) failed: {detail}", method=method)

    @property
    def last_error(self) -> RpcError | None:
        return next(reversed(self.errors.values()), None)

    @property
    def all_timeouts(self) -> bool:
        return bool(self.errors) and all(isinstance(e, RpcTimeout) for e in self.errors.values())


# --- classifying JSON-RPC error objects -------------------------------------------------------

# Messages providers use when an eth_getLogs span or result set is over their limit.
_RANGE_PATTERNS = re.compile(
    "|".join(
        (
            r"log response size exceeded",  # Alchemy
            r"query returned more than \d+ results",  # Infura
            r"block range is too (large|wide)",  # geth-based, QuickNode
            r"exceed(s|ed)? (the )?max(imum)? block range",  # BSC "exceed maximum block range: 5000"
            r"block range (limit|too large|exceeded)",
            r"range (is )?too large",
            r"limit exceeded",
            r"query timeout exceeded",  # Ankr and others
            r"response size should not greater than",
            r"response size (is )?too (large|big)",
            r"too many (logs|results|blocks)",
            r"max(imum)? results? (count|size)? ?exceeded",
            r"logs? (are|is)? ?over the limit",
        )
    ),
    re.IGNORECASE,
)
_RATE_PATTERNS = re.compile(
    r"rate.?limit|too many requests|request rate|exceeded .*(capacity|quota|credits)|daily request count",
    re.IGNORECASE,
)
# Transient node-side states: a load balancer routed us to a node that lags or is busy.
_TRANSIENT_PATTERNS = re.compile(
    r"header not found|unknown block|block not found|busy|try again|temporarily unavailable|"
    r"upstream|timeout|timed out|service unavailable|internal server error|internal error|"
    r"beyond (the )?current head|not (yet )?(synced|processed|available yet)|overloaded",
    re.IGNORECASE,
)
# Answers that are about the request and come back the same from every node: never retried.
_DETERMINISTIC_PATTERNS = re.compile(
    r"revert|out of gas|invalid opcode|invalid jump|stack (over|under)flow|"
    # state outside the node's window (indexer/countries.py falls back to a recent block on these)
    r"block ?out ?of ?range|requested was|missing trie node|historical state|pruned|not an archive|"
    r"distance to target block exceeds|state (is )?(not available|unavailable)",
    re.IGNORECASE,
)
_HINT = re.compile(r"\[\s*(0x[0-9a-fA-F]+)\s*,\s*(0x[0-9a-fA-F]+)\s*\]")

LIMIT_EXCEEDED = -32005  # EIP-1474 "limit exceeded"
EXECUTION_ERROR = 3  # EIP-1474 / geth: execution reverted
INVALID_REQUEST, INVALID_PARAMS = -32600, -32602  # our request is wrong: the same everywhere


def classify_rpc_error(error: object, *, method: str, url: str | None, idempotent: bool = False) -> RpcError:
    """Turn a JSON-RPC ``error`` object into the right exception type.

    Rate-limit messages win over range messages ("daily request limit exceeded" is about rate);
    range messages only count for eth_getLogs, since "limit exceeded" means rate elsewhere. Then
    deterministic answers (reverts, invalid request/params, state out of the node's window) are
    fatal; known transient messages are RpcServerError; anything else is transient on an
    ``idempotent`` read (-32603 internal error, -32000 with an unknown message, -32601 on one
    provider: another try or another URL may answer) and fatal on a write, as a write is never
    retried blindly.
    """
    if not isinstance(error, dict):
        return MalformedResponse(f"error member is not an object: {error!r:.200}", url=url, method=method)
    code = error.get("code")
    code = code if isinstance(code, int) else None
    message = str(error.get("message", ""))
    data = error.get("data")
    if code == 429 or _RATE_PATTERNS.search(message):
        return RpcRateLimited(f"rate limited ({code}): {message}", url=url, method=method)
    if method == "eth_getLogs" and (code == LIMIT_EXCEEDED or _RANGE_PATTERNS.search(message)):
        return LogRangeTooLarge(code, message, suggested_range=_suggested_range(message), url=url, method=method)
    if code == LIMIT_EXCEEDED:
        return RpcRateLimited(f"limit exceeded ({code}): {message}", url=url, method=method)
    if code == EXECUTION_ERROR or _DETERMINISTIC_PATTERNS.search(message):
        return RpcResponseError(code if code is not None else 0, message, data, url=url, method=method)
    if _TRANSIENT_PATTERNS.search(message) or (idempotent and code not in (INVALID_REQUEST, INVALID_PARAMS)):
        return RpcServerError(f"node error ({code}): {message}", url=url, method=method)
    return RpcResponseError(code if code is not None else 0, message, data, url=url, method=method)


def _suggested_range(message: str) -> tuple[int, int] | None:
    m = _HINT.search(message)
    if not m:
        return None
    lo, hi = int(m.group(1), 16), int(m.group(2), 16)
    return (lo, hi) if lo <= hi else None
