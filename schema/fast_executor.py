"""Cheaper field resolution: an executor that completes plain scalar fields without graphql-core's per-field
machinery, and lean resolvers for plain object fields and prefetched fields.

A list page resolves hundreds of fields that are plain attributes of already loaded objects (`id`, `name`,
`status`, ...). For each, graphql-core builds a resolve-info object, Strawberry calls three wrapper functions
to do a `getattr`, and the value goes through four type checks before it is serialized: ~5 µs per field, most
of a list request's CPU. Here such fields (Strawberry "basic" fields: no resolver, no field extensions, on a
leaf type) are read with `getattr` and serialized by their type directly.

Anything unusual takes graphql-core's own path, which then produces the exact same result or error: a missing
attribute, a null value, a value the type refuses to serialize, a schema with resolve middleware.

Plain fields of object type (`edges`, `node`, `pageInfo`) keep graphql-core's path but resolve with one
`getattr` instead of three Strawberry wrapper calls. A field declared with `metadata={PREFETCHED: "_attr"}` (and
no field extensions) returns `source._attr` directly unless it holds NOT_LOADED, in which case its own resolver
runs as usual: a list resolver can fill a whole page at once and skip one resolver call per row.

An object field whose selection is plain at every depth (leaves, plain or prefetched object fields, __typename,
fragments, @skip/@include) is completed by a plan built once per operation (see Plan) and run as a generated
Python function (one per distinct plan, shared by all operations): per object, no collect/execute calls, no path
objects, no per-field table lookups. On the asset list this cut the request's CPU by ~30%. Enums serialize through a table of their members (Strawberry's loops over the values).
"""

from __future__ import annotations

import inspect
import keyword
from collections.abc import Callable
from typing import Any, cast

from graphql import (
    GraphQLBoolean,
    GraphQLEnumType,
    GraphQLID,
    GraphQLInt,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLString,
    Undefined,
    is_leaf_type,
)
from graphql.pyutils import Path, gather_with_cancel, is_awaitable
from strawberry.exceptions import PermissionReturnedNonBooleanError
from strawberry.extensions.field_extension import FieldExtension
from strawberry.permission import PermissionExtension
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

_BACKREF = "strawberry-definition"
PREFETCHED = "rwa-prefetched"
NOT_LOADED: Any = type("NotLoaded", (), {"__repr__": lambda self: "NOT_LOADED", "__slots__": ()})()

# per object type name: {field name: (attribute, serialize)}
PlainFields = dict[str, dict[str, tuple[str, Callable[[Any], Any]]]]


def _enum_serializer(type_: Any) -> Callable[[Any], Any]:
    """Strawberry's enum serialization compares the member's value with each of the type's values in turn; a
    member of the enum's own class is looked up in a table of the same answers instead."""
    wrapped = getattr(type_, "wrapped_cls", None)
    slow = type_.coerce_output_value
    if not isinstance(wrapped, type):
        return cast(Callable[[Any], Any], slow)
    table = {}
    for member in cast(Any, wrapped):
        table[member] = next((n for n, v in type_.values.items() if member.value == v.value), None)
    if None in table.values():  # a member the type does not list: its own error, from graphql-core's path
        return cast(Callable[[Any], Any], slow)

    def serialize_enum(value: Any) -> Any:
        return table[value] if type(value) is wrapped else slow(value)

    return serialize_enum


def _serializer(type_: Any) -> Callable[[Any], Any] | None:
    """Leaf types serialize with their own function; lists of non-null leaves item by item (a null item makes
    the whole list take graphql-core's path). Other types: None."""
    inner = type_.of_type if isinstance(type_, GraphQLNonNull) else type_
    if isinstance(inner, GraphQLEnumType):
        return _enum_serializer(inner)
    if is_leaf_type(inner):
        return inner.coerce_output_value
    if (
        isinstance(inner, GraphQLList)
        and isinstance(inner.of_type, GraphQLNonNull)
        and is_leaf_type(inner.of_type.of_type)
    ):
        item_type = inner.of_type.of_type
        coerce = (
            _enum_serializer(item_type) if isinstance(item_type, GraphQLEnumType) else item_type.coerce_output_value
        )

        def serialize_list(values: Any) -> list[Any] | None:
            if isinstance(values, (str, bytes, dict)):
                return None
            out = []
            for v in values:
                c = coerce(v) if v is not None else None
                if c is None or c is Undefined:
                    return None
                out.append(c)
            return out

        return serialize_list
    return None


