"""Assets, their lifecycle, valuations and FX rates: the root queries, `node(id)` for assets and valuations, and
the names the schema assembles (types: schema/asset_types.py, mutations: schema/asset_mutations.py). The work is
in resolvers/assets."""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal
from typing import Any

import orjson
import strawberry
from graphql import FieldNode, FragmentSpreadNode, InlineFragmentNode, OperationType
from starlette.requests import Request
from strawberry.types import Info

from resolvers.assets import assets as asset_rules
from resolvers.assets import fx, page_json, valuations
from resolvers.assets.assets import AssetFilter as AssetFilterRow
from resolvers.assets.assets import AssetOrder as AssetOrderModel
from resolvers.assets.assets import AssetRow
from resolvers.assets.loaders import db_lock, valuation_row
from resolvers.assets.token_reads import token_row
from schema.asset_mutations import Mutation
from schema.asset_types import Asset, AssetOrder, AssetStatus, AssetType, FxRate, Issuer, Valuation
from schema.lookups import found
from schema.node import register_node
from schema.pagination import Connection
from schema.permissions import authenticated
from schema.tokens import Token

# what schema/__init__.py assembles and schema/reports.py reads from here
__all__ = ["AssetStatus", "Mutation", "Query"]


@strawberry.input
class AssetFilter:
    status: AssetStatus | None = None
    type: AssetType | None = None
    issuer_id: uuid.UUID | None = None
    chain_id: int | None = strawberry.field(default=None, description="Assets with a token on this chain.")
    jurisdiction: str | None = None
    search: str | None = strawberry.field(default=None, description="Case-insensitive substring of the name.")


