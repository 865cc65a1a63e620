"""Health of a running `rwa index run`, for its ops port (core/ops_server.py): read from the metrics the pipeline
already keeps, on the ops server's thread.

- liveness: the process's event loop still turns (a heartbeat); never the chains' state (restarting cannot fix a
  deep reorg, docs/runbooks/indexer-deep-reorg.md);
- readiness: every chain is either followed by this process (writer) within `max_lag` blocks of the node's head, or
  waiting as a standby for the writer lock; a chain stopped by a reorg deeper than finality is not ready.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import REGISTRY

from core.ops_server import Heartbeat


def _sample(name: str, chain_id: int) -> float | None:
    return REGISTRY.get_sample_value(name, {"chain_id": str(chain_id)})


def chain_health(chain_id: int, max_lag: int) -> tuple[bool, dict[str, Any]]:
    if (_sample("rwa_indexer_reorgs_too_deep_total", chain_id) or 0) > 0:
        return False, {"role": "stopped", "reason": "ReorgTooDeep"}
    if _sample("rwa_indexer_leader", chain_id) != 1:
        return True, {"role": "standby"}
    lag = _sample("rwa_indexer_lag_blocks", chain_id)
    details: dict[str, Any] = {
        "role": "writer",
        "lagBlocks": None if lag is None else int(lag),
        "indexedBlock": _sample("rwa_indexer_indexed_block", chain_id),
    }
    if lag is None:  # elected, first step not done yet
        return True, details
    return lag <= max_lag, details


def readiness(chain_ids: list[int], heartbeat: Heartbeat, max_lag: int):
    def check() -> tuple[bool, dict[str, Any]]:
        alive, beat = heartbeat.check()
        chains = {}
        ok = alive
        for cid in chain_ids:
            chain_ok, details = chain_health(cid, max_lag)
            chains[str(cid)] = {**details, "ready": chain_ok}
            ok = ok and chain_ok
        return ok, {**beat, "maxLagBlocks": max_lag, "chains": chains}

    return check
