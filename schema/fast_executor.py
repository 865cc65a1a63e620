"""Cheaper field resolution: an executor that completes plain scalar fields without graphql-core's per-field
machinery, and object fields of plain selections by plans (schema.plans).

A list page resolves hundreds of fields that are plain attributes of already loaded objects (`id`, `name`,
`status`, ...). For each, graphql-core builds a resolve-info object, Strawberry calls three wrapper functions
to do a `getattr`, and the value goes through four type checks before it is serialized: ~5 µs per field, most
of a list request's CPU. Here such fields (Strawberry "basic" fields: no resolver, no field extensions, on a
leaf type) are read with `getattr` and serialized by their type directly.

Anything unusual takes graphql-core's own path, which then produces the exact same result or error: a missing
attribute, a null value, a value the type refuses to serialize, a schema with resolve middleware.

Plain fields of object type (`edges`, `node`, `pageInfo`) keep graphql-core's path but resolve with one `getattr`
(schema.lean_resolvers). An object field whose selection is plain at every depth is completed by its plan, built
here once per operation (see schema.plans).

A query whose one root field takes no arguments and whose selection has a plan (`{ me { id email roles } }`) runs
without graphql-core's executor at all (`prepare_root_field`, `execute_root_field`): its resolver is called with
the same info graphql-core builds, its value completed by the plan. Anything else about the value (an error, a
null, an object of another class, a value the plan refuses) is completed by graphql-core's own executor from the
value in hand, so the answer and its errors are graphql-core's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from graphql import (
    DocumentNode,
    ExecutionResult,
    FieldNode,
    FragmentDefinitionNode,
    GraphQLError,
    GraphQLField,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    OperationDefinitionNode,
    OperationType,
    Undefined,
)
from graphql.execution.collect_fields import collect_fields
from graphql.pyutils import Path, gather_with_cancel
from graphql.type.definition import GraphQLResolveInfoHelpers
from strawberry.execution import optimized_is_awaitable
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext, _OperationContextAwareGraphQLResolveInfo

from schema.lean_resolvers import NOT_LOADED, install_lean_resolvers
from schema.plans import (
    EVALUATED,
    LEAF,
    OBJECT,
    PASSTHROUGH,
    TYPENAME,
    Impure,
    ObjectFields,
    PlainFields,
    Plan,
    complete,
    directive_free,
    plain_leaf_fields,
    plain_object_fields,
)

_NONE: dict[str, Any] = {}


class FastExecutor(StrawberryGraphQLCoreExecutionContext):
    """Set `plain` and `objects` (of the schema) on a subclass per schema; see `executor_for`."""

    plain: PlainFields = {}
    objects: ObjectFields = {}
    # per (object type name, ids of the field nodes): the nodes (kept alive: their ids are the key) and the plan of
    # that selection, shared by every operation of the document (see collect_and_execute_subfields); per schema
    shared_plans: dict[tuple[str, tuple[int, ...]], tuple[tuple[Any, ...], Plan | None]] = {}
    # the schema whose types the tables describe (prepare_root_field refuses documents of another)
    graphql_schema: GraphQLSchema | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        manager = self.middleware_manager
        self._fast = not (manager is not None and manager.middlewares)
        # per (object type, field group): the group (kept alive: its id is the key) and its plan, or None
        self._plans: dict[tuple[str, int], tuple[Any, Plan | None]] = {}

    def _plan(self, object_type: GraphQLObjectType, details: Any) -> Plan | None:
        """The plan completing values of `object_type` for this field group (see Plan), or None when one of its
        fields, at any depth, needs graphql-core's path (a resolver, a directive, @defer, an abstract type)."""
        key = (object_type.name, id(details))
        known = self._plans.get(key)
        if known is not None:
            return known[1]
        self._plans[key] = (details, None)  # a selection cannot nest itself, but the guard costs nothing
        grouped, new_defer_usages, _ = self.collect_subfields(object_type, details)
        plan = None if new_defer_usages else self._compile(object_type, grouped)
        self._plans[key] = (details, plan)
        return plan

    def collect_and_execute_subfields(
        self,
        return_type: GraphQLObjectType,
        field_details_list: Any,
        path: Path,
        result: Any,
        position_context: Any,
    ) -> Any:
        """An object value graphql-core has checked (a resolver's answer: `me`, a mutation's payload) completed by
        the plan of its selection when it has one (see Plan); otherwise, or when the value does not fit the plan,
        graphql-core's path as before."""
        if self._fast and position_context is None:
            plan = self._shared_plan(return_type, field_details_list)
            if plan is not None:
                try:
                    return complete(plan, result, False, None)
                except Impure:
                    pass  # graphql-core's path completes it (plans only read: nothing ran twice)
        return super().collect_and_execute_subfields(return_type, field_details_list, path, result, position_context)

    async def complete_awaitable_value(
        self,
        return_type: Any,
        field_details_list: Any,
        info: Any,
        path: Path,
        result: Any,
        position_context: Any,
    ) -> Any:
        """graphql-core's, without its with_abort_signal coroutine around the resolver's awaitable when there is no
        abort signal (then it only awaits it): one layer less resumed on every suspension of an async resolver."""
        if self.abort_signal is not None:
            return await super().complete_awaitable_value(
                return_type, field_details_list, info, path, result, position_context
            )
        try:
            resolved = await result
            completed = self.complete_value(return_type, field_details_list, info, path, resolved, position_context)
            if self.is_awaitable(completed):
                completed = await completed
        except Exception as raw_error:  # noqa: BLE001 - handled as graphql-core's complete_awaitable_value does
            self.handle_field_error(raw_error, return_type, field_details_list, path)
            completed = None
        return completed

    def _shared_plan(self, object_type: GraphQLObjectType, details: Any) -> Plan | None:
        """The plan of a selection without directives (@skip/@include depend on the variables; @defer on more),
        built once for the document: the same field nodes (documents are cached, schema/document_cache.py)
        collect the same subfields in every operation. None for other selections."""
        nodes = tuple(d.node for d in details)
        key = (object_type.name, tuple(map(id, nodes)))
        known = self.shared_plans.get(key)
        if known is not None:
            return known[1]
        plan = None
        if all(d.defer_usage is None and d.fragment_variable_values is None for d in details) and directive_free(
            nodes, self.fragments, set()
        ):
            plan = self._plan(object_type, details)
        if len(self.shared_plans) >= 1024:  # selections follow the documents in use: bounded like _COMPLETERS
            self.shared_plans.clear()
        self.shared_plans[key] = (nodes, plan)
        return plan

    def _compile(self, object_type: GraphQLObjectType, grouped_field_set: Any) -> Plan | None:
        plain = self.plain.get(object_type.name, _NONE)
        objects = self.objects.get(object_type.name, _NONE)
        plan: list[Any] = []
        for response_name, details in grouped_field_set.items():
            nodes = [d.node for d in details]
            if any(d.name.value not in EVALUATED for n in nodes for d in n.directives or ()):
                return None
            field_name = nodes[0].name.value
            if field_name == "__typename":
                plan.append((TYPENAME, response_name, object_type.name))
                continue
            spec = plain.get(field_name)
            if spec is not None:
                non_null = isinstance(object_type.fields[field_name].type, GraphQLNonNull)
                plan.append((LEAF, response_name, spec[0], spec[1], non_null, PASSTHROUGH.get(spec[1])))
                continue
            ospec = objects.get(field_name)
            if ospec is None:
                return None
            attr, field_type, sub_type, is_list, exact = ospec
            sub = self._plan(sub_type, details)
            if sub is None:
                return None
            plan.append((OBJECT, response_name, attr, sub, is_list, exact, isinstance(field_type, GraphQLNonNull)))
        return tuple(plan)

    def execute_root_grouped_field_set(
        self,
        root_type: GraphQLObjectType,
        root_value: Any,
        grouped_field_set: Any,
        serially: bool,
        position_context: Any,
    ) -> Any:
        """A query's root fields run concurrently (graphql-core gathers them), so each gets a database slot of its
        own (server.context): they shared one AsyncSession, and concurrent use of it failed ("This session is
        provisioning a new connection"). Mutations run serially in the operation's slot; a single root field
        (the hot path) keeps it too."""
        context = self.context_value
        open_slot = getattr(context, "root_field_slot", None)
        if serially or open_slot is None or len(grouped_field_set) < 2:
            return super().execute_root_grouped_field_set(
                root_type, root_value, grouped_field_set, serially, position_context
            )
        if context.services.single_connection:  # one connection for every session: one root field at a time
            return super().execute_root_grouped_field_set(
                root_type, root_value, grouped_field_set, True, position_context
            )
        results: dict[str, Any] = {}
        pending: list[str] = []
        try:
            for response_name, details in grouped_field_set.items():
                slot = open_slot()
                # the resolver's synchronous part (a DataLoader.load schedules its batch here) runs in the slot too
                token = context.enter_slot(slot)
                try:
                    result = self.execute_field(
                        root_type, root_value, details, Path(None, response_name, root_type.name), position_context
                    )
                finally:
                    context.leave_slot(token)
                if result is Undefined:
                    continue
                if self.is_awaitable(result):
                    result = context.run_in_slot(slot, result)
                    pending.append(response_name)
                results[response_name] = result
        except Exception:
            if pending:  # as graphql-core's execute_fields: settle what the other root fields started
                self.settle_in_background([results[n] for n in pending])
            raise
        if not pending:
            return results

        async def gathered() -> dict[str, Any]:
            values = await gather_with_cancel(*(results[n] for n in pending))
            results.update(zip(pending, values))
            return results

        return gathered()

    def execute_fields(
        self,
        parent_type: GraphQLObjectType,
        source_value: Any,
        path: Path | None,
        grouped_field_set: Any,
        position_context: Any,
    ) -> Any:
        name = parent_type.name
        if not self._fast:
            return super().execute_fields(parent_type, source_value, path, grouped_field_set, position_context)
        plain = self.plain.get(name, _NONE)
        objects = self.objects.get(name, _NONE)
        if plain is None or (plain is _NONE and objects is _NONE):
            return super().execute_fields(parent_type, source_value, path, grouped_field_set, position_context)
        results: dict[str, Any] = {}
        rest = None
        pending = None
        for response_name, details in grouped_field_set.items():
            node = details[0].node
            spec = plain.get(node.name.value)
            ospec = objects.get(node.name.value) if spec is None else None
            if ospec is not None and not node.directives:
                value = getattr(source_value, ospec[0], NOT_LOADED)
                if value is None and not isinstance(ospec[1], GraphQLNonNull):
                    results[response_name] = None
                    continue
                if value is not NOT_LOADED and value is not None and position_context is None:
                    plan = self._plan(ospec[2], details)
                    if plan is not None:
                        try:
                            results[response_name] = complete(plan, value, ospec[3], ospec[4])
                            continue
                        except Impure:
                            pass  # graphql-core's path completes it (plans only read: nothing ran twice)
                if value is not NOT_LOADED and value is not None and _completable(value, ospec[3], ospec[4]):
                    try:
                        completed = self._complete_object_field(
                            ospec, details, Path(path, response_name, name), value, position_context
                        )
                    except Exception:
                        if pending:
                            self.settle_in_background([results[n] for n in pending])
                        raise
                    results[response_name] = completed
                    if self.is_awaitable(completed):
                        if pending is None:
                            pending = []
                        pending.append(response_name)
                    continue
            if spec is not None:
                value = getattr(source_value, spec[0], None)
                if value is not None:
                    try:
                        coerced = spec[1](value)
                    except Exception:  # noqa: BLE001 - graphql-core's path reports it
                        coerced = None
                    if coerced is not None and coerced is not Undefined:
                        results[response_name] = coerced
                        continue
            if rest is None:
                rest = {}
            rest[response_name] = details
            results[response_name] = None  # keeps the response's key order
        try:
            others = super().execute_fields(parent_type, source_value, path, rest, position_context) if rest else None
        except Exception:
            if pending:  # as graphql-core does with its own awaitables when a sibling fails
                self.settle_in_background([results[n] for n in pending])
            raise
        if pending is None:
            if others is None:
                return results
            if not self.is_awaitable(others):
                return _merge(results, rest, others)

        async def merged() -> dict[str, Any]:
            names = pending or []
            waiting = [results[n] for n in names]
            others_async = others is not None and self.is_awaitable(others)
            if others_async:
                waiting.append(others)
            values = await gather_with_cancel(*waiting)
            results.update(zip(names, values))
            if others is None:
                return results
            return _merge(results, rest, values[-1] if others_async else cast(dict[str, Any], others))

        return merged()

    def _complete_object_field(
        self,
        spec: tuple[str, Any, GraphQLObjectType, bool, type | None],
        details: Any,
        path: Path,
        value: Any,
        position_context: Any,
    ) -> Any:
        """graphql-core's complete_object_value / complete_list_value for an object (or [T!]) value in hand,
        with its error handling: an error nulls the field, or propagates when the field is non-null."""
        _, field_type, object_type, is_list, _ = spec
        execute = self.collect_and_execute_subfields
        awaitables: list[int] = []
        completed: Any  # the completed object (or its awaitable), or a list of them for [T!]
        try:
            if not is_list:
                completed = execute(object_type, details, path, value, position_context)
            else:
                completed = []
                for index, item in enumerate(value):
                    done = execute(object_type, details, path.add_key(index, None), item, position_context)
                    if self.is_awaitable(done):
                        awaitables.append(index)
                    completed.append(done)
        except Exception as raw_error:  # noqa: BLE001 - handled as graphql-core's execute_field does
            if awaitables:
                self.settle_in_background([completed[i] for i in awaitables])
            self.handle_field_error(raw_error, field_type, details, path)
            return None
        if not (awaitables or (not is_list and self.is_awaitable(completed))):
            return completed

        async def await_completed() -> Any:
            try:
                if not is_list:
                    return await completed
                values = await gather_with_cancel(*(completed[i] for i in awaitables))
                for i, v in zip(awaitables, values):
                    completed[i] = v
                return completed
            except Exception as raw_error:  # noqa: BLE001
                self.handle_field_error(raw_error, field_type, details, path)
                return None

        return await_completed()


