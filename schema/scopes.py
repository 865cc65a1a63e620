"""OAuth 2.0 scopes: which root fields a client token (resolvers/identity/oauth_clients.py) may call.

A partner's client acts for one account (its roles still decide, field by field, as for that account's own login)
but only through the root fields one of its scopes allows; every other root field, those added later included,
answers FORBIDDEN with `reason: INSUFFICIENT_SCOPE` and the scopes that would allow it. A user's own login token
and API keys carry no scope and are not restricted here. The authorization matrix (tests/authz) declares the same
scopes per field and checks both ways.
"""

from __future__ import annotations

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
)

from core.errors import Forbidden
from core.oauth_scopes import SCOPES

FIELD_SCOPES: dict[str, frozenset[str]] = {}
for _scope, _fields in SCOPES.items():
    for _field in _fields:
        FIELD_SCOPES[_field] = FIELD_SCOPES.get(_field, frozenset()) | {_scope}

_ROOT = {"query": "Query", "mutation": "Mutation", "subscription": "Subscription"}


def _operation(document: DocumentNode, name: str | None) -> OperationDefinitionNode | None:
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if name is None:
        return operations[0] if len(operations) == 1 else None
    return next((o for o in operations if o.name is not None and o.name.value == name), None)


def root_fields(document: DocumentNode, operation_name: str | None) -> tuple[str, list[str]] | None:
    """(root type, names of the root fields selected, through fragments) of the operation that will run."""
    operation = _operation(document, operation_name)
    if operation is None:
        return None
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    names: list[str] = []
    seen: set[str] = set()

    def walk(selection_set: SelectionSetNode) -> None:
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                names.append(selection.name.value)
            elif isinstance(selection, InlineFragmentNode):
                walk(selection.selection_set)
            elif isinstance(selection, FragmentSpreadNode) and selection.name.value not in seen:
                seen.add(selection.name.value)
                fragment = fragments.get(selection.name.value)
                if fragment is not None:
                    walk(fragment.selection_set)

    walk(operation.selection_set)
    return _ROOT[operation.operation.value], names


def scope_refusal(
    document: DocumentNode | None, operation_name: str | None, granted: frozenset[str]
) -> Forbidden | None:
    """None when every root field of the operation is allowed by one of the `granted` scopes; else the FORBIDDEN
    error to answer instead of executing it."""
    found = root_fields(document, operation_name) if document is not None else None
    if found is None:
        return None  # graphql-core reports the unknown operation itself
    root, names = found
    for name in names:
        if name == "__typename":
            continue
        allowed = FIELD_SCOPES.get(f"{root}.{name}", frozenset())
        if not allowed & granted:
            message = (
                f"this client's token may not call {name}"
                if not allowed
                else f"{name} needs the scope {' or '.join(sorted(allowed))}"
            )
            return Forbidden(message, reason="INSUFFICIENT_SCOPE", field=name, requiredScopes=sorted(allowed))
    return None
