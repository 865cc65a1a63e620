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

A query of one argument-free root field skips even that: schema.root_field.
"""

from __future__ import annotations

from typing import Any, cast

from graphql import GraphQLNonNull, GraphQLObjectType, GraphQLSchema, Undefined
from graphql.pyutils import Path, gather_with_cancel
from orjson import Fragment
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

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

    def complete_value(
        self,
        return_type: Any,
        field_details_list: Any,
        info: Any,
        path: Path,
        result: Any,
        position_context: Any,
    ) -> Any:
        """A resolver's answer already rendered as JSON (an orjson.Fragment: a page Postgres built, say) is the
        field's completed value: the HTTP path's orjson splices it into the response as is. Only resolvers that
        checked the selection themselves return one; anything else completes as graphql-core does."""
        if type(result) is Fragment:
            return result
        return super().complete_value(return_type, field_details_list, info, path, result, position_context)

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