@dataclass(frozen=True, slots=True, eq=False)
class RootField:
    """A query operation of one root field without arguments, whose selection has a plan: what graphql-core's
    executor would find for it (the operation, the field, its nodes, the info's fixed parts), found once per
    document (schema.document_cache keeps it with the document)."""

    schema: GraphQLSchema
    operation: OperationDefinitionNode
    fragments: dict[str, FragmentDefinitionNode]
    root_type: GraphQLObjectType
    field: GraphQLField
    field_name: str
    response_name: str
    nodes: tuple[FieldNode, ...]
    return_type: Any  # the field's type: the object type, or it non-null
    object_type: GraphQLObjectType
    plan: Plan


def prepare_root_field(
    executor_class: type[FastExecutor], document: DocumentNode, operation_name: str | None
) -> RootField | None:
    """The RootField of this (validated) document's operation, or None when the operation is anything else: a
    mutation, several root fields, arguments, variables, directives, fragments with variables, an abstract or list
    type, a selection without a plan (a resolver below the root field), a schema with resolve middleware."""
    schema = executor_class.graphql_schema
    if schema is None or not executor_class.plain:
        return None
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if len(operations) != 1:
        return None
    operation = operations[0]
    if operation_name is not None and (operation.name is None or operation.name.value != operation_name):
        return None
    fragments = [d for d in document.definitions if isinstance(d, FragmentDefinitionNode)]
    if (
        operation.operation is not OperationType.QUERY
        or operation.variable_definitions
        or operation.directives
        or any(f.variable_definitions for f in fragments)
    ):
        return None
    selections = operation.selection_set.selections
    root_type = schema.query_type
    if root_type is None or len(selections) != 1 or not isinstance(selections[0], FieldNode):
        return None
    node = selections[0]
    field = root_type.fields.get(node.name.value)
    if field is None or node.directives or node.arguments or field.args or field.resolve is None:
        return None
    return_type = field.type.of_type if isinstance(field.type, GraphQLNonNull) else field.type
    if not isinstance(return_type, GraphQLObjectType):
        return None
    executor = executor_class.build(schema, document, operation_name=operation_name, is_awaitable=_is_awaitable)
    if not isinstance(executor, FastExecutor) or not executor._fast:
        return None
    grouped, new_defer_usages, _ = collect_fields(
        schema, executor.fragments, executor.variable_values, root_type, operation, executor.hide_suggestions
    )
    if new_defer_usages or len(grouped) != 1:
        return None
    (response_name, details), *_ = grouped.items()
    if len(details) != 1 or details[0].node is not node:
        return None
    plan = executor._shared_plan(return_type, details)
    if plan is None:
        return None
    return RootField(
        schema=schema,
        operation=operation,
        fragments=executor.fragment_definitions,
        root_type=root_type,
        field=field,
        field_name=node.name.value,
        response_name=response_name,
        nodes=(node,),
        return_type=field.type,
        object_type=return_type,
        plan=plan,
    )


