"""Whether a subscription's results may be shared across sockets: declared on the field where it is defined.

    @strawberry.subscription(extensions=authenticated(), metadata=SHARED)       # market data: same for everyone
    @strawberry.subscription(extensions=authenticated(), metadata=PRIVATE)      # the caller's orders

- SHARED: the results depend only on the operation (document, variables) and on what authorization decides from
  the caller's roles, never on who the caller is. Sockets whose operations are identical (and whose callers have
  the same roles and kind of credential) get one execution's results (schema/shared_subscriptions.py).
  `SHARED_WITH_SNAPSHOT` also says the stream starts with a snapshot (late joiners get a fresh one).
- PRIVATE, and anything not declared: executed for each subscriber alone, with that socket's own caller; its
  results are never handed to another socket, of another user or of the same user with other credentials.

tests/test_shared_subscriptions.py fails when a subscription root field declares neither.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from graphql import GraphQLSchema

SHARING = "rwa.sharing"
SNAPSHOT = "rwa.snapshot"
SHARED: Mapping[str, Any] = MappingProxyType({SHARING: "shared"})
SHARED_WITH_SNAPSHOT: Mapping[str, Any] = MappingProxyType({SHARING: "shared", SNAPSHOT: True})
PRIVATE: Mapping[str, Any] = MappingProxyType({SHARING: "private"})

_DEFINITION = "strawberry-definition"  # where strawberry keeps a GraphQL field's StrawberryField


def _metadata(field: Any) -> Mapping[str, Any]:
    definition = (field.extensions or {}).get(_DEFINITION)
    return getattr(definition, "metadata", None) or {}


def declared_sharing(schema: GraphQLSchema) -> dict[str, str | None]:
    """Subscription root field name -> "shared", "private", or None when the field declares nothing."""
    root = schema.subscription_type
    return {name: _metadata(field).get(SHARING) for name, field in (root.fields.items() if root else ())}


def shared_fields(schema: GraphQLSchema) -> frozenset[str]:
    return frozenset(name for name, sharing in declared_sharing(schema).items() if sharing == "shared")


def snapshot_fields(schema: GraphQLSchema) -> frozenset[str]:
    root = schema.subscription_type
    return frozenset(
        name
        for name, field in (root.fields.items() if root else ())
        if _metadata(field).get(SNAPSHOT) and _metadata(field).get(SHARING) == "shared"
    )