def plain_leaf_fields(schema: GraphQLSchema, usable: bool) -> PlainFields:
    if not usable:
        return {}
    table: PlainFields = {}
    for type_ in schema.type_map.values():
        if not isinstance(type_, GraphQLObjectType) or type_.name.startswith("__"):
            continue
        fields = {}
        for name, field in type_.fields.items():
            definition = (field.extensions or {}).get(_BACKREF)
            if definition is None or not getattr(definition, "is_basic_field", False):
                continue
            serialize = _serializer(field.type)
            if serialize is not None:
                fields[name] = (definition.python_name, serialize)
        if fields:
            table[type_.name] = fields
    return table


# per object type name: {field name: (attribute, field type, object type, is list, exact class or None)}
ObjectFields = dict[str, dict[str, tuple[str, Any, GraphQLObjectType, bool, type | None]]]


def _object_shape(type_: Any) -> tuple[GraphQLObjectType, bool, type | None] | None:
    """(object type, is list, class) for `T`, `T!`, `[T!]` and `[T!]!` of an object type. A type with is_type_of
    (Strawberry gives one to every type implementing an interface, e.g. Node) is checked by graphql-core on every
    value; here a value of exactly the type's own class passes that check by construction (Strawberry's is_type_of
    is an isinstance test), so the fast path requires that class and leaves anything else to graphql-core."""
    inner = type_.of_type if isinstance(type_, GraphQLNonNull) else type_
    is_list = isinstance(inner, GraphQLList)
    if is_list:
        if not isinstance(inner.of_type, GraphQLNonNull):
            return None
        inner = inner.of_type.of_type
    if not isinstance(inner, GraphQLObjectType):
        return None
    if inner.is_type_of is None:
        return inner, is_list, None
    origin = getattr((inner.extensions or {}).get(_BACKREF), "origin", None)
    return (inner, is_list, origin) if isinstance(origin, type) else None


def plain_object_fields(schema: GraphQLSchema, usable: bool) -> ObjectFields:
    """Object-typed fields that are plain attributes (or PREFETCHED ones: their value unless NOT_LOADED)."""
    table: ObjectFields = {}
    for type_ in schema.type_map.values() if usable else ():
        if not isinstance(type_, GraphQLObjectType) or type_.name.startswith("__"):
            continue
        fields = {}
        for name, field in type_.fields.items():
            definition = (field.extensions or {}).get(_BACKREF)
            if definition is None or definition.extensions:
                continue
            attr = (definition.metadata or {}).get(PREFETCHED) or (
                definition.python_name if definition.is_basic_field else None
            )
            shape = _object_shape(field.type)
            if attr and shape:
                fields[name] = (attr, field.type, *shape)
        if fields:
            table[type_.name] = fields
    return table