_is_awaitable: Any = optimized_is_awaitable  # the predicate RwaSchema hands graphql-core


_BACKGROUND: set[asyncio.Future[Any]] = set()


def _track(values: Sequence[Any]) -> None:
    """graphql-core's track_async_work: awaitables settled in the background (kept referenced until they are)."""
    awaitables = [v for v in values if _is_awaitable(v)]
    if awaitables:
        future = asyncio.gather(*awaitables, return_exceptions=True)
        _BACKGROUND.add(future)
        future.add_done_callback(_BACKGROUND.discard)


def _gather(values: Sequence[Awaitable[Any]]) -> Awaitable[list[Any]]:
    return gather_with_cancel(*values)


# graphql-core's resolve-info helpers (gather_async_work, track_async_work) without an executor to bind them to
_HELPERS = GraphQLResolveInfoHelpers(gather=_gather, track=_track)


async def execute_root_field(
    root: RootField,
    root_value: Any,
    context_value: Any,
    operation_extensions: Any,
    is_awaitable: Callable[[Any], bool],
    build: Callable[[], Any],
) -> ExecutionResult:
    """graphql-core's execution of the RootField's operation: its resolver called with the info graphql-core
    builds (strawberry's, with the operation's extensions), the value completed by the plan. An error, or a value
    the plan does not complete, is handed to graphql-core's own executor (`build()` makes it, with the arguments of
    the normal path), which completes the value in hand or reports the error as it would have."""
    path = Path(None, root.response_name, root.root_type.name)
    info: Any = _OperationContextAwareGraphQLResolveInfo(
        root.field_name,
        list(root.nodes),
        root.return_type,
        root.root_type,
        path,
        root.schema,
        dict(root.fragments),  # graphql-core builds it per operation
        root_value,
        root.operation,
        {},  # the coerced variables of an operation that declares none
        context_value,
        is_awaitable,
        None,
        _HELPERS,
        operation_extensions,
    )
    try:
        value = cast(Callable[..., Any], root.field.resolve)(root_value, info)
        if is_awaitable(value):
            value = await value
    except Exception as raw_error:  # noqa: BLE001 - reported by graphql-core's executor, as on the normal path
        return await _complete_slowly(root, build, path, None, raw_error)
    if value is not None and not isinstance(value, Exception) and not is_awaitable(value):
        is_type_of = root.object_type.is_type_of
        try:
            if is_type_of is None or is_type_of(value, info) is True:
                return ExecutionResult({root.response_name: complete(root.plan, value, False, None)}, None)
        except Exception:  # noqa: BLE001 - Impure, or an error graphql-core reports (plans and is_type_of only read)
            pass
    return await _complete_slowly(root, build, path, value, None)


