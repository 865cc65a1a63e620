"""A fault-injecting JSON-RPC proxy in front of a real node (anvil), for tests and the indexer soak.

Loopback only. Each request is forwarded unless a fault is injected instead (or into the reply):

- ``fault_rate``: share of requests that get one of ``kinds`` (seeded, reproducible):
  429, 503, timeout (held past the client's timeout, never forwarded), truncated JSON, HTML with status
  200, a missing ``result``, a wrong ``id``, JSON-RPC -32603 "internal error", an unknown -32000 server
  error, HTTP 401/403, an error on eth_getLogs only, a null block, a batch item dropped or with a
  wrong id;
- ``on_forwarded``: an async hook run after a reply was received from the node and before it is sent
  on: e.g. ``anvil_reorg`` right after answering eth_getLogs, so the client's next read sees the new
  fork (the reorg race of issue 13);
- ``null_blocks``: answer null for the next N eth_getBlockByNumber calls matching a predicate (a lagging
  backend of a load-balanced provider);
- ``chain_id``: answer eth_chainId with this id (a provider configured for the wrong chain).
``injected`` counts what was injected, by kind.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from aiohttp import web

from chains.anvil import free_port

KINDS = (
    "429",
    "503",
    "timeout",
    "truncated",
    "html200",
    "missing_result",
    "wrong_id",
    "internal_error",
    "server_error",
    "401",
    "403",
    "getlogs_error",
    "null_block",
    "batch_item",
)

Payload = dict[str, Any] | list[dict[str, Any]]
Hook = Callable[[Payload, Any], Awaitable[None]]


def _methods(payload: Payload) -> list[str]:
    items = payload if isinstance(payload, list) else [payload]
    return [i.get("method", "") for i in items if isinstance(i, dict)]


class FaultProxy:
    def __init__(
        self,
        upstream: str,
        *,
        fault_rate: float = 0.0,
        kinds: tuple[str, ...] = KINDS,
        seed: int = 13,
        timeout_s: float = 1.5,
        chain_id: int | None = None,
        on_forwarded: Hook | None = None,
    ) -> None:
        unknown = set(kinds) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds: {sorted(unknown)}")
        self.upstream = upstream
        self.fault_rate = fault_rate
        self.kinds = kinds
        self.rng = random.Random(seed)
        self.timeout_s = timeout_s
        self.chain_id = chain_id
        self.on_forwarded = on_forwarded
        self.null_blocks: list[tuple[Callable[[int], bool], int]] = []  # (predicate on the number, times left)
        self.injected: Counter[str] = Counter()
        self.requests: Counter[str] = Counter()
        self.port = free_port()
        self._runner: web.AppRunner | None = None
        self._http = httpx.AsyncClient(timeout=30)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> FaultProxy:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/", self.handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        await self._http.aclose()

    async def __aenter__(self) -> FaultProxy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def answer_null(self, times: int = 1, when: Callable[[int], bool] = lambda n: True) -> None:
        """The next ``times`` eth_getBlockByNumber calls (single or batched) for a number ``when`` accepts
        get ``null``."""
        self.null_blocks.append((when, times))

    # --- request handling --------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        try:
            payload: Payload = json.loads(body)
        except ValueError:
            return web.Response(status=400, text="bad json")
        for m in _methods(payload):
            self.requests[m] += 1
        kind = self._pick(payload)
        if kind is not None:
            early = await self._early_fault(kind, payload)
            if early is not None:
                self.injected[kind] += 1
                return early
        reply = await self._http.post(self.upstream, content=body, headers={"content-type": "application/json"})
        data = reply.json()
        data = self._rewrite(payload, data)
        if kind is not None:
            data, injected = self._late_fault(kind, payload, data)
            if injected:
                self.injected[kind] += 1
        if self.on_forwarded is not None:
            await self.on_forwarded(payload, data)
        if isinstance(data, str):  # a raw body (truncated JSON)
            return web.Response(status=200, content_type="application/json", text=data)
        return web.json_response(data)

    def _pick(self, payload: Payload) -> str | None:
        if self.fault_rate <= 0 or self.rng.random() >= self.fault_rate:
            return None
        methods = _methods(payload)
        usable = [
            k
            for k in self.kinds
            if (k != "getlogs_error" or "eth_getLogs" in methods)
            and (k != "null_block" or "eth_getBlockByNumber" in methods)
            and (k != "batch_item" or isinstance(payload, list))
            and (
                k not in ("missing_result", "wrong_id", "internal_error", "server_error")
                or not isinstance(payload, list)
                or payload
            )
        ]
        return self.rng.choice(usable) if usable else None

    async def _early_fault(self, kind: str, payload: Payload) -> web.StreamResponse | None:
        """Faults answered without asking the node."""
        if kind == "429":
            return web.Response(status=429, headers={"Retry-After": "0"}, text="too many requests")
        if kind == "503":
            return web.Response(status=503, text="upstream unavailable")
        if kind == "timeout":
            await asyncio.sleep(self.timeout_s)
            return web.Response(status=504)
        if kind == "html200":
            return web.Response(status=200, content_type="text/html", text="<html><body>Bad gateway</body></html>")
        if kind in ("401", "403"):
            return web.Response(status=int(kind), text="invalid api key" if kind == "401" else "forbidden")
        if kind == "getlogs_error":
            return web.json_response(self._errors(payload, -32603, "failed to query logs", only="eth_getLogs"))
        if kind == "internal_error":
            return web.json_response(self._errors(payload, -32603, "internal error"))
        if kind == "server_error":
            return web.json_response(self._errors(payload, -32000, "backend node returned an unexpected status"))
        return None

    def _errors(self, payload: Payload, code: int, message: str, only: str | None = None) -> Any:
        """An error for every item (or only for ``only``'s items; the others get an error too if single)."""

        def err(item: dict[str, Any]) -> dict[str, Any]:
            return {"jsonrpc": "2.0", "id": item.get("id"), "error": {"code": code, "message": message}}

        if isinstance(payload, list):
            return [err(i) for i in payload if only is None or i.get("method") == only] or [err(payload[0])]
        return err(payload)

    def _late_fault(self, kind: str, payload: Payload, data: Any) -> tuple[Any, bool]:
        """Faults made from the node's real reply."""
        if kind == "truncated":
            text = json.dumps(data)
            return text[: max(1, len(text) // 2)], True
        if kind == "missing_result":
            if isinstance(data, list) and data:
                data[0].pop("result", None)
            elif isinstance(data, dict):
                data.pop("result", None)
            return data, True
        if kind == "wrong_id":
            target = data[0] if isinstance(data, list) and data else data
            if isinstance(target, dict) and isinstance(target.get("id"), int):
                target["id"] += 100_000
            return data, True
        if kind == "batch_item" and isinstance(data, list) and data:
            if self.rng.random() < 0.5 or len(data) == 1:
                data[-1]["id"] = -1  # an item with an id nobody asked for
            else:
                data = data[1:]  # a load balancer lost one item
            return data, True
        if kind == "null_block":
            items = data if isinstance(data, list) else [data]
            reqs = payload if isinstance(payload, list) else [payload]
            by_id = {r.get("id"): r for r in reqs}
            for item in items:
                req = by_id.get(item.get("id"))
                if req and req.get("method") == "eth_getBlockByNumber" and str(req["params"][0]).startswith("0x"):
                    item["result"] = None
                    return data, True
        return data, False

    def _rewrite(self, payload: Payload, data: Any) -> Any:
        """Deterministic rewrites: a wrong chain id, scheduled null blocks."""
        reqs = payload if isinstance(payload, list) else [payload]
        items = data if isinstance(data, list) else [data]
        by_id = {r.get("id"): r for r in reqs if isinstance(r, dict)}
        for item in items:
            if not isinstance(item, dict):
                continue
            req = by_id.get(item.get("id"))
            if req is None:
                continue
            if self.chain_id is not None and req.get("method") == "eth_chainId":
                item["result"] = hex(self.chain_id)
            if req.get("method") == "eth_getBlockByNumber" and self.null_blocks:
                param = str(req["params"][0])
                if param.startswith("0x"):
                    n = int(param, 16)
                    for i, (when, left) in enumerate(self.null_blocks):
                        if left > 0 and when(n):
                            item["result"] = None
                            self.null_blocks[i] = (when, left - 1)
                            self.injected["scheduled_null"] += 1
                            break
        return data
