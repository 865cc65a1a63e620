"""Where each chain's indexer stands for `rwa index status`: the node's head/safe/finalized next to the database's
indexed block.

- `probe_node` asks a node directly;
- the database side (`read_cursor_status`, models/index_status.py) is shared with the GraphQL `indexerStatus` field,
  whose node head is the `head_block` the indexer last wrote into its cursor;
- `chain_status` combines both.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from chains.errors import AllEndpointsFailed, ChainIdMismatch, RpcError
from chains.rpc import RpcClient
from chains.rpc_urls import url_label
from chains.spec import ChainSpec
from models.index_status import DEFAULT_WINDOW_BLOCKS, CursorStatus, read_cursor_status


@dataclass(slots=True)
class NodeStatus:
    """The node side of one chain. `error` is set (and the blocks None) when no endpoint answered."""

    chain_id: int
    endpoints: list[str]  # redacted scheme://host:port labels, never the full URLs
    head_block: int | None = None
    safe_block: int | None = None
    finalized_block: int | None = None
    error: str | None = None

    @property
    def reachable(self) -> bool:
        return self.error is None and self.head_block is not None


async def probe_node(chain_id: int, urls: Sequence[str], *, timeout: float = 5.0) -> NodeStatus:
    """Head, safe and finalized block numbers in one batched round trip (tags the node lacks stay None)."""
    labels = [url_label(u) for u in urls]
    status = NodeStatus(chain_id=chain_id, endpoints=labels)
    if not urls:
        status.error = f"no RPC URL configured (set RPC_URLS_{chain_id})"
        return status
    try:
        async with RpcClient(urls, chain_id=chain_id, timeout=timeout, max_retries=1, backoff_base=0.05) as rpc:
            chain, latest, safe, final = await rpc.batch(
                [
                    ("eth_chainId", []),
                    ("eth_getBlockByNumber", ["latest", False]),
                    ("eth_getBlockByNumber", ["safe", False]),
                    ("eth_getBlockByNumber", ["finalized", False]),
                ],
                return_exceptions=True,
            )
    except RpcError as exc:
        status.error = describe_rpc_error(exc, chain_id, labels)
        return status
    if isinstance(chain, RpcError) or isinstance(latest, RpcError) or latest is None:
        status.error = describe_rpc_error(chain if isinstance(chain, RpcError) else latest, chain_id, labels)
        return status
    if int(chain, 16) != chain_id:
        status.error = str(ChainIdMismatch(expected=chain_id, got=int(chain, 16), url=", ".join(labels)))
        return status
    status.head_block = int(latest["number"], 16)
    status.safe_block = _number(safe)
    status.finalized_block = _number(final)
    return status


def _number(block: Any) -> int | None:
    return int(block["number"], 16) if isinstance(block, dict) and block.get("number") else None


def describe_rpc_error(exc: object, chain_id: int, labels: Sequence[str]) -> str:
    """One line naming the chain and the endpoints (redacted), without the provider's URL paths or keys."""
    where = ", ".join(labels) or "no endpoint"
    if isinstance(exc, AllEndpointsFailed):
        last = exc.last_error
        reason = type(last).__name__ if last is not None else "unreachable"
        return f"chain {chain_id}: RPC unreachable at {where} ({reason})"
    if isinstance(exc, RpcError):
        return f"chain {chain_id}: RPC error at {where}: {exc.message}"
    return f"chain {chain_id}: unexpected RPC reply at {where}"


@dataclass(slots=True)
class ChainStatus:
    """One row of `rwa index status`: the node's view next to the database's."""

    chain_id: int
    chain: str
    configured: bool
    reachable: bool
    error: str | None
    endpoints: list[str]
    head: int | None
    safe: int | None
    finalized: int | None
    indexed: int | None
    lag: int | None
    recent_events: int
    window_blocks: int
    events_per_second: float | None
    cursor_updated_at: str | None = field(default=None)
    state: str = "not indexed"  # ok | stopped | failing | not indexed (models/index_status.py state_of)
    stopped_reason: str | None = None
    error_count: int = 0
    last_error: str | None = None
    backfills: list[dict[str, Any]] = field(default_factory=list)

    @property
    def unhealthy(self) -> bool:
        return self.state in ("stopped", "failing")

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def combine(spec: ChainSpec, node: NodeStatus, cursor: CursorStatus) -> ChainStatus:
    head = node.head_block if node.reachable else cursor.head_block
    lag = max(head - cursor.indexed_block, 0) if head is not None and cursor.indexed_block is not None else None
    return ChainStatus(
        chain_id=spec.chain_id,
        chain=spec.short_name,
        configured=bool(node.endpoints),
        reachable=node.reachable,
        error=node.error,
        endpoints=node.endpoints,
        head=node.head_block,
        safe=node.safe_block,
        finalized=node.finalized_block,
        indexed=cursor.indexed_block,
        lag=lag,
        recent_events=cursor.recent_events,
        window_blocks=cursor.window_blocks,
        events_per_second=cursor.events_per_second,
        cursor_updated_at=cursor.updated_at.isoformat() if cursor.updated_at else None,
        state=cursor.state,
        stopped_reason=cursor.stopped_reason,
        error_count=cursor.error_count,
        last_error=cursor.last_error,
        backfills=[b.as_json() for b in cursor.backfills],
    )


async def chain_status(
    session: AsyncSession,
    specs: Sequence[ChainSpec],
    urls: dict[int, list[str]],
    *,
    timeout: float = 5.0,
    window_blocks: int = DEFAULT_WINDOW_BLOCKS,
) -> list[ChainStatus]:
    """Probe every node concurrently while the database is read."""
    probes = asyncio.gather(*(probe_node(s.chain_id, urls.get(s.chain_id, []), timeout=timeout) for s in specs))
    cursors = await read_cursor_status(session, [s.chain_id for s in specs], window_blocks)
    nodes = await probes
    return [combine(s, n, c) for s, n, c in zip(specs, nodes, cursors)]