async def _complete_slowly(
    root: RootField, build: Callable[[], Any], path: Path, value: Any, raw_error: Exception | None
) -> ExecutionResult:
    """What graphql-core's execute_operation does with the root field's resolved value (or its resolver's error):
    complete_value, handle_field_error (an error in the non-null field nulls the data), build_response."""
    executor = build()
    if isinstance(executor, list):  # not for a document prepare_root_field accepted; as graphql-core's execute
        return ExecutionResult(None, executor)
    grouped = collect_fields(
        executor.schema,
        executor.fragments,
        executor.variable_values,
        root.root_type,
        executor.operation,
        executor.hide_suggestions,
    )[0]
    details = grouped[root.response_name]
    return_type = root.return_type
    error = raw_error
    completed = None
    if error is None:
        try:
            info = executor.build_resolve_info(root.field, [d.node for d in details], root.root_type, path)
            completed = executor.complete_value(return_type, details, info, path, value, None)
            if executor.is_awaitable(completed):
                completed = await completed
        except Exception as completing_error:  # noqa: BLE001 - graphql-core's complete_awaitable_value
            error, completed = completing_error, None
    if error is not None:
        try:
            executor.handle_field_error(error, return_type, details, path)
        except GraphQLError as located:  # the non-null root field: execute_operation's await_result
            executor.collected_errors.add(located, None)
            return cast(ExecutionResult, executor.build_response(None))
    return cast(ExecutionResult, executor.build_response({root.response_name: completed}))