@strawberry.type
class Query:
    @strawberry.field(
        extensions=authenticated(), description="An asset; null when missing or not visible to the caller."
    )
    async def asset(self, info: Info, id: uuid.UUID) -> Asset | None:
        async with db_lock(info.context):
            row = await found(asset_rules.get_asset_row(info.context, id))
        return None if row is None else Asset.from_row(row)

    @strawberry.field(extensions=authenticated(), description="Assets visible to the caller; keyset-paginated.")
    async def assets(
        self,
        info: Info,
        filter: AssetFilter | None = None,
        order_by: AssetOrder = AssetOrderModel.CREATED_DESC,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[Asset]:
        f = AssetFilterRow(**vars(filter)) if filter is not None else AssetFilterRow()
        if page_json.ENABLED and _answers_in_json(info):
            plan = page_json.plan(info._raw_info)
            if plan is not None:
                rendered = await asset_rules.list_assets_json(
                    info.context, f, order_by, first, after, last, before, plan.nodes, plan.joins
                )
                count = await rendered.count() if plan.wants_count and rendered.count is not None else None
                text = plan.render(
                    rendered.rows, rendered.cursors, rendered.has_next_page, rendered.has_previous_page, count
                )
                return orjson.Fragment(text.encode())  # type: ignore[return-value]  # spliced by FastExecutor
        wanted = node_fields(info)
        relations = tuple(r for name, r in _RELATIONS.items() if name in wanted)
        page = await asset_rules.list_assets(info.context, f, order_by, first, after, last, before, relations)
        return Connection.from_page(page, (lambda r: _with_relations(*r)) if relations else Asset.from_row)

    @strawberry.field(extensions=authenticated(), description="FX rates, newest as-of first.")
    async def fx_rates(
        self,
        info: Info,
        base: str | None = None,
        quote: str | None = None,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[FxRate]:
        async with db_lock(info.context) as session:
            page = await fx.rates_page(session, base, quote, first, after, last, before)
        return Connection.from_page(page, FxRate.from_row)

    @strawberry.field(extensions=authenticated(), description="Convert an amount at the rate in force on a date.")
    async def convert_amount(
        self, info: Info, amount: Decimal, from_currency: str, to_currency: str, as_of: date
    ) -> Decimal:
        async with db_lock(info.context) as session:
            from resolvers.assets.validation import currency

            return await fx.convert(session, amount, currency(from_currency, "fromCurrency"), to_currency, as_of)


def _answers_in_json(info: Info) -> bool:
    """Whether the answer goes out through orjson (schema/fast_executor.py splices an orjson.Fragment): an HTTP
    request (POST, or a GET persisted query; the response cache stores those bytes) whose operation is a query of
    `assets` fields only. Not a websocket (graphql-transport-ws runs queries too, encoded by json.dumps), not an
    internal caller reading `result.data`, and not beside other root fields: server/json_bodies.encode_http_json
    falls back to json.dumps when orjson refuses a value (an integer beyond 64 bits in another field's JSON),
    which cannot encode a Fragment."""
    context = info.context
    if getattr(context, "per_operation_slots", True) or not isinstance(getattr(context, "request", None), Request):
        return False
    operation = info._raw_info.operation
    return operation.operation is OperationType.QUERY and all(
        isinstance(s, FieldNode) and s.name.value in _JSON_ROOT_FIELDS for s in operation.selection_set.selections
    )


_JSON_ROOT_FIELDS = frozenset({"assets", "__typename"})


def node_fields(info: Info) -> set[str]:
    """Names selected under `edges { node { ... } }` of this connection field (fragments included)."""
    raw = info._raw_info
    out: set[str] = set()
    walked: set[tuple[int, tuple[str, ...]]] = set()  # a selection set is walked once per path, however often spread

    def walk(selection_set, path: tuple[str, ...]) -> None:
        if selection_set is None or (id(selection_set), path) in walked:
            return
        walked.add((id(selection_set), path))
        for sel in selection_set.selections:
            if isinstance(sel, FieldNode):
                name = sel.name.value
                if path == ("edges", "node"):
                    out.add(name)
                elif len(path) < 2 and name == ("edges", "node")[len(path)]:
                    walk(sel.selection_set, (*path, name))
            elif isinstance(sel, InlineFragmentNode):
                walk(sel.selection_set, path)
            elif isinstance(sel, FragmentSpreadNode) and sel.name.value in raw.fragments:
                walk(raw.fragments[sel.name.value].selection_set, path)

    for node in raw.field_nodes:
        walk(node.selection_set, ())
    return out


# Asset field -> relation loaded with the page (resolvers/assets/asset_page.RELATIONS): the rows its DataLoader
# (IssuerByIdLoader, LatestValuationByAssetLoader, TokensByAssetLoader) would give
_RELATIONS = {"issuer": "issuer", "latestValuation": "latest", "tokens": "tokens"}


def _with_relations(row: AssetRow, related: dict[str, Any]) -> Asset:
    node = Asset.from_row(row)
    if "issuer" in related:
        issuer = related["issuer"]
        node._issuer = None if issuer is None else Issuer(id=issuer[0], email=issuer[1])
    if "latest" in related:
        latest = related["latest"]
        node._latest = None if latest is None else Valuation.from_row(valuation_row(latest))
    if "tokens" in related:
        node._tokens = [Token.from_row(token_row(t)) for t in related["tokens"]]
    return node


async def load_asset(info: Info, id: uuid.UUID) -> Asset | None:
    """`node(id)` for an Asset: what `asset(id)` shows (signed-in callers; DRAFT and under-review ones only to
    their issuer and staff)."""
    if not info.context.viewer.authenticated:
        return None
    async with db_lock(info.context):
        row = await found(asset_rules.get_asset_row(info.context, id))
    return None if row is None else Asset.from_row(row)


async def load_valuation(info: Info, id: uuid.UUID) -> Valuation | None:
    """`node(id)` for a Valuation: visible with its asset (`Asset.valuations`)."""
    if not info.context.viewer.authenticated:
        return None
    async with db_lock(info.context) as session:
        row = (await valuations.valuations_by_ids(session, [id])).get(id)
        if row is None or await found(asset_rules.get_asset_row(info.context, row.asset_id)) is None:
            return None
    return Valuation.from_row(row)


register_node("Asset", "assets", load_asset)
register_node("Valuation", "valuations", load_valuation)
