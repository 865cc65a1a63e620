"""An operation of one root field whose selection has a plan (`{ me { id email roles } }`, or a mutation whose
arguments are all variables: `mutation($i: PlaceOrderInput!) { placeOrder(input: $i) { order { id } } }`) runs
without graphql-core's executor at all (`prepare_root_field`, `execute_root_field`): its resolver is called with the
same info and arguments graphql-core builds, its value completed by the plan (schema.plans). Anything else about the
value (an error, a null, an object of another class, a value the plan refuses) is completed by graphql-core's own
executor from the value in hand, so the answer and its errors are graphql-core's.

Variables are coerced by a coercer compiled once per document from graphql-core's own algorithm
(coerce_input_value, with the type dispatch done once): the same values for valid input. Where graphql-core's
coercion would fail (a missing or null required variable, a wrong scalar or enum, an unknown input field), or on any
doubt, `execute_root_field` answers DECLINED before anything ran and the operation takes graphql-core's path, which
reports the error as always."""

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
    GraphQLArgument,
    GraphQLError,
    GraphQLField,
    GraphQLInputObjectType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    OperationDefinitionNode,
    OperationType,
    Undefined,
    VariableNode,
    is_leaf_type,
    is_required_argument,
    is_required_input_field,
)
from graphql.execution.collect_fields import collect_fields
from graphql.execution.get_variable_signature import get_variable_signature
from graphql.pyutils import Path, gather_with_cancel, is_iterable
from graphql.type.definition import GraphQLResolveInfoHelpers
from graphql.utilities.coerce_input_value import coerce_default_value
from strawberry.execution import optimized_is_awaitable
from strawberry.schema.schema import _OperationContextAwareGraphQLResolveInfo

from schema.direct_resolver import DirectResolver, direct_resolver
from schema.fast_executor import FastExecutor
from schema.plans import Plan, complete

Coercer = Callable[[Any], Any]  # a value -> its coerced value, or Undefined where graphql-core's coercion fails


@dataclass(frozen=True, slots=True, eq=False)
class RootField:
    """An operation of one root field whose arguments are variables (or absent), whose selection has a plan: what
    graphql-core's executor would find for it (the operation, the field, its nodes, the info's fixed parts, how
    its variables are coerced and passed as arguments), found once per document (schema.document_cache keeps it
    with the document)."""

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
    # per declared variable: its name, whether it is required (non-null), its coercer
    variables: tuple[tuple[str, bool, Coercer], ...] = ()
    # per argument: its out name, the variable giving it (None: not given), whether its type is non-null, its
    # definition when it has a default
    arguments: tuple[tuple[str, str | None, bool, GraphQLArgument | None], ...] = ()
    # the field's resolver without Strawberry's wrapper (schema.direct_resolver), None: its resolve function
    direct: DirectResolver | None = None


LATER: Any = object()  # prepare_root_field: not decided with this request's variables (they do not coerce)


def prepare_root_field(
    executor_class: type[FastExecutor],
    document: DocumentNode,
    operation_name: str | None,
    variables: Any = None,
) -> RootField | None:
    """The RootField of this (validated) document's operation, or None when the operation is anything else: a
    subscription, several root fields, an argument that is neither a variable nor absent, variables with defaults
    or directives, directives, fragments with variables, an abstract or list type, a
    selection without a plan (a resolver below the root field), a schema with resolve middleware, an input type
    the coercers do not compile (recursive, @oneOf). LATER when the request's `variables` do not coerce (the
    document is prepared with a later request's)."""
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
    if operation.directives or any(f.variable_definitions for f in fragments):
        return None
    if operation.operation is OperationType.QUERY:
        root_type = schema.query_type
    elif operation.operation is OperationType.MUTATION:
        root_type = schema.mutation_type
    else:
        return None
    selections = operation.selection_set.selections
    if root_type is None or len(selections) != 1 or not isinstance(selections[0], FieldNode):
        return None
    node = selections[0]
    field = root_type.fields.get(node.name.value)
    if field is None or node.directives or field.resolve is None:
        return None
    return_type = field.type.of_type if isinstance(field.type, GraphQLNonNull) else field.type
    if not isinstance(return_type, GraphQLObjectType):
        return None
    declared = _variables(schema, operation)
    if declared is None:
        return None
    arguments = _arguments(field, node, {name for name, *_ in declared})
    if arguments is None:
        return None
    executor = executor_class.build(
        schema,
        document,
        raw_variable_values=variables if isinstance(variables, dict) else None,
        operation_name=operation_name,
        is_awaitable=_is_awaitable,
    )
    if isinstance(executor, list):
        return LATER
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
        variables=declared,
        arguments=arguments,
        direct=direct_resolver(schema, field),
    )


