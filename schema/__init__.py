"""Assembles the one GraphQL schema from the per-domain Query/Mutation/Subscription classes."""

from __future__ import annotations

import logging
from inspect import isawaitable
from typing import Any

import strawberry
from graphql import DocumentNode, GraphQLError, OperationDefinitionNode, parse, specified_rules
from graphql import ExecutionResult as GraphQLExecutionResult
from graphql.execution import ExperimentalIncrementalExecutionResults, execute, experimental_execute_incrementally
from graphql.execution.executor import UNEXPECTED_MULTIPLE_PAYLOADS
from graphql.execution.middleware import MiddlewareManager
from graphql.validation import NoSchemaIntrospectionCustomRule
from strawberry.exceptions import MissingQueryError
from strawberry.execution import optimized_is_awaitable
from strawberry.extensions import SchemaExtension
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.schema.schema import DEFAULT_ALLOWED_OPERATION_TYPES, _parse_operation_document, _run_validation
from strawberry.tools import merge_types
from strawberry.types.execution import ExecutionContext, PreExecutionError
from strawberry.types.graphql import OperationType
from strawberry.utils.operation import get_first_operation, get_operation_type

from core.settings import Environment, Settings
from schema import (
    api_keys,
    assets,
    audit,
    chain,
    dev_funding,
    documents,
    identity,
    input_conversion,
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
from schema.extension_runner import _NO_HOOK, LeanExtensionsRunner
from schema.extensions import Limits, OperationLifecycle, OperationNotChosen
from schema.fast_executor import executor_for
from schema.root_field import DECLINED, LATER, RootField, execute_root_field, prepare_root_field
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


log = logging.getLogger("rwa.graphql")

# strawberry's predicate (typed as returning bool, graphql-core wants a TypeGuard)
_IS_AWAITABLE: Any = optimized_is_awaitable
_HOOKED = object()  # RwaSchema._prepare_lean: an extension hooks into parsing or validation
_NO_MIDDLEWARE = MiddlewareManager()  # keeps no state without middlewares (get_field_resolver returns its argument)


# per id of a frozenset of allowed operation types (the view passes the same one on every request): that set and
# the same without subscriptions (hashing an OperationType runs enum's Python __hash__)
_ALLOWED: dict[int, tuple[frozenset[OperationType], frozenset[OperationType]]] = {}


def _without_subscriptions(allowed: Any) -> Any:
    """`allowed` without SUBSCRIPTION (unchanged when it has none)."""
    frozen = type(allowed) is frozenset
    if frozen:
        known = _ALLOWED.get(id(allowed))
        if known is not None and known[0] is allowed:
            return known[1]
    without = set(allowed) - {OperationType.SUBSCRIPTION} if OperationType.SUBSCRIPTION in allowed else allowed
    if frozen:
        if len(_ALLOWED) >= 64:  # callers pass constants; a bound keeps a caller building sets from growing it
            _ALLOWED.clear()
        _ALLOWED[id(allowed)] = (allowed, frozenset(without))
    return without


class OperationExecutionContext(ExecutionContext):
    """strawberry's, with the operation's name and type found once per document: strawberry's properties walk the
    document's definitions on every read (9 walks for one operation: the extensions, the type check, execution
    and the metrics each read them)."""

    _found: tuple[Any, str | None, OperationType | None] = (None, None, None)

    def _operation(self, document: DocumentNode) -> tuple[Any, str | None, OperationType | None]:
        found = self._found
        if found[0] is document:
            return found
        name = self._provided_operation_name
        if name is None:
            # GraphQL spec, GetOperation: without operationName the document must hold exactly one operation.
            # strawberry ran the first one ("mutation B { logout } query A { me }" logged the caller out): now no
            # operation type is found and the request is refused (CannotGetOperationTypeError: HTTP 400).
            if sum(isinstance(d, OperationDefinitionNode) for d in document.definitions) > 1:
                found = self._found = (document, None, None)
                return found
            first = get_first_operation(document)
            name = first.name.value if first is not None and first.name else None
        try:
            op_type: OperationType | None = get_operation_type(document, name)
        except RuntimeError:
            op_type = None
        found = self._found = (document, name, op_type)
        return found

    @property
    def operation_name(self) -> str | None:
        if self._provided_operation_name is not None:
            return self._provided_operation_name
        document = self.graphql_document
        if not document:
            return None
        return self._operation(document)[1]

    @property
    def operation_type(self) -> OperationType:
        document = self.graphql_document
        if not document:
            raise RuntimeError("No GraphQL document available")
        op_type = self._operation(document)[2]
        if op_type is None:
            raise RuntimeError("Can't get GraphQL operation type")
        return op_type


class RwaSchema(strawberry.Schema):
    shared: SharedSubscriptions | None = None
    documents: DocumentCache | None = None
    # graphql-core's execute function for _execute_lean, chosen on first use (the schema's directives are fixed)
    _lean_run: Any = None
    # a single argument-free root field runs without graphql-core's executor (_root_field); off: always graphql-core's
    root_field_path = True

    def _create_execution_context(
        self,
        query,
        allowed_operation_types,
        variable_values=None,
        context_value=None,
        root_value=None,
        operation_name=None,
        operation_extensions=None,
    ):
        return OperationExecutionContext(
            query=query,
            schema=self,
            allowed_operations=allowed_operation_types,
            context=context_value,
            root_value=root_value,
            variables=variable_values,
            provided_operation_name=operation_name,
            operation_extensions=operation_extensions,
        )

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
        if allowed_operation_types is not None:
            allowed_operation_types = _without_subscriptions(allowed_operation_types)
        run = (
            super().execute
            if self.directives or self.config.enable_experimental_incremental_execution
            else self._execute_lean
        )
        return await run(
            query,
            variable_values,
            context_value,
            root_value,
            operation_name,
            allowed_operation_types,
            operation_extensions,
        )

    async def _execute_lean(
        self,
        query,
        variable_values,
        context_value,
        root_value,
        operation_name,
        allowed_operation_types,
        operation_extensions,
    ):
        """strawberry's execute (strawberry 0.341: Schema.execute and _execute_operation) in one frame, for a schema
        without directives or incremental delivery: the same context, extension stages, errors and results in the
        same order, without the await_maybe layers and per-call keyword dictionaries (~5% of a small query's
        CPU). tests/platform/test_json_post_path.py compares answers with strawberry's generic path."""
        ctx = self._create_execution_context(
            query=query,
            allowed_operation_types=(
                DEFAULT_ALLOWED_OPERATION_TYPES if allowed_operation_types is None else allowed_operation_types
            ),
            variable_values=variable_values,
            context_value=context_value,
            root_value=root_value,
            operation_name=operation_name,
            operation_extensions=operation_extensions,
        )
        extensions = [ext if isinstance(ext, SchemaExtension) else ext() for ext in self.extensions]
        for extension in extensions:
            extension.execution_context = ctx
        runner = self.create_extensions_runner(ctx, extensions)
        resolving = [ext for ext in extensions if ext._implements_resolve()]
        # without middleware a manager only hands resolvers back unchanged: one shared instance does that
        middleware = MiddlewareManager(*resolving) if resolving else _NO_MIDDLEWARE
        executor_class = self.execution_context_class
        executor_kwargs: dict[str, Any] = {} if executor_class is None else {"executor_class": executor_class}
        run = self._lean_run
        if run is None:
            # graphql-core's execute is this plus a refusal of schemas declaring @defer/@stream and a coroutine
            # that refuses incremental results: without those directives nothing is delivered incrementally
            run = self._lean_run = (
                execute
                if self._schema.get_directive("defer") or self._schema.get_directive("stream")
                else experimental_execute_incrementally
            )
        try:
            async with runner.operation():
                errors = self._prepare_lean(ctx, runner)
                if errors is _HOOKED:
                    errors = await self._prepare_operation_async(ctx, runner)
                if errors:
                    return await self._handle_execution_result(ctx, errors, runner)
                async with runner.executing():
                    if ctx.result:
                        result = ctx.result
                    elif (root := self._root_field(ctx, executor_class, middleware, run)) is not None and (
                        # one root field, its arguments variables, completed by its plan (schema/root_field.py)
                        result := await execute_root_field(
                            root,
                            ctx.root_value,
                            ctx.context,
                            operation_extensions,
                            _IS_AWAITABLE,
                            lambda: executor_class.build(
                                self._schema,
                                ctx.graphql_document,
                                ctx.root_value,
                                ctx.context,
                                ctx.variables,
                                ctx.operation_name,
                                middleware=middleware,
                                is_awaitable=_IS_AWAITABLE,
                                operation_extensions=operation_extensions,
                            ),
                            ctx.variables,
                        )
                    ) is not DECLINED:
                        ctx.result = result
                    else:  # graphql-core's path (also for variables the root field's path declined: it reports them)
                        result = run(
                            self._schema,
                            ctx.graphql_document,
                            root_value=ctx.root_value,
                            middleware=middleware,
                            variable_values=ctx.variables,
                            operation_name=ctx.operation_name,
                            context_value=ctx.context,
                            is_awaitable=_IS_AWAITABLE,
                            operation_extensions=operation_extensions,
                            **executor_kwargs,
                        )
                        if isawaitable(result):
                            result = await result
                        if isinstance(result, ExperimentalIncrementalExecutionResults):  # as graphql-core's execute
                            raise GraphQLError(UNEXPECTED_MULTIPLE_PAYLOADS)
                        ctx.result = result
                    if isinstance(result, GraphQLExecutionResult) and result.errors:
                        ctx.pre_execution_errors = result.errors
                        self._process_errors(result.errors, ctx)
        except CannotGetOperationTypeError as exc:
            if exc.operation_name is None and not isinstance(exc, OperationNotChosen):
                raise OperationNotChosen() from exc
            raise
        except (MissingQueryError, InvalidOperationTypeError):
            raise
        except Exception as exc:  # noqa: BLE001 - as strawberry: the operation answers with the error
            error = exc if isinstance(exc, GraphQLError) else GraphQLError(str(exc), original_error=exc)
            return await self._handle_execution_result(ctx, PreExecutionError(data=None, errors=[error]), runner)
        return await self._handle_execution_result(ctx, result, runner, skip_process_errors=True)

    def _root_field(self, ctx: ExecutionContext, executor_class: Any, middleware: Any, run: Any) -> RootField | None:
        """The prepared single root field of a document the DocumentCache keeps (see prepare_root_field), found
        once per document and operation name (with the first request whose variables coerce); None for the normal path (also with resolve middleware, or a schema
        declaring @defer/@stream)."""
        documents = self.documents
        if (
            documents is None
            or middleware is not _NO_MIDDLEWARE
            or run is not experimental_execute_incrementally
            or not self.root_field_path
        ):
            return None
        entry = documents.entry(ctx.query) if ctx.query else None
        if entry is None or entry.document is not ctx.graphql_document or executor_class is None:
            return None
        name = ctx.operation_name
        try:
            return entry.root_fields[name]
        except KeyError:
            pass
        try:
            root = prepare_root_field(executor_class, entry.document, name, ctx.variables)
        except Exception:  # noqa: BLE001 - a document the preparation does not foresee: graphql-core runs it
            log.exception("preparing the root field of a document failed")
            root = None
        if root is LATER:  # this request's variables do not coerce: graphql-core reports them, a later one decides
            return None
        entry.root_fields[name] = root
        return root

    def _prepare_lean(self, ctx, runner):
        """strawberry's _prepare_operation_async when no extension hooks into parsing or validation (OperationLifecycle
        parses and validates in its operation hook): the same steps without entering two no-op stages, and without
        a coroutine. _HOOKED when an extension hooks into them (then strawberry's runs)."""
        if runner.parsing() is not _NO_HOOK or runner.validation() is not _NO_HOOK:
            return _HOOKED
        if not ctx.query and ctx.graphql_document is None:
            raise MissingQueryError
        try:
            _parse_operation_document(ctx)
        except GraphQLError as error:
            ctx.pre_execution_errors = [error]
            return PreExecutionError(data=None, errors=[error])
        except Exception as error:  # noqa: BLE001 - as strawberry: answered as a GraphQL error
            error = GraphQLError(str(error), original_error=error)
            ctx.pre_execution_errors = [error]
            return PreExecutionError(data=None, errors=[error])
        try:
            operation_type = ctx.operation_type
        except RuntimeError as error:
            raise CannotGetOperationTypeError(ctx.operation_name) from error
        if operation_type not in ctx.allowed_operations:
            raise InvalidOperationTypeError(operation_type)
        _run_validation(ctx)
        if ctx.pre_execution_errors:
            return PreExecutionError(data=None, errors=ctx.pre_execution_errors)
        return None

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
        max_source_length=settings.max_query_chars,
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
    input_conversion.install(schema)  # input objects built from a plan made once (schema/input_conversion.py)
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
