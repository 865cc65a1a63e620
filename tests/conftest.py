"""Shared pytest configuration. Fixtures live in tests/fixtures/<area>.py, one module per area."""

from __future__ import annotations

import pytest

pytest_plugins = [
    "tests.fixtures.db",
    "tests.fixtures.chain",
    "tests.fixtures.app",
]

# The files that take longest (`--durations=60` of full runs: end-to-end processes, browsers, kill -9 cycles), longest
# first. Under pytest-xdist (`--dist loadfile` hands out whole files in collection order) they go out first, so no
# worker is left running a two-minute file alone while the others are idle; one process keeps the collection order.
LONG_FILES = (
    "tests/test_dev_command.py",
    "tests/platform/test_scale_out.py",
    "tests/trading/test_risk_http.py",
    "tests/trading/test_concurrency.py",
    "tests/identity/test_mfa_cli.py",
    "tests/agent_domain/test_demo.py",
    "tests/test_dev_restart.py",
    "tests/platform/test_serve_workers.py",
    "tests/indexer/test_fault_suite.py",
    "tests/clients/test_frontend_clients.py",
    "tests/indexer/test_deferred_indexes.py",
    "tests/agent/test_batches.py",
    "tests/indexer/test_crash.py",
    "tests/indexer/test_health_status.py",
    "tests/agent/test_faults.py",
    "tests/platform/test_serve_embedded.py",
    "tests/test_graphiql_explorer_browser.py",
    "tests/trading/test_market_data.py",
    "tests/platform/test_migration_safety.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not hasattr(config, "workerinput"):  # not an xdist worker
        return
    rank = {path: i for i, path in enumerate(LONG_FILES)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(LONG_FILES)))  # stable: file order kept
