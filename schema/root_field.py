"""A query whose one root field takes no arguments and whose selection has a plan (`{ me { id email roles } }`)
runs without graphql-core's executor at all (`prepare_root_field`, `execute_root_field`): its resolver is called
with the same info graphql-core builds, its value completed by the plan (schema.plans). Anything else about the
value (an error, a null, an object of another class, a value the plan refuses) is completed by graphql-core's own
executor from the value in hand, so the answer and its errors are graphql-core's."""

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
)
from graphql.execution.collect_fields import collect_fields
from graphql.pyutils import Path, gather_with_cancel
from graphql.type.definition import GraphQLResolveInfoHelpers
from strawberry.execution import optimized_is_awaitable
from strawberry.schema.schema import _OperationContextAwareGraphQLResolveInfo

from schema.fast_executor import FastExecutor
from schema.plans import Plan, complete


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
