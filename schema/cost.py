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

from typing import Any

from graphql import ExecutionResult as GraphQLExecutionResult
from graphql import (
    FieldNode,
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
from graphql.type.definition import GraphQLNamedType

from core.errors import QueryTooComplex
from resolvers.pagination import DEFAULT_PAGE
from schema.document_cache import CachedDocument
from schema.document_limits import fragment_definitions, fragment_order

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


def _local_cost(
    schema: GraphQLSchema,
    selection_set: SelectionSetNode,
    parent: GraphQLNamedType | None,
    variables: dict[str, Any],
    fragment_costs: dict[str, int],
) -> int:
    """The cost of one selection set, a spread adding its fragment's cost (already computed) times the page sizes
    above it. Iterative: the document's nesting is not the interpreter's."""
    total = 0
    stack: list[tuple[SelectionSetNode, GraphQLNamedType | None, int]] = [(selection_set, parent, 1)]
    while stack:
        sset, parent_type, multiplier = stack.pop()
        fields = getattr(parent_type, "fields", None)
        for sel in sset.selections:
            if isinstance(sel, FieldNode):
                name = sel.name.value
                if name == "__schema":  # walks every type, field and argument however small the selection looks
                    total += multiplier * INTROSPECTION_SCHEMA_COST
                    continue
                total += multiplier
                field = None if name.startswith("__") or fields is None else fields.get(name)
                if field is None or sel.selection_set is None:
                    continue
                if "first" in field.args or "last" in field.args:
                    size = _page_size(sel, variables)
                    child_multiplier = multiplier * (DEFAULT_PAGE if size is None else size)
                else:
                    child_multiplier = multiplier
                stack.append((sel.selection_set, get_named_type(field.type), child_multiplier))
            elif isinstance(sel, InlineFragmentNode):
                cond = schema.get_type(sel.type_condition.name.value) if sel.type_condition else parent_type
                stack.append((sel.selection_set, cond, multiplier))
            elif isinstance(sel, FragmentSpreadNode):
                # unknown or cyclic fragments cost nothing here: validation refuses them
                total += multiplier * fragment_costs.get(sel.name.value, 0)
    return total


def operation_cost(
    schema: GraphQLSchema, document: Any, operation_name: str | None, variables: dict[str, Any] | None
) -> int:
    """Every fragment's cost is computed once, in dependency order, so a fragment spread twice by each of 22
    nested fragments costs 22 steps, not 4 million (its cost, 2^22, is what executing it would walk)."""
    variables = variables or {}
    op = next(
        (
            d
            for d in document.definitions
            if isinstance(d, OperationDefinitionNode)
            and (operation_name is None or (d.name and d.name.value == operation_name))
        ),
        None,
    )
    if op is None:
        return 0
    fragments = fragment_definitions(document)
    costs: dict[str, int] = {}
    for name in fragment_order(fragments):
        frag = fragments[name]
        costs[name] = _local_cost(
            schema, frag.selection_set, schema.get_type(frag.type_condition.name.value), variables, costs
        )
    return _local_cost(schema, op.selection_set, schema.get_root_type(op.operation), variables, costs)


def cached_cost(ctx: Any, entry: CachedDocument | None) -> int:
    """The cost of the execution context's operation, remembered on its cached document: page sizes are the only
    variables that change it."""
    variables = ctx.variables or {}
    if entry is None:
        return operation_cost(ctx.schema._schema, ctx.graphql_document, ctx.operation_name, variables)
    key = (ctx.operation_name, *sorted((k, v) for k, v in variables.items() if type(v) is int))
    cost = entry.costs.get(key)
    if cost is None:
        cost = operation_cost(ctx.schema._schema, ctx.graphql_document, ctx.operation_name, variables)
        entry.remember_cost(key, cost)
    return cost


def over_budget(cost: int, max_cost: int) -> GraphQLExecutionResult | None:
    """The QUERY_TOO_COMPLEX result for an operation over budget (nothing executes), else None."""
    if cost <= max_cost:
        return None
    error = QueryTooComplex(f"query cost {cost} exceeds the maximum of {max_cost}", cost=cost, maxCost=max_cost)
    return GraphQLExecutionResult(data=None, errors=[GraphQLError(error.message, original_error=error)])
