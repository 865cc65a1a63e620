"""Relay connection types shared by every list: `XConnection { edges { cursor node } pageInfo }`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import strawberry

from resolvers.pagination import Page

NodeT = TypeVar("NodeT")
RowT = TypeVar("RowT")  # what a resolver page holds, turned into NodeT by from_page


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


@strawberry.type
class Edge(Generic[NodeT]):
    cursor: str
    node: NodeT


@strawberry.type
class Connection(Generic[NodeT]):
    edges: list[Edge[NodeT]]
    page_info: PageInfo
    _count: strawberry.Private[Callable[[], Awaitable[int | None]] | None] = None

    @strawberry.field(
        description=(
            "How many items the whole list has (all pages, with the same filters), counted only when selected; "
            "null above 10,000 items or for a list that cannot be counted cheaply."
        )
    )
    async def total_count(self) -> int | None:
        return None if self._count is None else await self._count()

    @classmethod
    def from_page(cls, page: Page[RowT], to_node: Callable[[RowT], NodeT]) -> Connection[NodeT]:
        edges = [Edge(cursor=c, node=to_node(r)) for r, c in zip(page.rows, page.cursors)]
        return cls(
            _count=page.count,
            edges=edges,
            page_info=PageInfo(
                has_next_page=page.has_next_page,
                has_previous_page=page.has_previous_page,
                start_cursor=page.cursors[0] if page.cursors else None,
                end_cursor=page.cursors[-1] if page.cursors else None,
            ),
        )
