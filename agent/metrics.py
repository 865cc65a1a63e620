"""Prometheus metrics of the agent (per chain and signer address): the same numbers as `rwa agent status`."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

GAS_BALANCE = Gauge("rwa_agent_signer_balance_wei", "Native balance of the signer", ["chain_id", "address"])
GAS_LOW = Gauge(
    "rwa_agent_signer_gas_low",
    "1 while the signer's balance is below the threshold (sending paused)",
    ["chain_id", "address"],
)
NEXT_NONCE = Gauge("rwa_agent_next_nonce", "Next nonce the sender would use", ["chain_id", "address"])
PENDING = Gauge("rwa_agent_pending_operations", "Operations not yet confirmed or failed", ["chain_id", "address"])
OLDEST_PENDING_AGE = Gauge(
    "rwa_agent_oldest_pending_age_seconds", "Age of the oldest open operation", ["chain_id", "address"]
)
REFUSED = Gauge(
    "rwa_agent_refused_operations",
    "Signed transactions (operations, or cancels of them) the node refuses for lack of gas funds at the last try: "
    "fund the sender, or cancel the operation (cancelOperation)",
    ["chain_id", "address"],
)
CANCELING = Gauge(
    "rwa_agent_canceling_operations",
    "Operators' cancels of signed operations (REPLACED) whose nonce is not settled yet (agent/cancels.py; the "
    "sender's resend read counts them, up to RWA_AGENT_BATCH + 1)",
    ["chain_id", "address"],
)
ORPHANED = Gauge(
    "rwa_agent_orphaned_operations",
    "Operations holding a nonce (SIGNED, BROADCAST, MINED, REPLACED) of an address no configured signer has any more "
    "(its key rotated out): nothing advances them until that key is configured again (README, agent section)",
    ["chain_id", "address"],
)
IS_SENDER = Gauge("rwa_agent_sender", "1 while this process holds the sender lock", ["chain_id", "address"])
TRANSITIONS = Counter("rwa_agent_operations_total", "Operations reaching a state", ["chain_id", "state"])
BROADCASTS = Counter("rwa_agent_broadcasts_total", "Raw transactions sent, by why", ["chain_id", "why"])
FOREIGN_NONCES = Counter("rwa_agent_foreign_nonces_total", "Nonces found used outside the platform", ["chain_id"])
ERRORS = Counter("rwa_agent_errors_total", "Failed iterations (retried) by error type", ["chain_id", "error"])
CONFIRM_LATENCY = Histogram(
    "rwa_agent_confirm_seconds",
    "Enqueue to CONFIRMED",
    ["chain_id"],
    buckets=(1, 2, 5, 10, 30, 60, 120, 300, 900, 3600),
)
STEP_SECONDS = Histogram(
    "rwa_agent_step_seconds",
    "Time per executor step (read, sign, receipts, confirm)",
    ["chain_id", "step"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
