"""Ready-made dashboard operations, opened as GraphiQL tabs: one per question a dashboard user asks.

Each operation is named `<Question>_as<ROLE>`, so its tab title says the least role that may run it (GraphiQL titles a
tab with its operation name); `roles` lists every role that may. Variables carry defaults that run as they are:
a few placeholders are filled in by the page (server/static/graphiql-init.js), because they depend on the clock or on
the data:

- `"<now>"` and `"<N days ago>"`: ISO-8601 instants computed when the page loads;
- `"<first market id>"`: the id of the first market the signed-in user can see, filled in when its tab is opened.

tests/test_graphiql_operations.py validates every operation against the assembled schema and runs it, as its role,
against the real app.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

NOW = "<now>"
FIRST_MARKET = "<first market id>"
ANY_SIGNED_IN = ("INVESTOR", "ISSUER", "COMPLIANCE", "ADMIN")
STAFF = ("COMPLIANCE", "ADMIN")
_DAYS_AGO = re.compile(r"^<(\d{1,4}) days ago>$")


def days_ago(n: int) -> str:
    return f"<{n} days ago>"


@dataclass(frozen=True)
class ReadyOperation:
    question: str  # the dashboard question it answers
    roles: tuple[str, ...]  # who may run it; the first is the tab's label
    query: str
    variables: dict[str, Any] = field(default_factory=dict)

    @property
    def operation_name(self) -> str:
        match = re.search(r"^(?:query|subscription)\s+(\w+)", self.query, re.MULTILINE)
        assert match, self.query
        return match.group(1)

    def tab(self) -> dict[str, str]:
        header = f"# {self.question}\n# Runs as: {' or '.join(self.roles)}. Sign in with the bar above, then Run.\n"
        tab = {"query": header + self.query}
        if self.variables:
            tab["variables"] = json.dumps(self.variables, indent=2)
        return tab


def resolve_placeholders(variables: dict[str, Any], now: datetime, first_market_id: str | None) -> dict[str, Any]:
    """What the page does to a tab's variables (tests use it to run the operations as the page would)."""

    def value(v: Any) -> Any:
        if v == NOW:
            return now.isoformat()
        if v == FIRST_MARKET and first_market_id is not None:
            return first_market_id
        if isinstance(v, str) and (m := _DAYS_AGO.match(v)):
            return (now - timedelta(days=int(m.group(1)))).isoformat()
        return v

    return {k: value(v) for k, v in variables.items()}


def utc_now() -> datetime:
    return datetime.now(UTC)


