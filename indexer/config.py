"""Indexer tuning, read once from the environment (defaults fit public providers)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from chains.spec import ChainSpec


@dataclass(frozen=True)
class IndexerConfig:
    """``poll_interval_s`` None: the chain's block time. ``finality_depth``: per-chain override of
    the spec's fallback depth, also the deepest reorg handled before ReorgTooDeep."""

    poll_interval_s: float | None = None
    finality_depth: Mapping[int, int] = field(default_factory=dict)
    batch_events: int = 5_000  # events per write transaction (bounds memory: ~3 batches in flight)
    logs_per_call: int = 2_500  # shrink the getLogs span when a call returns more
    initial_span: int | None = None  # first getLogs span; None: 1, grown by the fetcher
    lock_retry_s: float = 1.0  # how often a standby process tries to take the writer lock
    error_backoff_s: float = 1.0  # pause after an RPC/DB failure before retrying an iteration
    rpc_timeout_s: float = 20.0
    use_finality_tags: bool = True

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> IndexerConfig:
        depths = {
            int(k.removeprefix("RWA_FINALITY_DEPTH_")): int(v)
            for k, v in environ.items()
            if k.startswith("RWA_FINALITY_DEPTH_") and v.strip()
        }
        poll = environ.get("RWA_INDEXER_POLL_S")
        return cls(
            poll_interval_s=float(poll) if poll else None,
            finality_depth=depths,
            batch_events=int(environ.get("RWA_INDEXER_BATCH_EVENTS", 5_000)),
            logs_per_call=int(environ.get("RWA_INDEXER_LOGS_PER_CALL", 2_500)),
            lock_retry_s=float(environ.get("RWA_INDEXER_LOCK_RETRY_S", 1.0)),
            use_finality_tags=environ.get("RWA_INDEXER_FINALITY_TAGS", "1") not in ("0", "false", "no"),
        )

    def depth_for(self, spec: ChainSpec) -> int:
        return self.finality_depth.get(spec.chain_id, spec.finality_depth)

    def poll_for(self, spec: ChainSpec) -> float:
        return self.poll_interval_s if self.poll_interval_s is not None else spec.block_time_s