class FastExecutor(StrawberryGraphQLCoreExecutionContext):
    """Set `plain` and `objects` (of the schema) on a subclass per schema; see `executor_for`."""

    plain: PlainFields = {}
    objects: ObjectFields = {}
    # per (object type name, ids of the field nodes): the nodes (kept alive: their ids are the key) and the plan of
    # that selection, shared by every operation of the document (see collect_and_execute_subfields); per schema
    shared_plans: dict[tuple[str, tuple[int, ...]], tuple[tuple[Any, ...], Plan | None]] = {}

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
                    return _complete(plan, result, False, None)
                except _Impure:
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
        if all(d.defer_usage is None and d.fragment_variable_values is None for d in details) and _directive_free(
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
            if any(d.name.value not in _EVALUATED for n in nodes for d in n.directives or ()):
                return None
            field_name = nodes[0].name.value
            if field_name == "__typename":
                plan.append((_TYPENAME, response_name, object_type.name))
                continue
            spec = plain.get(field_name)
            if spec is not None:
                non_null = isinstance(object_type.fields[field_name].type, GraphQLNonNull)
                plan.append((_LEAF, response_name, spec[0], spec[1], non_null, _PASSTHROUGH.get(spec[1])))
                continue
            ospec = objects.get(field_name)
            if ospec is None:
                return None
            attr, field_type, sub_type, is_list, exact = ospec
            sub = self._plan(sub_type, details)
            if sub is None:
                return None
            plan.append((_OBJECT, response_name, attr, sub, is_list, exact, isinstance(field_type, GraphQLNonNull)))
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
                            results[response_name] = _complete(plan, value, ospec[3], ospec[4])
                            continue
                        except _Impure:
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


_NONE: dict[str, Any] = {}
_EVALUATED = frozenset({"skip", "include"})  # applied by field collection; any other directive: graphql-core

# A plan completes one object's selection by reading attributes only: per field in response order,
#   (_LEAF, response name, attribute, serialize, non-null, type the serializer returns unchanged or None)
#   (_OBJECT, response name, attribute, plan of the object type, is list, exact class or None, non-null)
#   (_TYPENAME, response name, type name)
# for a selection whose fields are all plain (or PREFETCHED) at every depth. Running it calls no resolver, so
# when a value does not fit (a null in a non-null field, a value its scalar refuses, NOT_LOADED, an object of
# another class) the plan gives up (_Impure) and graphql-core's path completes the same value from the start,
# with its own errors and paths. Compiled once per field group per operation, it replaces per object the
# collect/execute calls, path objects and per-field table lookups of execute_fields.
Plan = tuple[tuple[Any, ...], ...]
_LEAF, _OBJECT, _TYPENAME = 0, 1, 2
# graphql-core's serializers that return a value of this exact type unchanged (an int: within 32 bits)
_PASSTHROUGH: dict[Any, type] = {
    GraphQLString.coerce_output_value: str,
    GraphQLID.coerce_output_value: str,
    GraphQLBoolean.coerce_output_value: bool,
    GraphQLInt.coerce_output_value: int,
}


class _Impure(Exception):
    """A value a plan cannot complete by itself."""


def _complete(plan: Plan, value: Any, is_list: bool, exact: type | None) -> Any:
    """An object (or list of objects, for [T!]) completed by its plan."""
    key = (plan, is_list, exact)
    complete = _COMPLETERS.get(key)
    if complete is None:
        if len(_COMPLETERS) >= 1024:  # plans follow the documents in use; a bound keeps odd clients from growing it
            _COMPLETERS.clear()
        complete = _COMPLETERS[key] = _completer(_runner(plan), is_list, exact)
    return complete(value)


_COMPLETERS: dict[tuple[Plan, bool, type | None], Callable[[Any], Any]] = {}
_RUNNERS: dict[Plan, Callable[[Any], dict[str, Any]]] = {}


def _completer(run: Callable[[Any], dict[str, Any]], is_list: bool, exact: type | None) -> Callable[[Any], Any]:
    if not is_list:

        def complete_one(value: Any) -> dict[str, Any]:
            _check(value, exact)
            return run(value)

        return complete_one

    def complete_list(values: Any) -> list[dict[str, Any]]:
        if not isinstance(values, (list, tuple)):
            raise _Impure
        for value in values:
            _check(value, exact)
        return [run(value) for value in values]

    return complete_list


def _runner(plan: Plan) -> Callable[[Any], dict[str, Any]]:
    """The plan as a Python function (compiled once per distinct plan, in any operation): one attribute read
    and a type test per plain value, the result dict built in one step, in the plan's key order."""
    run = _RUNNERS.get(plan)
    if run is not None:
        return run
    env: dict[str, Any] = {
        "_Impure": _Impure,
        "NOT_LOADED": NOT_LOADED,
        "Undefined": Undefined,
        "is_awaitable": is_awaitable,
    }
    lines = ["def run(value):"]
    keys = []
    for i, entry in enumerate(plan):
        if entry[0] == _TYPENAME:
            keys.append(f"{entry[1]!r}: {entry[2]!r}")
            continue
        attr = entry[2]
        read = f"value.{attr}" if attr.isidentifier() and not keyword.iskeyword(attr) else f"getattr(value, a{i})"
        env[f"a{i}"] = attr
        lines += ["    try:", f"        r = {read}", "    except AttributeError:", "        raise _Impure from None"]
        null = "raise _Impure" if entry[-1 if entry[0] == _OBJECT else 4] else f"v{i} = None"
        if entry[0] == _LEAF:
            _, _, _, serialize, _, same = entry
            env[f"s{i}"], env[f"t{i}"] = serialize, same
            if same is not None:
                in_range = " and -2147483648 <= r <= 2147483647" if same is int else ""
                lines += [f"    if type(r) is t{i}{in_range}:", f"        v{i} = r", "    elif r is None:"]
            else:
                lines += ["    if r is None:"]
            lines += [
                f"        {null}",
                "    else:",
                "        try:",
                f"            v{i} = s{i}(r)",
                "        except Exception:",
                "            raise _Impure from None",
                f"        if v{i} is None or v{i} is Undefined:",
                "            raise _Impure",
            ]
        else:
            _, _, _, sub, is_list, exact, _ = entry
            env[f"r{i}"], env[f"e{i}"] = _runner(sub), exact
            # _check inline: exactly the class for a type with is_type_of, else no exception and no awaitable
            bad = f"type(x) is not e{i}" if exact is not None else "isinstance(x, Exception) or is_awaitable(x)"
            lines += [
                "    if r is None:",
                f"        {null}",
                "    elif r is NOT_LOADED:",
                "        raise _Impure",
            ]
            if is_list:
                lines += [
                    "    elif not isinstance(r, (list, tuple)):",
                    "        raise _Impure",
                    "    else:",
                    "        for x in r:",
                    f"            if {'x is None or ' if exact is None else ''}{bad}:",
                    "                raise _Impure",
                    f"        v{i} = [r{i}(x) for x in r]",
                ]
            else:
                lines += [
                    "    else:",
                    "        x = r",
                    f"        if {bad}:",
                    "            raise _Impure",
                    f"        v{i} = r{i}(r)",
                ]
        keys.append(f"{entry[1]!r}: v{i}")
    lines.append("    return {" + ", ".join(keys) + "}")
    exec("\n".join(lines), env)  # noqa: S102 - our own text: identifiers checked, names and values as literals
    run = _RUNNERS[plan] = env["run"]
    if len(_RUNNERS) > 4096:
        _RUNNERS.clear()
    return cast(Callable[[Any], dict[str, Any]], run)


def _directive_free(nodes: Any, fragments: dict[str, Any], seen: set[str]) -> bool:
    """No directive on these selections, their fragments and their subselections, at any depth."""
    for node in nodes:
        if node.directives:
            return False
        if node.kind == "fragment_spread":
            name = node.name.value
            if name in seen:
                continue
            seen.add(name)
            fragment = fragments.get(name)
            if fragment is None:
                return False
            node = fragment.definition
            if node.directives:
                return False
        selection_set = getattr(node, "selection_set", None)
        if selection_set is not None and not _directive_free(selection_set.selections, fragments, seen):
            return False
    return True


def _check(value: Any, exact: type | None) -> None:
    """graphql-core completes any object for a type without is_type_of, awaiting awaitables and reporting
    exceptions; plans take plain objects only, and of exactly the class for a type with is_type_of."""
    if exact is not None:
        if type(value) is not exact:
            raise _Impure
    elif value is None or isinstance(value, Exception) or is_awaitable(value):
        raise _Impure


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


def _attribute_resolver(attr: str) -> Callable[..., Any]:
    def resolve(source: Any, info: Any, **_: Any) -> Any:
        return getattr(source, attr)

    resolve._is_default = True  # type: ignore[attr-defined]  # as strawberry marks its own default resolvers
    return resolve


def _prefetched_resolver(attr: str, resolver: Callable[..., Any]) -> Callable[..., Any]:
    def resolve(source: Any, info: Any, **kwargs: Any) -> Any:
        value = getattr(source, attr, NOT_LOADED)
        return resolver(source, info, **kwargs) if value is NOT_LOADED else value

    return resolve


def _permission_resolver(definition: Any, info_class: type, extension: Any) -> Callable[..., Any] | None:
    """strawberry's resolver for an async field without arguments whose one extension is a PermissionExtension
    with synchronous checks (`me`, `mfaStatus`), in one coroutine: strawberry's takes five calls and three awaited
    layers (its resolver, await_maybe, argument conversion, the extension chain, the permission's await_maybe)
    around the same steps. The same order: the Info, each permission (its errors, a non-boolean refused, a refusal
    through the extension's _on_unauthorized), then the resolver with self and info as strawberry passes them.
    None for any other field."""
    resolver = definition.base_resolver
    if (
        resolver is None
        or definition.is_subscription
        or not definition.is_async
        or definition.arguments
        or resolver.parent_parameter is not None
        or resolver.root_parameter is not None
        or len(definition.extensions) != 1
        or type(extension) is not PermissionExtension
        or not extension.permissions
        or any(inspect.iscoroutinefunction(p.has_permission) for p in extension.permissions)
        or type(extension).map_arguments is not FieldExtension.map_arguments
    ):
        return None
    permissions = tuple(extension.permissions)
    pass_self = resolver.self_parameter is not None
    info_name = resolver.info_parameter.name if resolver.info_parameter is not None else None
    call = resolver.__call__

    async def resolve(source: Any, info: Any, **kwargs: Any) -> Any:
        strawberry_info = info_class(_raw_info=info, _field=definition)
        for permission in permissions:
            allowed = permission.has_permission(source, strawberry_info)
            if inspect.isawaitable(allowed):
                allowed = await allowed
            if not isinstance(allowed, bool):
                if inspect.iscoroutine(allowed):
                    allowed.close()
                raise PermissionReturnedNonBooleanError(permission, allowed)
            if not allowed:
                return extension._on_unauthorized(permission)
        args = (source,) if pass_self else ()
        result = call(*args, **{info_name: strawberry_info}) if info_name is not None else call(*args)
        if inspect.isasyncgen(result):
            return result
        return await result

    return resolve


def install_lean_resolvers(schema: GraphQLSchema, info_class: type | None = None) -> None:
    for type_ in schema.type_map.values():
        if not isinstance(type_, GraphQLObjectType) or type_.name.startswith("__"):
            continue
        for field in type_.fields.values():
            definition = (field.extensions or {}).get(_BACKREF)
            if definition is None or field.resolve is None:
                continue
            if definition.extensions:
                lean = None
                # replaces strawberry's async resolver only (not a subscription's, nor one wrapped otherwise)
                if (
                    info_class
                    and field.subscribe is None
                    and getattr(field.resolve, "__name__", "") == "_async_resolver"
                ):
                    lean = _permission_resolver(definition, info_class, definition.extensions[0])
                if lean is not None:
                    field.resolve = lean
                continue
            prefetched = (definition.metadata or {}).get(PREFETCHED)
            if prefetched:
                field.resolve = _prefetched_resolver(prefetched, field.resolve)
            elif definition.is_basic_field:
                field.resolve = _attribute_resolver(definition.python_name)


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
        },
    )
