"""Prometheus metrics of the API process (the indexer and RPC client define their own next to their code)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

GRAPHQL_REQUESTS = Counter("rwa_graphql_requests_total", "GraphQL operations executed", ["operation", "operation_type"])
GRAPHQL_LATENCY = Histogram(
    "rwa_graphql_request_seconds",
    "GraphQL operation latency",
    ["operation"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
GRAPHQL_ERRORS = Counter("rwa_graphql_errors_total", "GraphQL errors by extensions.code", ["code"])
HTTP_REQUESTS = Counter("rwa_http_requests_total", "HTTP requests", ["method", "path", "status"])
# gauges: summed over the live worker processes under `rwa serve --workers N` (prometheus multiprocess mode)
DB_POOL_IN_USE = Gauge(
    "rwa_db_pool_connections_in_use", "Database connections checked out", multiprocess_mode="livesum"
)
DB_POOL_SIZE = Gauge("rwa_db_pool_size", "Database pool size", multiprocess_mode="livesum")
WEBSOCKETS_OPEN = Gauge(
    "rwa_websocket_connections_open", "graphql-transport-ws sockets open now", multiprocess_mode="livesum"
)
WEBSOCKETS_OPENED = Counter("rwa_websocket_connections_accepted_total", "graphql-transport-ws sockets accepted")
WEBSOCKETS_CLOSED_BY_SERVER = Counter(
    "rwa_websocket_server_closes_total",
    "Sockets the server closed, by close code (4401 token expired, 4403 revoked)",
    ["code"],
)
SUBSCRIPTIONS_ACTIVE = Gauge(
    "rwa_subscriptions_active",
    "Subscription operations streaming now, by kind "
    "(shared: one execution per process for all subscribers; private: per socket)",
    ["kind"],
    multiprocess_mode="livesum",
)
SUBSCRIPTIONS_STARTED = Counter("rwa_subscriptions_started_total", "Subscription operations started, by kind", ["kind"])
