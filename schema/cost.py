"""Query cost: computed from the document and variables before execution.

Every field costs 1 (`__schema`: INTROSPECTION_SCHEMA_COST). A connection field (it takes `first`/`last`)
multiplies the cost of its selection by the page size asked for (DEFAULT_PAGE when neither is given), so nested
lists cost what they may fetch:

    assets(first: 100) { edges { node { tokens { holdings(first: 100) { edges { node { holder }}}}}}}
    = 1 + 100 * (1 + 1 + 1 + 1 + 100 * (1 + 1 + 1))  ~ 30,000

Over settings.max_query_cost the request fails with QUERY_TOO_COMPLEX (`extensions.cost`, `extensions.maxCost`)
and nothing executes; accepted operations report `{"extensions": {"cost": n}}` (schema/extensions.py).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    VariableNode,
    get_named_type,
)
from graphql import ExecutionResult as GraphQLExecutionResult
from graphql.type.definition import GraphQLNamedType, GraphQLObjectType

from core.errors import QueryTooComplex
from resolvers.pagination import DEFAULT_PAGE

_CACHE_SIZE = 1024
# A full introspection (`__schema`) serializes the whole schema (~2.5 MB for 29 aliased copies, seconds of CPU):
# priced so that one fits the default budget (GraphiQL's own introspection) and a handful of aliased copies do not.
INTROSPECTION_SCHEMA_COST = 20_000


def _page_size(node: FieldNode, variables: dict[str, Any]) -> int | None:
    """first/last of a field, or None when the field does not ask."""
    for arg in node.arguments or ():
        if arg.name.value not in ("first", "last"):
            continue
        value = arg.value
        if isinstance(value, IntValueNode):
            return max(int(value.value), 0)
        if isinstance(value, VariableNode):
            raw = variables.get(value.name.value)
            if isinstance(raw, int) and not isinstance(raw, bool):
                return max(raw, 0)
    return None


class _Walker:
    def __init__(self, schema: GraphQLSchema, fragments: dict[str, FragmentDefinitionNode],
                 variables: dict[str, Any]) -> None:
        self.schema = schema
        self.fragments = fragments
        self.variables = variables

    def selection_cost(self, selection_set: SelectionSetNode | None, parent: GraphQLNamedType | None,
                       seen: frozenset[str] = frozenset()) -> int:
        if selection_set is None:
            return 0
        total = 0
        for sel in selection_set.selections:
            if isinstance(sel, FieldNode):
                total += self.field_cost(sel, parent, seen)
            elif isinstance(sel, InlineFragmentNode):
                cond = self.schema.get_type(sel.type_condition.name.value) if sel.type_condition else parent
                total += self.selection_cost(sel.selection_set, cond, seen)
            elif isinstance(sel, FragmentSpreadNode):
                name = sel.name.value
                frag = self.fragments.get(name)
                if frag is None or name in seen:  # validation reports unknown/cyclic fragments
                    continue
                cond = self.schema.get_type(frag.type_condition.name.value)
                total += self.selection_cost(frag.selection_set, cond, seen | {name})
        return total

    def field_cost(self, node: FieldNode, parent: GraphQLNamedType | None, seen: frozenset[str]) -> int:
        name = node.name.value
        if name == "__schema":  # walks every type, field and argument however small the selection looks
            return INTROSPECTION_SCHEMA_COST
        if name.startswith("__") or not isinstance(parent, GraphQLObjectType) and not hasattr(parent, "fields"):
            return 1
        field = parent.fields.get(name)  # type: ignore[union-attr]
        if field is None:
            return 1
        child_type = get_named_type(field.type)
        children = self.selection_cost(node.selection_set, child_type, seen)
        if "first" in field.args or "last" in field.args:
            size = _page_size(node, self.variables)
            return 1 + (DEFAULT_PAGE if size is None else size) * children
        return 1 + children


def operation_cost(schema: GraphQLSchema, document: Any, operation_name: str | None,
                   variables: dict[str, Any] | None) -> int:
    fragments: dict[str, FragmentDefinitionNode] = {}
    operations: list[OperationDefinitionNode] = []
    for d in document.definitions:
        if isinstance(d, FragmentDefinitionNode):
            fragments[d.name.value] = d
        elif isinstance(d, OperationDefinitionNode):
            operations.append(d)
    op = next((o for o in operations if operation_name is None or (o.name and o.name.value == operation_name)), None)
    if op is None:
        return 0
    root = schema.get_root_type(op.operation)
    return _Walker(schema, fragments, variables or {}).selection_cost(op.selection_set, root)


class CostCache:
    """Costs by (query text, operation, int variables), shared by all requests, bounded."""

    def __init__(self, maxsize: int = _CACHE_SIZE) -> None:
        self.maxsize = maxsize
        self._cache: "OrderedDict[tuple[str, str | None, tuple[tuple[str, Any], ...]], int]" = OrderedDict()

    def cost(self, ctx: Any) -> int:
        """The cost of the execution context's operation (its document must have parsed)."""
        variables = ctx.variables or {}
        # page sizes are the only variables that change the cost
        key = (ctx.query or "", ctx.operation_name,
               tuple(sorted((k, v) for k, v in variables.items() if isinstance(v, int))))
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        cost = operation_cost(ctx.schema._schema, ctx.graphql_document, ctx.operation_name, variables)
        self._cache[key] = cost
        if len(self._cache) > self.maxsize:
            self._cache.popitem(last=False)
        return cost


def over_budget(cost: int, max_cost: int) -> GraphQLExecutionResult | None:
    """The QUERY_TOO_COMPLEX result for an operation over budget (nothing executes), else None."""
    if cost <= max_cost:
        return None
    error = QueryTooComplex(f"query cost {cost} exceeds the maximum of {max_cost}", cost=cost, maxCost=max_cost)
    return GraphQLExecutionResult(data=None, errors=[GraphQLError(error.message, original_error=error)])
