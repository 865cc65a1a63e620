"""Shared pytest configuration. Fixtures live in tests/fixtures/<area>.py, one module per area."""

pytest_plugins = [
    "tests.fixtures.db",
    "tests.fixtures.chain",
    "tests.fixtures.app",
]
