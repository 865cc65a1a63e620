"""Prometheus metrics of the indexer process (RPC metrics live in chains/metrics.py)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, start_http_server

NODE_HEAD = Gauge("rwa_indexer_node_head_block", "Latest block number the node reports", ["chain_id"])
SAFE_BLOCK = Gauge("rwa_indexer_safe_block", "Safe block (node tag or depth fallback)", ["chain_id"])
FINALIZED_BLOCK = Gauge("rwa_indexer_finalized_block", "Finalized block (node tag or depth fallback)", ["chain_id"])
INDEXED_BLOCK = Gauge("rwa_indexer_indexed_block", "Last block whose events are committed", ["chain_id"])
LAG_BLOCKS = Gauge("rwa_indexer_lag_blocks", "Node head minus indexed block", ["chain_id"])
EVENTS_WRITTEN = Counter("rwa_indexer_events_written_total", "Raw events newly inserted", ["chain_id", "event"])
BATCHES_WRITTEN = Counter("rwa_indexer_batches_total", "Write transactions committed", ["chain_id"])
REORGS = Counter("rwa_indexer_reorgs_total", "Reorgs rolled back, by depth in blocks", ["chain_id", "depth"])
REORGS_TOO_DEEP = Counter("rwa_indexer_reorgs_too_deep_total", "Reorgs beyond the finality window", ["chain_id"])
IS_LEADER = Gauge("rwa_indexer_leader", "1 while this process holds the chain's writer lock", ["chain_id"])
ITERATION_ERRORS = Counter(
    "rwa_indexer_errors_total", "Failed iterations (retried) by error type", ["chain_id", "error"]
)


def observe_heads(chain_id: int, head: int, safe: int, finalized: int, indexed: int) -> None:
    c = str(chain_id)
    NODE_HEAD.labels(c).set(head)
    SAFE_BLOCK.labels(c).set(safe)
    FINALIZED_BLOCK.labels(c).set(finalized)
    INDEXED_BLOCK.labels(c).set(indexed)
    LAG_BLOCKS.labels(c).set(max(0, head - indexed))


def start_metrics_server(port: int, host: str = "127.0.0.1") -> None:
    """Serve /metrics (default registry: indexer and RPC metrics) from a background thread."""
    start_http_server(port, addr=host)