def _completable(value: Any, is_list: bool, exact: type | None) -> bool:
    """Values graphql-core would complete without an error of their own (a list of non-null items), and of exactly
    the type's class when it has is_type_of."""
    if not is_list:
        return not isinstance(value, Exception) and (exact is None or type(value) is exact)
    if not isinstance(value, (list, tuple)):
        return False
    if exact is not None:
        return all(type(v) is exact for v in value)
    return all(v is not None and not isinstance(v, Exception) for v in value)


def _merge(results: dict[str, Any], rest: dict[str, Any], others: dict[str, Any]) -> dict[str, Any]:
    results.update(others)
    if len(others) != len(rest):  # graphql-core leaves out fields it does not know
        for name in rest.keys() - others.keys():
            del results[name]
    return results


def executor_for(schema: Any) -> type[FastExecutor]:
    """For a strawberry Schema (also installs the lean resolvers). Off (graphql-core's and Strawberry's path for
    every field) when field exception handlers wrap even basic fields, or when the default resolver is not
    getattr."""
    usable = not schema.exception_handlers and schema.config.default_resolver is getattr
    if usable:
        install_lean_resolvers(schema._schema, schema.config.info_class)
    return type(
        "SchemaFastExecutor",
        (FastExecutor,),
        {
            "plain": plain_leaf_fields(schema._schema, usable),
            "objects": plain_object_fields(schema._schema, usable),
            "shared_plans": {},
            "graphql_schema": schema._schema if usable else None,
        },
    )
