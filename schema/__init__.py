"""Assembles the one GraphQL schema from the per-domain Query/Mutation/Subscription classes."""

from __future__ import annotations

import strawberry
from graphql import DocumentNode, GraphQLError, parse, specified_rules
from graphql.validation import NoSchemaIntrospectionCustomRule
from strawberry.tools import merge_types
from strawberry.types.graphql import OperationType

from core.settings import Environment, Settings
from schema import (
    api_keys,
    assets,
    audit,
    chain,
    dev_funding,
    documents,
    identity,
    issuance,
    kyc,
    market_data,
    node,
    oauth,
    operations,
    payments,
    privacy,
    reports,
    settlements,
    sharing,
    tokens,
    trading,
    trading_risk,
    wallets,
    withdrawals,
)
from schema.descriptions import describe
from schema.document_cache import DocumentCache
from schema.extension_runner import LeanExtensionsRunner
from schema.extensions import Limits, OperationLifecycle
from schema.fast_executor import executor_for
from schema.scalars import SCALAR_OVERRIDES
from schema.shared_subscriptions import SharedSubscriptions, subscription_fields
from schema.suggestions import HideSuggestions, without_suggestions

QUERIES: tuple[type, ...] = (identity.Query, kyc.Query, wallets.Query, api_keys.Query, audit.Query, chain.Query)
QUERIES += (assets.Query, documents.Query, tokens.Query)
MUTATIONS: tuple[type, ...] = (identity.Mutation, kyc.Mutation, wallets.Mutation, api_keys.Mutation)
MUTATIONS += (assets.Mutation, documents.Mutation)
QUERIES += (trading.Query, node.Query)
MUTATIONS += (trading.Mutation,)
SUBSCRIPTIONS: tuple[type, ...] = ()
QUERIES += (payments.Query,)
MUTATIONS += (payments.Mutation,)
SUBSCRIPTIONS += (payments.Subscription,)
QUERIES += (operations.Query,)
MUTATIONS += (operations.Mutation,)
QUERIES += (issuance.Query,)
MUTATIONS += (issuance.Mutation,)
SUBSCRIPTIONS += (issuance.Subscription,)
# Development-only root fields (schema/dev_funding.py: funding without a payment): absent from production
DEV_MUTATIONS: tuple[type, ...] = (dev_funding.DevMutation,)


# Whether a subscription's results are shared across sockets is declared on its field (schema/sharing.py: SHARED,
# SHARED_WITH_SNAPSHOT or PRIVATE; undeclared is private). These lists are no longer read.
PERSONAL_SUBSCRIPTIONS: frozenset[str] = frozenset()
SNAPSHOT_SUBSCRIPTIONS: frozenset[str] = frozenset()
SUBSCRIPTIONS += (market_data.Subscription,)
QUERIES += (market_data.Query,)
SUBSCRIPTIONS += (settlements.Subscription,)
PERSONAL_SUBSCRIPTIONS |= {"mySettlements"}
QUERIES += (withdrawals.Query,)
MUTATIONS += (withdrawals.Mutation,)
SUBSCRIPTIONS += (withdrawals.Subscription,)
QUERIES += (trading_risk.Query,)
MUTATIONS += (trading_risk.Mutation,)
QUERIES += (reports.Query,)
QUERIES += (oauth.Query,)
MUTATIONS += (oauth.Mutation,)
QUERIES += (privacy.Query,)
MUTATIONS += (privacy.Mutation,)