READY_OPERATIONS: tuple[ReadyOperation, ...] = (
    ReadyOperation(
        "Who am I? The signed-in user (or the API key's owner) and their roles.",
        ANY_SIGNED_IN,
        "query Me_asINVESTOR {\n  me {\n    id\n    email\n    roles\n    status\n  }\n}\n",
    ),
    ReadyOperation(
        "Asset pipeline by status: what is waiting for review, approved, being tokenized, live.",
        STAFF,
        "query AssetPipeline_asCOMPLIANCE($first: Int = 20) {\n"
        "  draft: assets(filter: {status: DRAFT}, first: $first) { ...PipelineStage }\n"
        "  underReview: assets(filter: {status: UNDER_REVIEW}, first: $first) { ...PipelineStage }\n"
        "  approved: assets(filter: {status: APPROVED}, first: $first) { ...PipelineStage }\n"
        "  tokenizing: assets(filter: {status: TOKENIZING}, first: $first) { ...PipelineStage }\n"
        "  active: assets(filter: {status: ACTIVE}, first: $first) { ...PipelineStage }\n"
        "  suspended: assets(filter: {status: SUSPENDED}, first: $first) { ...PipelineStage }\n"
        "}\n\n"
        "fragment PipelineStage on AssetConnection {\n"
        "  edges {\n    node {\n      id\n      name\n      type\n      status\n      jurisdiction\n"
        "      issuerId\n      updatedAt\n    }\n  }\n"
        "  pageInfo {\n    hasNextPage\n    endCursor\n  }\n"
        "}\n",
        {"first": 20},
    ),
    ReadyOperation(
        "Tokenized value by chain: live assets per chain with their latest valuation and token supply.",
        ANY_SIGNED_IN,
        "query TokenizedValueByChain_asINVESTOR($status: AssetStatus = ACTIVE, $first: Int = 50) {\n"
        "  ethereum: assets(filter: {status: $status, chainId: 1}, orderBy: VALUATION_DESC, first: $first) {\n"
        "    ...TokenizedValue\n  }\n"
        "  polygon: assets(filter: {status: $status, chainId: 137}, orderBy: VALUATION_DESC, first: $first) {\n"
        "    ...TokenizedValue\n  }\n"
        "  bsc: assets(filter: {status: $status, chainId: 56}, orderBy: VALUATION_DESC, first: $first) {\n"
        "    ...TokenizedValue\n  }\n"
        "}\n\n"
        "fragment TokenizedValue on AssetConnection {\n"
        "  edges {\n    node {\n      name\n      currency\n"
        "      latestValuation {\n        amount\n        currency\n        asOf\n      }\n"
        "      tokens {\n        chainId\n        chainName\n        symbol\n        address\n        totalSupply\n"
        "        decimals\n        holderCount\n      }\n    }\n  }\n"
        "}\n",
        {"status": "ACTIVE", "first": 50},
    ),
    ReadyOperation(
        "A market's order book and last trades (the markets list shows the ids).",
        ANY_SIGNED_IN,
        "query OrderBookAndTrades_asINVESTOR($marketId: UUID!, $depth: Int! = 10, $lastTrades: Int = 20) {\n"
        "  markets {\n    id\n    symbol\n    status\n  }\n"
        "  orderBook(marketId: $marketId, depth: $depth) {\n    sequence\n"
        "    bids {\n      price\n      quantity\n    }\n    asks {\n      price\n      quantity\n    }\n  }\n"
        "  trades(marketId: $marketId, first: $lastTrades) {\n"
        "    edges {\n      node {\n        sequence\n        price\n        quantity\n        takerSide\n"
        "        createdAt\n      }\n    }\n  }\n"
        "}\n",
        {"marketId": FIRST_MARKET, "depth": 10, "lastTrades": 20},
    ),
    ReadyOperation(
        "Payments by state: totals per state, method, currency and chain, and the payments in one state.",
        STAFF,
        "query PaymentsByState_asCOMPLIANCE($from: DateTime!, $to: DateTime!, $state: PaymentState = AWAITING_FUNDS,"
        " $first: Int = 20) {\n"
        "  settlementReport(from: $from, to: $to) {\n    state\n    method\n    currency\n    chainId\n    count\n"
        "    amount\n    received\n    credited\n    refunded\n    refundable\n  }\n"
        "  payments(state: $state, createdFrom: $from, createdTo: $to, first: $first) {\n"
        "    edges {\n      node {\n        id\n        userId\n        state\n        method\n        amount\n"
        "        currency\n        chainId\n        createdAt\n      }\n    }\n  }\n"
        "}\n",
        {"from": days_ago(30), "to": NOW, "state": "AWAITING_FUNDS", "first": 20},
    ),
    ReadyOperation(
        "Platform KPIs: assets by status, tokenized value, trading volume and fees (24h/7d/30d), fees earned, "
        "payments by state; a snapshot the worker refreshes every 30 s, cheap to poll.",
        STAFF,
        "query PlatformKpis_asCOMPLIANCE {\n"
        "  platformKpis {\n    computedAt\n    ageSeconds\n"
        "    assetsByStatus {\n      status\n      count\n    }\n"
        "    tokenizedValue {\n      currency\n      amount\n      assets\n    }\n"
        "    tradingVolume {\n      window\n      currency\n      volume\n      trades\n      fees\n    }\n"
        "    feesEarned {\n      currency\n      amount\n    }\n"
        "    paymentsByState {\n      state\n      currency\n      count\n      amount\n    }\n  }\n"
        "}\n",
    ),
    ReadyOperation(
        "Indexer status per chain: head, safe, finalized and indexed blocks, lag, events/s, errors.",
        ANY_SIGNED_IN,
        "query IndexerStatus_asINVESTOR($chainId: Int) {\n"
        "  indexerStatus(chainId: $chainId) {\n    chainId\n    chain\n    state\n    headBlock\n    safeBlock\n"
        "    finalizedBlock\n    indexedBlock\n    lag\n    eventsPerSecond\n    errorCount\n    lastError\n"
        "    stoppedReason\n    updatedAt\n  }\n"
        "}\n",
        {"chainId": None},
    ),
    ReadyOperation(
        "The audit log, newest first (action: exact, or a prefix ending in '.*', e.g. \"kyc.*\").",
        STAFF,
        "query AuditLog_asCOMPLIANCE($action: String, $since: DateTime, $first: Int = 50) {\n"
        "  auditLog(action: $action, since: $since, first: $first) {\n"
        "    edges {\n      node {\n        at\n        actorId\n        action\n        targetType\n        targetId\n"
        "        requestId\n        details\n      }\n    }\n"
        "    pageInfo {\n      hasNextPage\n      endCursor\n    }\n  }\n"
        "}\n",
        {"action": None, "since": days_ago(7), "first": 50},
    ),
    ReadyOperation(
        "A market's trades as they happen (graphql-transport-ws; Run starts it, Stop ends it).",
        ANY_SIGNED_IN,
        "subscription LiveTrades_asINVESTOR($marketId: UUID!) {\n"
        "  trades(marketId: $marketId) {\n    sequence\n    snapshot\n"
        "    trades {\n      sequence\n      price\n      quantity\n      takerSide\n      createdAt\n    }\n  }\n"
        "}\n",
        {"marketId": FIRST_MARKET},
    ),
)
