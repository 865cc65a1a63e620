"""Document limits checked before graphql-core's validation, each linear in the document's size.

A fragment may spread another one many times (`fragment F1 on Query { ...F0 ...F0 }`, 22 levels: 942 bytes, 4M
expanded fields). Strawberry's QueryDepthLimiter and MaxAliasesLimiter expanded every spread afresh (17-24 s of
CPU for that document), so here each fragment is summarised once, in dependency order (`fragment_order`), and a
spread adds its fragment's summary: depth = deepest field, aliases = aliased fields as executed (a fragment spread
twice counts twice), both in one pass over the text.

graphql-core's OverlappingFieldsCanBeMergedRule compares every pair of fields that land on the same response key,
recursively: 490 copies of `me { id }` (2,000 tokens) took 1.4 s, a binary tree of `c { c { ... } }` 1 s. The rule is
not rewritten; `merge_work` counts the pairs it would compare (fields grouped by response path, fragments expanded,
with a budget that stops the count early) and a document over the budget is refused before that rule runs.

Every refusal is QUERY_TOO_COMPLEX (the messages of the depth and alias limits are strawberry's).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
)

from core.errors import QueryTooComplex

# Field pairs graphql-core may compare (~12 us each on these machines, times the nesting depth): 2,000 pairs keep the
# rule under ~50 ms; ordinary documents compare a handful (a field repeated by two fragments is one pair).
MERGE_PAIR_BUDGET = 2_000
# Expanded fields walked while counting those pairs: a fragment spread k times counts k times.
MERGE_FIELD_BUDGET = 20_000


def fragment_definitions(document: DocumentNode) -> dict[str, FragmentDefinitionNode]:
    return {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}


def spreads_in(selection_set: SelectionSetNode) -> Iterator[FragmentSpreadNode]:
    """The fragment spreads written inside a selection set (not following them), iteratively."""
    stack = [selection_set]
    while stack:
        for sel in stack.pop().selections:
            if isinstance(sel, FragmentSpreadNode):
                yield sel
            elif isinstance(sel, (FieldNode, InlineFragmentNode)) and sel.selection_set is not None:
                stack.append(sel.selection_set)


def fragment_order(fragments: dict[str, FragmentDefinitionNode]) -> list[str]:
    """Fragment names, each after every fragment it spreads (a spread that closes a cycle is ignored: validation
    refuses cycles; the summaries only need to stay finite). Iterative: a chain of hundreds of fragments is fine."""
    deps = {name: [s.name.value for s in spreads_in(f.selection_set)] for name, f in fragments.items()}
    order: list[str] = []
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    for root in fragments:
        if root in state:
            continue
        state[root] = 1
        stack = [(root, iter(deps[root]))]
        while stack:
            name, children = stack[-1]
            for child in children:
                if child in deps and child not in state:
                    state[child] = 1
                    stack.append((child, iter(deps[child])))
                    break
            else:
                stack.pop()
                state[name] = 2
                order.append(name)
    return order


@dataclass(frozen=True)
class _Summary:
    depth: int  # the deepest field's depth below the spread (-1: no field)
    aliases: int


def _summarise(selection_set: SelectionSetNode, done: dict[str, _Summary]) -> _Summary:
    """Depth as strawberry's QueryDepthLimiter counts it (a field at nesting n is at depth n; the children of
    introspection fields are not counted) and aliases as its MaxAliasesLimiter does, with spreads from `done`."""
    depth, aliases = -1, 0
    stack: list[tuple[SelectionSetNode, int, bool]] = [(selection_set, 0, False)]
    while stack:
        sset, level, inside_introspection = stack.pop()
        for sel in sset.selections:
            if isinstance(sel, FieldNode):
                if not inside_introspection:
                    depth = max(depth, level)
                if sel.alias is not None:
                    aliases += 1
                if sel.selection_set is not None:
                    stack.append(
                        (sel.selection_set, level + 1, inside_introspection or sel.name.value.startswith("__"))
                    )
            elif isinstance(sel, InlineFragmentNode):
                stack.append((sel.selection_set, level, inside_introspection))
            elif isinstance(sel, FragmentSpreadNode):
                summary = done.get(sel.name.value)
                if summary is None:  # unknown or cyclic: validation reports it
                    continue
                aliases += summary.aliases
                if not inside_introspection and summary.depth >= 0:
                    depth = max(depth, level + summary.depth)
    return _Summary(depth, aliases)


def _too_complex(message: str, nodes: list[OperationDefinitionNode] | None = None) -> GraphQLError:
    return GraphQLError(message, nodes, original_error=QueryTooComplex(message))


def _flatten(selection_set: SelectionSetNode, flat: dict[str, list[FieldNode]], limit: int) -> list[FieldNode] | None:
    """The fields a selection set contributes at its own level (inline fragments and spreads expanded), or None
    when there are more than `limit`."""
    out: list[FieldNode] = []
    stack = [selection_set]
    while stack:
        for sel in stack.pop().selections:
            if isinstance(sel, FieldNode):
                out.append(sel)
            elif isinstance(sel, InlineFragmentNode):
                stack.append(sel.selection_set)
            elif isinstance(sel, FragmentSpreadNode):
                out.extend(flat.get(sel.name.value, ()))
            if len(out) > limit:
                return None
    return out


def merge_work(
    document: DocumentNode,
    order: list[str],
    fragments: dict[str, FragmentDefinitionNode],
    *,
    pair_budget: int = MERGE_PAIR_BUDGET,
    field_budget: int = MERGE_FIELD_BUDGET,
) -> bool:
    """True when the pairs of same-response-key fields (grouped by response path, as OverlappingFieldsCanBeMerged
    compares them) stay within budget. Stops as soon as a budget is exceeded, so its own work is bounded."""
    flat: dict[str, list[FieldNode]] = {}
    for name in order:
        fields = _flatten(fragments[name].selection_set, flat, field_budget)
        if fields is None:
            return False
        flat[name] = fields
    pairs = walked = 0
    groups: list[list[FieldNode]] = []
    for d in document.definitions:
        if isinstance(d, OperationDefinitionNode):
            fields = _flatten(d.selection_set, flat, field_budget)
            if fields is None:
                return False
            groups.append(fields)
    while groups:
        by_key: dict[str, list[FieldNode]] = {}
        for f in groups.pop():
            by_key.setdefault((f.alias or f.name).value, []).append(f)
        for same in by_key.values():
            n = len(same)
            pairs += n * (n - 1) // 2
            walked += n
            if pairs > pair_budget or walked > field_budget:
                return False
            children: list[FieldNode] = []
            for f in same:
                if f.selection_set is not None:
                    sub = _flatten(f.selection_set, flat, field_budget - walked)
                    if sub is None:
                        return False
                    children.extend(sub)
            if children:
                groups.append(children)
    return True


def limit_errors(document: DocumentNode, *, max_depth: int, max_aliases: int) -> list[GraphQLError]:
    """QUERY_TOO_COMPLEX errors for a document over the depth, alias or field-merge limits (empty when within)."""
    fragments = fragment_definitions(document)
    order = fragment_order(fragments)
    done: dict[str, _Summary] = {}
    for name in order:
        done[name] = _summarise(fragments[name].selection_set, done)
    errors: list[GraphQLError] = []
    aliases = 0
    for d in document.definitions:
        if not isinstance(d, OperationDefinitionNode):
            continue
        summary = _summarise(d.selection_set, done)
        aliases += summary.aliases
        if summary.depth > max_depth:
            name = d.name.value if d.name else "anonymous"
            errors.append(_too_complex(f"'{name}' exceeds maximum operation depth of {max_depth}", [d]))
    if aliases > max_aliases:
        errors.append(_too_complex(f"{aliases} aliases found. Allowed: {max_aliases}"))
    if not errors and not merge_work(document, order, fragments):
        errors.append(
            _too_complex(
                "the document repeats fields too often to validate (fields that share a "
                "response name, fragments expanded, are compared pairwise)"
            )
        )
    return errors
