"""schema/fast_executor.py must give exactly graphql-core's results and errors, only faster."""

from __future__ import annotations

import enum
from typing import Any, Optional

import pytest
import strawberry

from schema.fast_executor import executor_for


@strawberry.enum
class Color(enum.Enum):
    RED = "RED"
    BLUE = "BLUE"


@strawberry.type
class Item:
    id: strawberry.ID
    count: int
    maybe: Optional[int]
    colors: list[Color]
    tags: list[str]

    @strawberry.field
    def doubled(self) -> int:
        return self.count * 2


@strawberry.type
class Query:
    @strawberry.field
    def items(self) -> list[Item]:
        return ITEMS

    @strawberry.field
    def bad(self) -> list[Optional[Item]]:  # each broken item becomes null, with its error
        return BAD


ITEMS = [Item(id=strawberry.ID(str(i)), count=i, maybe=None if i % 2 else i, colors=[Color.RED, Color.BLUE],
              tags=["a", "b"]) for i in range(3)]
BAD: list[Any] = [
    Item(id=strawberry.ID("1"), count="not a number", maybe=1, colors=[], tags=[]),  # type: ignore[arg-type]
    Item(id=strawberry.ID("2"), count=None, maybe=1, colors=[], tags=[]),  # type: ignore[arg-type]
    Item(id=strawberry.ID("3"), count=1, maybe=1, colors=[None], tags=[]),  # type: ignore[list-item]
    Item(id=strawberry.ID("4"), count=1, maybe=1, colors=[Color.RED], tags="ab"),  # type: ignore[arg-type]
]
QUERY = "{ %s { id n: count maybe colors tags doubled __typename } }"


def _schemas() -> tuple[strawberry.Schema, strawberry.Schema]:
    plain = strawberry.Schema(query=Query)
    fast = strawberry.Schema(query=Query)
    fast.execution_context_class = executor_for(fast)
    assert fast.execution_context_class.plain["Item"].keys() == {"id", "count", "maybe", "colors", "tags"}
    return plain, fast


@pytest.mark.parametrize("field", ["items", "bad"])
async def test_same_data_and_errors(field: str) -> None:
    plain, fast = _schemas()
    expected = await plain.execute(QUERY % field)
    got = await fast.execute(QUERY % field)
    assert got.data == expected.data
    assert [(e.message, e.path) for e in got.errors or []] == [(e.message, e.path) for e in expected.errors or []]
    if field == "bad":
        assert got.data == {"bad": [None, None, None, None]} and len(got.errors) == 4
    else:
        assert list(got.data[field][0]) == ["id", "n", "maybe", "colors", "tags", "doubled", "__typename"]


def test_exception_handlers_or_another_default_resolver_turn_it_off() -> None:
    other = strawberry.Schema(query=Query, config=strawberry.schema.config.StrawberryConfig(
        default_resolver=lambda obj, name: getattr(obj, name)))
    assert executor_for(other).plain == {}
