"""Assembles the one GraphQL schema from the per-domain Query/Mutation/Subscription classes."""

from __future__ import annotations

import strawberry
from strawberry.extensions import (
    DisableIntrospection,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    ValidationCache,
)
from strawberry.tools import merge_types

from core.settings import Settings
from schema import identity
from schema.extensions import CloseSession, ErrorCodes, OperationMetrics, ReadOnlyApiKeys

QUERIES: tuple[type, ...] = (identity.Query,)
MUTATIONS: tuple[type, ...] = (identity.Mutation,)
SUBSCRIPTIONS: tuple[type, ...] = ()


class RwaSchema(strawberry.Schema):
    def process_errors(self, errors, execution_context=None):  # type: ignore[no-untyped-def,override]
        """Expected errors are the client's business; ErrorCodes logs the unexpected ones with their traceback."""


def build_schema(settings: Settings) -> strawberry.Schema:
    query = merge_types("Query", QUERIES)
    mutation = merge_types("Mutation", MUTATIONS)
    subscription = merge_types("Subscription", SUBSCRIPTIONS) if SUBSCRIPTIONS else None
    extensions: list = [
        CloseSession,
        OperationMetrics,
        ErrorCodes,
        MaxTokensLimiter(max_token_count=settings.max_query_tokens),
        lambda: ParserCache(maxsize=settings.parser_cache_size),
        lambda: ValidationCache(maxsize=settings.parser_cache_size),
        QueryDepthLimiter(max_depth=settings.max_query_depth),
        MaxAliasesLimiter(max_alias_count=settings.max_aliases),
        ReadOnlyApiKeys,
    ]
    if not settings.introspection:
        extensions.append(DisableIntrospection)
    return RwaSchema(query=query, mutation=mutation, subscription=subscription, extensions=extensions)