def _variables(
    schema: GraphQLSchema, operation: OperationDefinitionNode
) -> tuple[tuple[str, bool, Coercer], ...] | None:
    """The operation's variables with their coercers; None when one has a default value or a directive, or a type
    the coercers do not compile."""
    declared = []
    for definition in operation.variable_definitions or ():
        if definition.default_value is not None or definition.directives:
            return None
        signature = get_variable_signature(schema, definition)
        if isinstance(signature, GraphQLError):
            return None
        coercer = _coercer(signature.type, frozenset())
        if coercer is None:
            return None
        declared.append((signature.name, isinstance(signature.type, GraphQLNonNull), coercer))
    return tuple(declared)


def _arguments(
    field: GraphQLField, node: FieldNode, declared: set[str]
) -> tuple[tuple[str, str | None, bool, GraphQLArgument | None], ...] | None:
    """How the field's arguments are found (graphql-core's coerce_argument, for an argument given as a variable or
    not given): per argument, its out name, the variable naming it (None: not given), whether its type is
    non-null, and its definition when it has a default value. None when one is given otherwise than by a declared variable."""
    given = {argument.name.value: argument for argument in node.arguments or ()}
    if not given.keys() <= field.args.keys():
        return None
    arguments = []
    for name, definition in field.args.items():
        argument = given.get(name)
        variable = None
        if argument is not None:
            if not isinstance(argument.value, VariableNode) or argument.value.name.value not in declared:
                return None
            variable = argument.value.name.value
        elif is_required_argument(definition):
            return None  # validation refuses it; graphql-core's path reports it
        has_default = definition.default is not None or definition.default_value is not Undefined
        arguments.append(
            (
                definition.out_name or name,
                variable,
                isinstance(definition.type, GraphQLNonNull),
                definition if has_default else None,
            )
        )
    return tuple(arguments)


_MAX_DEPTH = 32  # type nesting a compiled coercer accepts (graphql-core refuses values nested beyond 200)


def _coercer(type_: Any, seen: frozenset[str], depth: int = 0) -> Coercer | None:
    """graphql-core's coerce_input_value for one input type, with its type dispatch done once: the same value, or
    Undefined where graphql-core's gives Undefined. None for what is not compiled: recursive or @oneOf input
    objects, types nested deeper than _MAX_DEPTH."""
    if depth > _MAX_DEPTH:
        return None
    if isinstance(type_, GraphQLNonNull):
        if is_leaf_type(type_.of_type):  # the non-null check and the leaf's in one call: a null is invalid
            return _leaf(type_.of_type.coerce_input_value, null=Undefined)
        inner = _coercer(type_.of_type, seen, depth + 1)
        if inner is None:
            return None

        def non_null(value: Any) -> Any:
            if value is None or value is Undefined:
                return Undefined
            return inner(value)

        return non_null
    if isinstance(type_, GraphQLList):
        item = _coercer(type_.of_type, seen, depth + 1)
        if item is None:
            return None

        def list_(value: Any) -> Any:
            if value is None or value is Undefined:
                return None
            if not is_iterable(value):  # a non-list value is a list of one
                coerced = item(value)
                return Undefined if coerced is Undefined else [coerced]
            items = []
            for entry in value:
                coerced = item(entry)
                if coerced is Undefined:
                    return Undefined
                items.append(coerced)
            return items

        return list_
    if isinstance(type_, GraphQLInputObjectType):
        if type_.is_one_of or type_.name in seen:
            return None
        seen = seen | {type_.name}
        fields = []
        for name, field in type_.fields.items():
            coercer = _coercer(field.type, seen, depth + 1)
            if coercer is None:
                return None
            fields.append((name, field.out_name or name, is_required_input_field(field), field, coercer))
        known = type_.fields.keys()
        known_names = frozenset(known)
        out_type = type_.out_type

        def input_object(value: Any) -> Any:
            if value is None or value is Undefined:
                return None
            if not isinstance(value, dict):
                return Undefined
            if not known_names.issuperset(value):  # some key is not a field: unknown unless its value is Undefined
                for key, given in value.items():
                    if given is not Undefined and key not in known:
                        return Undefined
            coerced: dict[str, Any] = {}
            for name, out_name, required, field, coercer in fields:
                given = value.get(name, Undefined)
                if given is Undefined:
                    if required:
                        return Undefined
                    default = coerce_default_value(field)
                    if default is not Undefined:
                        coerced[out_name] = default
                else:
                    field_value = coercer(given)
                    if field_value is Undefined:
                        return Undefined
                    coerced[out_name] = field_value
            return out_type(coerced)

        return input_object
    if not is_leaf_type(type_):
        return None
    return _leaf(type_.coerce_input_value, null=None)