class RwaSchema(strawberry.Schema):
    shared: SharedSubscriptions | None = None
    documents: DocumentCache | None = None

    def create_extensions_runner(self, execution_context, extensions):
        """Hooks looked up and wrapped once per extension class, not per operation (schema/extension_runner.py)."""
        return LeanExtensionsRunner(execution_context=execution_context, extensions=extensions)

    def process_errors(self, errors, execution_context=None):
        """Expected errors are the client's business; OperationLifecycle logs the unexpected ones with their traceback."""

    def _document(self, query: str) -> DocumentNode | None:
        """Parsed through the bounded DocumentCache (a schema built without one, in unit tests, parses here)."""
        if self.documents is not None:
            return self.documents.document(query)
        try:
            return parse(query, max_tokens=2000)
        except GraphQLError:
            return None

    async def execute(
        self,
        query,
        variable_values=None,
        context_value=None,
        root_value=None,
        operation_name=None,
        allowed_operation_types=None,
        operation_extensions=None,
    ):
        """HTTP requests never run subscriptions (they need the graphql-transport-ws websocket): strawberry allows
        them over GET/POST for a multipart protocol this API does not serve, and executed like a query a subscription
        answered INTERNAL. Refused instead as an operation type the method does not allow (400 BAD_USER_INPUT)."""
        if allowed_operation_types is not None and OperationType.SUBSCRIPTION in allowed_operation_types:
            allowed_operation_types = set(allowed_operation_types) - {OperationType.SUBSCRIPTION}
        return await super().execute(
            query,
            variable_values,
            context_value,
            root_value,
            operation_name,
            allowed_operation_types,
            operation_extensions,
        )

    async def stream(
        self,
        query,
        variable_values=None,
        context_value=None,
        root_value=None,
        operation_name=None,
        operation_extensions=None,
        allowed_operation_types=None,
    ):
        """Subscriptions declared shared run once per distinct operation per process and fan out
        (SharedSubscriptions); private ones run per subscriber."""
        fields = subscription_fields(self._document(query), operation_name) if (self.shared and query) else None
        if not (self.shared and self.shared.shareable(fields)):  # private (the default): one execution each
            return await super().stream(
                query,
                variable_values,
                context_value,
                root_value,
                operation_name,
                operation_extensions,
                allowed_operation_types,
            )
        stream = super().stream

        async def start(ctx):
            return await stream(
                query, variable_values, ctx, root_value, operation_name, operation_extensions, allowed_operation_types
            )

        key = self.shared.key(query, variable_values, operation_name, fields, getattr(context_value, "viewer", None))
        return await self.shared.join(key, fields, context_value, start)


def build_schema(settings: Settings) -> strawberry.Schema:
    query = merge_types("Query", QUERIES)
    mutation = merge_types("Mutation", MUTATIONS if settings.is_production else (*MUTATIONS, *DEV_MUTATIONS))
    subscription = merge_types("Subscription", SUBSCRIPTIONS) if SUBSCRIPTIONS else None
    # depth, aliases and field merging are checked first, in linear time (schema/document_limits.py), then
    # graphql-core's rules and (when off) introspection, inside the one cached validation
    rules = tuple(specified_rules)
    if not settings.introspection:
        # and no "Did you mean ...?" naming schema fields either (schema/suggestions.py)
        rules = (HideSuggestions, *rules, NoSchemaIntrospectionCustomRule)
    documents = DocumentCache(
        max_entries=settings.parser_cache_size,
        max_bytes=settings.document_cache_bytes,
        max_document_chars=settings.document_cache_max_chars,
        max_tokens=settings.max_query_tokens,
        rules=rules,
        max_depth=settings.max_query_depth,
        max_aliases=settings.max_aliases,
    )
    limits = Limits(documents, settings.max_query_cost)
    schema = RwaSchema(
        query=query,
        mutation=mutation,
        subscription=subscription,
        extensions=[lambda: OperationLifecycle(limits)],
        scalar_overrides=SCALAR_OVERRIDES,
    )
    describe(schema._schema)  # arguments and fields their definition leaves undescribed (schema/descriptions.py)
    documents.schema = schema._schema
    schema.documents = documents
    schema.execution_context_class = executor_for(schema)
    if not settings.introspection:
        schema.execution_context_class = without_suggestions(schema.execution_context_class)
    # which results are shared is declared on each subscription field (schema/sharing.py)
    schema.shared = SharedSubscriptions(
        shared_fields=sharing.shared_fields(schema._schema), snapshot_fields=sharing.snapshot_fields(schema._schema)
    )
    if not settings.shared_subscriptions:  # RWA_SHARED_SUBSCRIPTIONS=0: per-subscriber execution (benchmarks)
        schema.shared = None
    return schema


def production_sdl() -> str:
    """The SDL committed as schema.graphql: the schema production serves (development adds DEV_MUTATIONS)."""
    return build_schema(Settings(RWA_ENV=Environment.PRODUCTION)).as_str() + "\n"
