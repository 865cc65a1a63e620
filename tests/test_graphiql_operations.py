"""The ready-made dashboard operations (server/graphiql_operations.py): valid against the assembled schema, titled
with their role, and runnable with their default variables by every role they name, against the real app."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from graphql import OperationType, get_operation_ast, parse, validate

from core.jwt_keys import KeyRing
from core.settings import Settings
from schema import build_schema
from server import graphiql
from server.graphiql_operations import (
    ANY_SIGNED_IN,
    FIRST_MARKET,
    NOW,
    READY_OPERATIONS,
    STAFF,
    ReadyOperation,
    days_ago,
    resolve_placeholders,
    utc_now,
)
from tests.fixtures.app import TEST_JWT_KEY
from tests.trading.factories import make_market, make_user
from tests.trading.live import api_servers, committed_sessions

QUESTIONS = (
    "asset pipeline",
    "tokenized value by chain",
    "order book",
    "payments by state",
    "indexer status",
    "audit log",
    "trades as they happen",
    "platform kpis",
)


def test_every_dashboard_question_has_an_operation() -> None:
    questions = " ".join(op.question.lower() for op in READY_OPERATIONS)
    assert all(q in questions for q in QUESTIONS), questions


def test_operations_are_valid_and_titled_with_their_role() -> None:
    schema = build_schema(Settings())._schema
    for op in READY_OPERATIONS:
        document = parse(op.tab()["query"])
        assert validate(schema, document) == [], op.query
        assert re.fullmatch(rf"\w+_as{op.roles[0]}", op.operation_name), op.operation_name
        assert get_operation_ast(document, op.operation_name) is not None
        declared = {
            v.variable.name.value
            for d in document.definitions
            for v in (getattr(d, "variable_definitions", None) or ())
        }
        assert set(op.variables) <= declared, (op.operation_name, op.variables)
    # the page's tabs: the explorer's blank tab, then every operation in order
    assert [t["query"] for t in graphiql.EXAMPLE_TABS[1:]] == [op.tab()["query"] for op in READY_OPERATIONS]
    subscriptions = [
        op for op in READY_OPERATIONS if get_operation_ast(parse(op.query)).operation is OperationType.SUBSCRIPTION
    ]
    assert subscriptions and "trades(marketId: $marketId)" in subscriptions[0].query


def test_placeholders_resolve_as_the_page_resolves_them() -> None:
    now = utc_now()
    resolved = resolve_placeholders({"a": NOW, "b": days_ago(30), "c": FIRST_MARKET, "d": 5}, now, "m-1")
    assert resolved["a"] == now.isoformat() and resolved["c"] == "m-1" and resolved["d"] == 5
    assert resolved["b"] < resolved["a"]
    # the page's config carries the same placeholder spellings the JS looks for
    page = graphiql.graphiql_html()
    config = json.loads(page.split('id="graphiql-config">')[1].split("</script>")[0])
    assert config["placeholders"] == {"now": NOW, "firstMarket": FIRST_MARKET}
    assert "/^<(\\d{1,4}) days ago>$/" in (graphiql.STATIC_DIR / "graphiql-init.js").read_text()


@pytest.fixture(scope="module")
def database_url(module_database_url: str) -> str:
    """The API process commits: its rows stay in this module's own database."""
    return module_database_url


@pytest.fixture(scope="module")
def live(database_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A real API process (as dashboards reach it: each request its own session), a market, a user per role."""

    async def build() -> tuple[str, dict[str, uuid.UUID]]:
        async with committed_sessions(database_url) as sf:
            market = await make_market(sf)
            return str(market.market_id), {role: await make_user(sf, [role]) for role in ANY_SIGNED_IN}

    market_id, users = asyncio.run(build())
    keyring = KeyRing.from_settings(Settings(JWT_PRIVATE_KEY=TEST_JWT_KEY))
    tokens = {role: keyring.issue(user_id, [role])[0] for role, user_id in users.items()}
    with api_servers(database_url, redis_url, n=1, data_dir=str(tmp_path_factory.mktemp("ops"))) as servers:
        yield {"url": servers.urls[0], "market_id": market_id, "tokens": tokens}


def _run(live: dict[str, Any], query: str, variables: dict[str, Any], role: str) -> dict[str, Any]:
    response = httpx.post(
        live["url"] + "/graphql",
        json={"query": query, "variables": variables},
        headers={"Authorization": f"Bearer {live['tokens'][role]}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


@pytest.mark.parametrize(
    "operation",
    [op for op in READY_OPERATIONS if not op.query.startswith("subscription")],
    ids=lambda op: op.operation_name,
)
def test_operation_runs_with_its_defaults_as_each_role_it_names(
    operation: ReadyOperation, live: dict[str, Any]
) -> None:
    variables = resolve_placeholders(operation.variables, utc_now(), live["market_id"])
    for role in operation.roles:
        result = _run(live, operation.query, variables, role)
        assert "errors" not in result, (role, result)
        assert result["data"], result


@pytest.mark.parametrize(
    "operation", [op for op in READY_OPERATIONS if op.roles == STAFF], ids=lambda op: op.operation_name
)
def test_staff_operation_is_refused_to_an_investor(operation: ReadyOperation, live: dict[str, Any]) -> None:
    # the role in the title is a requirement, not decoration: below it the operation is FORBIDDEN, or (the asset
    # pipeline) shows only what the caller may see: an investor sees no draft or under-review asset
    variables = resolve_placeholders(operation.variables, utc_now(), live["market_id"])
    result = _run(live, operation.query, variables, "INVESTOR")
    if "AssetPipeline" in operation.operation_name:
        assert "errors" not in result and result["data"]["draft"]["edges"] == [], result
    else:
        assert result["errors"][0]["extensions"]["code"] == "FORBIDDEN", result
