"""Indexer tuning, read once from the environment (defaults fit public providers)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from chains.spec import ChainSpec


@dataclass(frozen=True)
class IndexerConfig:
    """``poll_interval_s`` None: the chain's block time. ``finality_depth``: per-chain override of
    the spec's fallback depth, also the deepest reorg handled before ReorgTooDeep."""

    poll_interval_s: float | None = None
    finality_depth: Mapping[int, int] = field(default_factory=dict)
    # events per write batch (bounds memory: ~3 batches in flight; see COMMIT_BATCHES). 10,000 since 2026-12-07:
    # on the Ponder comparison's chain (200,000 Transfers, 5,010 holders, in-process, quiet, two runs each) the
    # backfill took 2.68 / 2.76 s against 3.06 / 3.13 s at 5,000 (CPU 1.46 / 1.48 vs 1.65 / 1.63 s: half the
    # statements and getLogs calls), peak RSS 146 vs 133 MB from `rwa index backfill`; the realistic shape of
    # bench/indexer_backfill.py (200,000 events) the same at both (3.42 / 3.44 vs 3.37 / 3.38 s, 225 MB).
    batch_events: int = 10_000
    logs_per_call: int = 2_500  # shrink the getLogs span when a call returns more
    initial_span: int | None = None  # first getLogs span; None: 1, grown by the fetcher
    lock_retry_s: float = 1.0  # how often a standby process tries to take the writer lock
    error_backoff_s: float = 1.0  # first pause after a failed iteration; doubles (with jitter) while failures last
    error_backoff_max_s: float = 30.0  # ... up to this
    self_check_interval_s: float = 30.0  # how often stored recent block hashes are compared with the node
    rpc_timeout_s: float = 20.0
    use_finality_tags: bool = True

    @classmethod
    def from_settings(cls, settings: Any) -> IndexerConfig:
        """The tuning the settings object read (RWA_INDEXER_*, RWA_FINALITY_DEPTH_<chainid>; core/settings.py)."""
        return cls(
            poll_interval_s=settings.indexer_poll_s,
            finality_depth=settings.chain_ints("RWA_FINALITY_DEPTH_"),
            batch_events=settings.indexer_batch_events,
            logs_per_call=settings.indexer_logs_per_call,
            lock_retry_s=settings.indexer_lock_retry_s,
            self_check_interval_s=settings.indexer_self_check_s,
            use_finality_tags=settings.indexer_finality_tags,
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> IndexerConfig:
        """From the settings object; with an explicit mapping (tests, tools), parsed from it. ValueError naming the
        variable for a value that is not a (positive) number."""
        if environ is None:
            from core.settings import get_settings

            return cls.from_settings(get_settings())
        depths = {
            int(k.removeprefix("RWA_FINALITY_DEPTH_")): _number(environ, k, 0, int, minimum=0)
            for k, v in environ.items()
            if k.startswith("RWA_FINALITY_DEPTH_") and k.removeprefix("RWA_FINALITY_DEPTH_").isdigit() and v.strip()
        }
        return cls(
            poll_interval_s=_number(environ, "RWA_INDEXER_POLL_S", None, float),
            finality_depth=depths,
            batch_events=_number(environ, "RWA_INDEXER_BATCH_EVENTS", 10_000, int),
            logs_per_call=_number(environ, "RWA_INDEXER_LOGS_PER_CALL", 2_500, int),
            lock_retry_s=_number(environ, "RWA_INDEXER_LOCK_RETRY_S", 1.0, float),
            self_check_interval_s=_number(environ, "RWA_INDEXER_SELF_CHECK_S", 30.0, float),
            use_finality_tags=environ.get("RWA_INDEXER_FINALITY_TAGS", "1") not in ("0", "false", "no"),
        )

    def depth_for(self, spec: ChainSpec) -> int:
        return self.finality_depth.get(spec.chain_id, spec.finality_depth)

    def poll_for(self, spec: ChainSpec) -> float:
        return self.poll_interval_s if self.poll_interval_s is not None else spec.block_time_s


def _number(
    environ: Mapping[str, str], name: str, default: Any, kind: Callable[[str], Any], minimum: float = 1e-9
) -> Any:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        value = None
    if value is None or not value >= minimum:  # also refuses nan
        raise ValueError(f"{name} must be a {'positive ' if minimum > 0 else ''}number, got {raw!r}")
    return value