def _leaf(coerce: Callable[[Any], Any], null: Any) -> Coercer:
    """A leaf type's coercer: `null` for a null or missing value (None for a nullable type, Undefined (invalid) for a
    non-null one), the parsed value, or Undefined where it does not coerce."""

    def leaf(value: Any) -> Any:
        if value is None or value is Undefined:
            return null
        try:
            return coerce(value)
        except Exception:  # noqa: BLE001 - as graphql-core: the value does not coerce
            return Undefined

    return leaf


def coerce_variables(root: RootField, raw: Any) -> dict[str, Any] | None:
    """The coerced values graphql-core's get_variable_values finds for the RootField's variables (strawberry's info
    carries them: VariableValues.coerced) when they all coerce; None when graphql-core's would report an error (or
    on any doubt): then graphql-core's path runs and reports it."""
    coerced: dict[str, Any] = {}
    if not root.variables:
        return coerced
    if raw is None:
        raw = {}
    elif not isinstance(raw, dict):
        return None
    try:
        for name, required, coercer in root.variables:
            value = raw.get(name, Undefined)
            if value is Undefined:
                if required:
                    return None
                continue  # a nullable variable not provided (without a default) is omitted
            value = coercer(value)
            if value is Undefined:
                return None
            coerced[name] = value
    except Exception:  # noqa: BLE001 - e.g. an invalid default of an input field: graphql-core's path reports it
        return None
    return coerced


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


DECLINED: Any = object()  # execute_root_field: nothing ran; graphql-core's path runs the operation


async def execute_root_field(
    root: RootField,
    root_value: Any,
    context_value: Any,
    operation_extensions: Any,
    is_awaitable: Callable[[Any], bool],
    build: Callable[[], Any],
    variables: Any = None,
) -> ExecutionResult:
    """graphql-core's execution of the RootField's operation: its resolver called with the info and arguments
    graphql-core builds (strawberry's info, with the operation's extensions), the value completed by the plan. An
    error, or a value the plan does not complete, is handed to graphql-core's own executor (`build()` makes it,
    with the arguments of the normal path), which completes the value in hand or reports the error as it would
    have. DECLINED, before anything ran, when the `variables` (the request's) or the arguments made of them are
    not what graphql-core would accept."""
    coerced = coerce_variables(root, variables)
    if coerced is None:
        return DECLINED
    args: dict[str, Any] = {}
    for out_name, variable, non_null, with_default in root.arguments:
        value = Undefined if variable is None else coerced.get(variable, Undefined)
        if value is Undefined:
            if non_null and with_default is None:  # a required argument
                return DECLINED
            if with_default is not None:  # graphql-core's maybe_use_default_value
                try:
                    value = coerce_default_value(with_default)
                except Exception:  # noqa: BLE001 - an invalid default: graphql-core's path reports it
                    return DECLINED
                if value is not Undefined:
                    args[out_name] = value
            continue  # without a default the argument is omitted
        if value is None and non_null:
            return DECLINED
        args[out_name] = value
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
        coerced,  # strawberry's info carries the coerced values (graphql-core's VariableValues.coerced)
        context_value,
        is_awaitable,
        None,
        _HELPERS,
        operation_extensions,
    )
    try:
        direct = root.direct
        if direct is not None:
            value = await direct(root_value, info, args)
        else:
            value = cast(Callable[..., Any], root.field.resolve)(root_value, info, **args)
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
