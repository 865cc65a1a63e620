"""Prometheus metrics of the API process (the indexer and RPC client define their own next to their code)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

GRAPHQL_REQUESTS = Counter(
    "rwa_graphql_requests_total", "GraphQL operations executed", ["operation", "operation_type"]
)
GRAPHQL_LATENCY = Histogram(
    "rwa_graphql_request_seconds",
    "GraphQL operation latency",
    ["operation"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
GRAPHQL_ERRORS = Counter("rwa_graphql_errors_total", "GraphQL errors by extensions.code", ["code"])
HTTP_REQUESTS = Counter("rwa_http_requests_total", "HTTP requests", ["method", "path", "status"])
DB_POOL_IN_USE = Gauge("rwa_db_pool_connections_in_use", "Database connections checked out")
DB_POOL_SIZE = Gauge("rwa_db_pool_size", "Database pool size")
