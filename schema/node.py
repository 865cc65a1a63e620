"""Relay global object identification: the `Node` interface, `node(id)` and `nodes(ids)`.

Every id the API hands out is a UUID (random, version 4) and no two objects of any type share one, so the ids
are already global: `Market.id` is the id `node(id:)` takes, and the id every argument (`marketId`, ...) takes.
A type implementing `Node` registers how to find its rows and how to load one as the caller may see it:

    @strawberry.type
    class Market(Node):
        ...

    register_node("Market", "markets", load_market)   # load(info, uuid) -> Market | None (None: not visible)

`node(id)` asks Postgres, in one statement, which registered table holds the id (primary-key probes), then calls
that type's loader, which applies the same visibility rules as the type's own lookup (`market(id)`, `asset(id)`,
...): an object the caller may not see is null, exactly like an unknown id.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, TypeAlias

import strawberry
from sqlalchemy import text
from strawberry.types import Info

from core.errors import BadUserInput

MAX_NODES = 100

if TYPE_CHECKING:  # the types build a Node from their row's UUID; the wire type is ID (the UUID's string)
    NodeID: TypeAlias = uuid.UUID | str
else:
    NodeID = strawberry.ID


@strawberry.interface(
    description=(
        "An object with a global id: the same UUID its type's `id` field returns, unique across all types. "
        "Fetch any of them again with `node(id:)`."
    )
)
class Node:
    id: NodeID = strawberry.field(description="The object's global id (a UUID, unique across all types).")


@dataclass(frozen=True)
class NodeType:
    name: str
    table: str
    load: Callable[[Info, uuid.UUID], Awaitable[Any]]


_TYPES: dict[str, NodeType] = {}


def register_node(name: str, table: str, load: Callable[[Info, uuid.UUID], Awaitable[Any]]) -> None:
    """`table`'s primary key `id` holds the ids of GraphQL type `name`; `load(info, id)` returns it or None."""
    if not table.replace("_", "").isalnum():
        raise ValueError(f"not a table name: {table!r}")
    _TYPES[name] = NodeType(name, table, load)


def node_types() -> dict[str, NodeType]:
    return dict(_TYPES)


def parse_ids(ids: list[strawberry.ID]) -> list[uuid.UUID | None]:
    out: list[uuid.UUID | None] = []
    for raw in ids:
        try:
            out.append(uuid.UUID(str(raw)))
        except ValueError:
            out.append(None)  # not one of ours: no such node
    return out


async def locate(info: Info, ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
    """Which registered type holds each id (one statement: a primary-key probe per table)."""
    if not ids or not _TYPES:
        return {}
    parts = [f"SELECT id, '{t.name}' AS type FROM {t.table} WHERE id = ANY(:ids)" for t in _TYPES.values()]
    session = await info.context.session()
    rows = (await session.execute(text(" UNION ALL ".join(parts)), {"ids": ids})).all()
    return {row.id: row.type for row in rows}


async def load_nodes(info: Info, ids: list[strawberry.ID]) -> list[Any]:
    if len(ids) > MAX_NODES:
        raise BadUserInput(f"at most {MAX_NODES} ids", field="ids")
    parsed = parse_ids(ids)
    found = await locate(info, [i for i in parsed if i is not None])
    out: list[Any] = []
    for i in parsed:
        name = found.get(i) if i is not None else None
        out.append(None if name is None or i is None else await _TYPES[name].load(info, i))
    return out


@strawberry.type
class Query:
    @strawberry.field(description="Any object by its global id; null when it does not exist or is not visible to you.")
    async def node(
        self, info: Info, id: Annotated[strawberry.ID, strawberry.argument(description="A global id (`Node.id`).")]
    ) -> Node | None:
        return (await load_nodes(info, [id]))[0]

    @strawberry.field(
        description="Objects by global id, in the order asked (null where one does not exist or is not visible)."
    )
    async def nodes(
        self,
        info: Info,
        ids: Annotated[list[strawberry.ID], strawberry.argument(description="At most 100 global ids (`Node.id`).")],
    ) -> list[Node | None]:
        return await load_nodes(info, ids)
