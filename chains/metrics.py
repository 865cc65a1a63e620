"""Prometheus metrics of the RPC client. Labels: chain_id, method, url (scheme://host:port only)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

RPC_REQUESTS = Counter(
    "rwa_rpc_requests_total",
    "JSON-RPC HTTP requests sent (a batch counts once, labelled batch:<method> or batch:mixed)",
    ["chain_id", "method", "url"],
)
RPC_CALLS = Counter(
    "rwa_rpc_calls_total",
    "JSON-RPC calls sent, counting each item of a batch",
    ["chain_id", "method", "url"],
)
RPC_ERRORS = Counter(
    "rwa_rpc_errors_total",
    "JSON-RPC failures by kind (timeout, rate_limited, server_error, unavailable, ...)",
    ["chain_id", "method", "url", "kind"],
)
RPC_LATENCY = Histogram(
    "rwa_rpc_request_seconds",
    "JSON-RPC HTTP request latency, including failed attempts",
    ["chain_id", "method", "url"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
