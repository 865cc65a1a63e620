"""A misbehaving JSON-RPC provider in front of anvil: a seeded share of requests gets 429, 5xx, a
timeout, malformed JSON, a dropped batch item, or (eth_getLogs over wide spans) a range-limit error."""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from typing import Any

import httpx
from aiohttp import web

from chains.anvil import free_port

KINDS = ("429", "503", "timeout", "malformed", "drop_item")


class FaultyRpc:
    def __init__(
        self, upstream: str, *, fault_rate: float = 0.2, max_log_span: int = 8, delay_s: float = 1.5, seed: int = 11
    ) -> None:
        self.upstream = upstream
        self.fault_rate = fault_rate
        self.max_log_span = max_log_span
        self.delay_s = delay_s
        self.rng = random.Random(seed)
        self.injected: Counter[str] = Counter()
        self.port = free_port()
        self._runner: web.AppRunner | None = None
        self._http = httpx.AsyncClient(timeout=30)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> FaultyRpc:
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

    def _too_wide(self, payload: Any) -> dict[str, Any] | None:
        if not isinstance(payload, dict) or payload.get("method") != "eth_getLogs":
            return None
        flt = payload["params"][0]
        lo, hi = int(flt["fromBlock"], 16), int(flt["toBlock"], 16)
        if hi - lo + 1 <= self.max_log_span:
            return None
        self.injected["range_limit"] += 1
        return {
            "jsonrpc": "2.0",
            "id": payload["id"],
            "error": {"code": -32005, "message": "query returned more than 10000 results"},
        }

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        payload = json.loads(body)
        refusal = self._too_wide(payload)
        if refusal is not None:
            return web.json_response(refusal)
        kind = self.rng.choice(KINDS[:-1]) if self.rng.random() < self.fault_rate else None
        if kind is None and isinstance(payload, list) and len(payload) > 1 and self.rng.random() < self.fault_rate:
            kind = "drop_item"
        if kind is not None:
            self.injected[kind] += 1
        if kind == "429":
            return web.Response(status=429, headers={"Retry-After": "0"}, text="too many requests")
        if kind == "503":
            return web.Response(status=503, text="upstream unavailable")
        if kind == "malformed":
            return web.Response(status=200, content_type="application/json", text='{"jsonrpc": "2.0", "resu')
        if kind == "timeout":
            await asyncio.sleep(self.delay_s)  # past the client's timeout; the request is not forwarded
            return web.Response(status=504)
        reply = await self._http.post(self.upstream, content=body, headers={"content-type": "application/json"})
        data = reply.json()
        if kind == "drop_item" and isinstance(data, list) and len(data) > 1:
            data = data[1:]  # a load balancer lost one item of the batch
        return web.json_response(data)
