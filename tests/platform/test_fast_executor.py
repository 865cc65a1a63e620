"""schema/fast_executor.py must give exactly graphql-core's results and errors, only faster."""

from __future__ import annotations

import enum
import json
from typing import Any

import orjson
import pytest
import strawberry
from orjson import Fragment

from schema import fast_executor
from schema.fast_executor import executor_for
from schema.lean_resolvers import NOT_LOADED, PREFETCHED


@strawberry.enum
class Color(enum.Enum):
    RED = "RED"
    BLUE = "BLUE"


@strawberry.type
class Item:
    id: strawberry.ID
    count: int
    maybe: int | None
    colors: list[Color]
    tags: list[str]

    @strawberry.field
    def doubled(self) -> int:
        return self.count * 2


@strawberry.type
class Box:
    item: Item | None
    strict: Item
    items: list[Item]
    maybe_items: list[Item] | None
    _cached: strawberry.Private[object] = NOT_LOADED

    @strawberry.field(metadata={PREFETCHED: "_cached"})
    def cached(self) -> Item | None:  # like Asset's prefetched fields: the prefetched value, else a load
        return self.strict if self._cached is NOT_LOADED else self._cached  # type: ignore[return-value]

    @strawberry.field
    async def later(self) -> Item:
        return self.strict


@strawberry.type
class Query:
    @strawberry.field
    def boxes(self) -> list[Box | None]:
        good = ITEMS[1]
        return [
            Box(item=None, strict=good, items=ITEMS, maybe_items=None),
            Box(item=good, strict=good, items=ITEMS, maybe_items=ITEMS, _cached=ITEMS[2]),
            Box(item=BAD[0], strict=good, items=ITEMS, maybe_items=[ITEMS[0], BAD[1]]),  # nulls the lists
            Box(item=good, strict=BAD[1], items=ITEMS, maybe_items=None),
        ]  # nulls the box

    @strawberry.field
    def items(self) -> list[Item]:
        return ITEMS

    @strawberry.field
    def bad(self) -> list[Item | None]:  # each broken item becomes null, with its error
        return BAD


ITEMS = [
    Item(id=strawberry.ID(str(i)), count=i, maybe=None if i % 2 else i, colors=[Color.RED, Color.BLUE], tags=["a", "b"])
    for i in range(3)
]
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


BOXES = (
    "{ boxes { item { id n: count } strict { id colors } items { id n: count } maybeItems { count } "
    "cached { id } later { id count } } }"
)


async def test_objects_lists_prefetched_and_errors_inside_them() -> None:
    plain, fast = _schemas()
    assert fast.execution_context_class.objects["Box"].keys() == {"item", "strict", "items", "maybeItems", "cached"}
    expected = await plain.execute(BOXES)
    got = await fast.execute(BOXES)
    assert got.data == expected.data
    assert [(e.message, e.path) for e in got.errors] == [(e.message, e.path) for e in expected.errors]
    assert got.data["boxes"][0]["item"] is None and got.data["boxes"][1]["cached"] == {"id": "2"}
    assert got.data["boxes"][2]["maybeItems"] is None and got.data["boxes"][3] is None
    assert len(got.errors) == 3


def test_exception_handlers_or_another_default_resolver_turn_it_off() -> None:
    other = strawberry.Schema(
        query=Query,
        config=strawberry.schema.config.StrawberryConfig(default_resolver=lambda obj, name: getattr(obj, name)),
    )
    assert executor_for(other).plain == {}


@strawberry.interface
class Named:
    name: str


@strawberry.type
class Pet(Named):  # implements an interface: Strawberry gives it is_type_of (like every Node type)
    legs: int


@strawberry.type
class Owner:
    pet: Pet
    pets: list[Pet]


@strawberry.type
class PetQuery:
    @strawberry.field
    def owners(self) -> list[Owner | None]:
        return [
            Owner(pet=Pet(name="rex", legs=4), pets=[Pet(name="tweety", legs=2)]),
            Owner(pet=ITEMS[0], pets=[]),  # type: ignore[arg-type]  # not a Pet: graphql-core's type error
            Owner(pet=Pet(name="nemo", legs=0), pets=[Pet(name="a", legs=1), ITEMS[1]]),  # type: ignore[list-item]  # ditto
        ]


async def test_types_with_is_type_of_take_the_fast_path_only_for_their_own_class() -> None:
    """Node types (interface implementers) were left to graphql-core's slow path; values of exactly their class
    now take the fast one, anything else still gets graphql-core's check and error."""
    plain = strawberry.Schema(query=PetQuery)
    fast = strawberry.Schema(query=PetQuery)
    fast.execution_context_class = executor_for(fast)
    assert fast.execution_context_class.objects["Owner"].keys() == {"pet", "pets"}
    query = "{ owners { pet { name legs } pets { name } } }"
    expected = await plain.execute(query)
    got = await fast.execute(query)
    assert got.data == expected.data
    assert [(e.message, e.path) for e in got.errors] == [(e.message, e.path) for e in expected.errors]
    assert got.data["owners"][0] == {"pet": {"name": "rex", "legs": 4}, "pets": [{"name": "tweety"}]}
    assert got.data["owners"][1] is None and got.data["owners"][2] is None and len(got.errors) == 2


PLANNED = (
    "query($no: Boolean!) { boxes { __typename item { id n: count colors tags maybe } items { ...I } "
    "strict @include(if: $no) { id } cached { id x: id __typename } maybeItems { id @skip(if: $no) count } } } "
    "fragment I on Item { id count ... on Item { colors } }"
)


@pytest.mark.parametrize("no", [True, False])
async def test_plans_give_graphql_cores_data_errors_and_key_order(no: bool) -> None:
    """Selections of plain fields only (fragments, aliases, __typename, @skip/@include) complete through a plan;
    a value the plan cannot complete (BAD items, NOT_LOADED, a non-null null) goes back to graphql-core's path."""
    plain, fast = _schemas()
    expected = await plain.execute(PLANNED, variable_values={"no": no})
    ran: list[int] = []
    original = fast_executor.complete

    def counting(plan: Any, value: Any, *args: Any) -> Any:
        ran.append(1)
        return original(plan, value, *args)

    fast_executor.complete = counting  # type: ignore[assignment]
    try:
        got = await fast.execute(PLANNED, variable_values={"no": no})
    finally:
        fast_executor.complete = original  # type: ignore[assignment]
    assert ran, "no plan ran"
    assert json.dumps(got.data) == json.dumps(expected.data)  # the same keys in the same order
    assert [(e.message, e.path) for e in got.errors or []] == [(e.message, e.path) for e in expected.errors or []]


@strawberry.type
class Shelf:
    boxes: list[Box]
    first: Box | None


@strawberry.type
class ShelfQuery:
    @strawberry.field
    def shelves(self) -> list[Shelf | None]:
        good = ITEMS[0]
        return [
            Shelf(boxes=[Box(item=good, strict=good, items=ITEMS, maybe_items=ITEMS, _cached=None)], first=None),
            # a box whose items hold a broken one: the plan of `shelves` gives up, graphql-core nulls the shelf
            Shelf(boxes=[Box(item=good, strict=good, items=[good, BAD[1]], maybe_items=None)], first=None),
            Shelf(boxes=[], first=Box(item=None, strict=BAD[0], items=[], maybe_items=[])),
        ]


async def test_plans_nest_and_fall_back_as_a_whole() -> None:
    plain = strawberry.Schema(query=ShelfQuery)
    fast = strawberry.Schema(query=ShelfQuery)
    fast.execution_context_class = executor_for(fast)
    query = "{ shelves { boxes { item { id } items { n: count } cached { id } maybeItems { id } } first { strict { id n: count } } } }"
    expected = await plain.execute(query)
    got = await fast.execute(query)
    assert json.dumps(got.data) == json.dumps(expected.data)
    assert [(e.message, e.path) for e in got.errors or []] == [(e.message, e.path) for e in expected.errors or []]
    assert (
        got.data
        == {
            "shelves": [
                {
                    "boxes": [
                        {
                            "item": {"id": "0"},
                            "items": [{"n": 0}, {"n": 1}, {"n": 2}],
                            "cached": None,
                            "maybeItems": [{"id": "0"}, {"id": "1"}, {"id": "2"}],
                        }
                    ],
                    "first": None,
                },
                None,
                {"boxes": [], "first": None},
            ]
        }
        and len(got.errors) == 2
    )


def test_enum_table_answers_as_strawberry() -> None:
    _, fast = _schemas()
    serialize = fast.execution_context_class.plain["Item"]["colors"][1]
    color = fast._schema.type_map["Color"]
    assert serialize([Color.RED, Color.BLUE]) == [color.coerce_output_value(c) for c in (Color.RED, Color.BLUE)]
    assert serialize(["RED"]) == [color.coerce_output_value("RED")]  # not a member: the type's own coercion


@strawberry.type
class EdgeQuery:
    @strawberry.field
    def boxes(self) -> list[Box | None]:
        big = Item(id=strawberry.ID("9"), count=2**31, maybe=-(2**31), colors=[], tags=[])
        flag = Item(id=strawberry.ID("8"), count=True, maybe=1, colors=[], tags=[])  # type: ignore[arg-type]
        return [
            Box(item=big, strict=ITEMS[0], items=[], maybe_items=None),  # Int beyond 32 bits: graphql-core's error
            Box(item=flag, strict=ITEMS[0], items=[], maybe_items=None),  # a bool for Int: serialized as 1
            Box(item=ITEMS[1], strict=ITEMS[0], items=[], maybe_items=None),
        ]


async def test_plans_pass_through_only_what_serializers_return_unchanged() -> None:
    plain = strawberry.Schema(query=EdgeQuery)
    fast = strawberry.Schema(query=EdgeQuery)
    fast.execution_context_class = executor_for(fast)
    query = "{ boxes { item { id count maybe } } }"
    expected = await plain.execute(query)
    got = await fast.execute(query)
    assert json.dumps(got.data) == json.dumps(expected.data)
    assert [(e.message, e.path) for e in got.errors or []] == [(e.message, e.path) for e in expected.errors or []]
    assert got.data == {
        "boxes": [
            {"item": None},
            {"item": {"id": "8", "count": 1, "maybe": 1}},
            {"item": {"id": "1", "count": 1, "maybe": None}},
        ]
    }


async def test_a_resolvers_answer_shares_its_plan_across_a_documents_operations_only_without_directives() -> None:
    """collect_and_execute_subfields: the plan of a directive-free selection is built once per document and reused
    by its later operations; a selection with @skip/@include (it depends on the variables) is collected per operation
    by graphql-core. Either way, the same data as graphql-core's path."""
    from graphql import execute, parse

    plain, fast = _schemas()
    executor = fast.execution_context_class
    shared = "{ items { id ...F n: count } } fragment F on Item { tags colors }"
    skipping = "query ($no: Boolean!) { items { id ...F n: count @skip(if: $no) } } fragment F on Item { tags }"
    for query, variables in [(shared, {}), (skipping, {"no": True}), (skipping, {"no": False})]:
        document = parse(query)
        for _ in range(2):  # the second operation of the same document finds the plan it left
            expected = await plain.execute(query, variable_values=variables)
            got = execute(fast._schema, document, variable_values=variables, executor_class=executor)
            assert not got.errors and json.dumps(got.data) == json.dumps(expected.data)
        root = document.definitions[0].selection_set.selections[0]  # type: ignore[attr-defined]
        plans = [plan for nodes, plan in executor.shared_plans.values() if nodes[0] is root]
        assert len(plans) == 1 and (plans[0] is None) == (query is skipping)


@strawberry.type
class RenderedQuery:
    @strawberry.field
    def page(self, rendered: bool) -> Box:
        if rendered:
            return Fragment(b'{"strict":{"id":"7"}}')  # type: ignore[return-value]
        return Box(item=None, strict=ITEMS[1], items=[], maybe_items=None)


async def test_a_pre_rendered_answer_is_spliced_as_is() -> None:
    """A resolver that rendered its selection as JSON (orjson.Fragment) hands it to the response unchanged; every
    other value of the same field still completes field by field."""
    fast = strawberry.Schema(query=RenderedQuery)
    fast.execution_context_class = executor_for(fast)
    rendered = await fast.execute("{ page(rendered: true) { strict { id } } }")
    assert rendered.errors is None
    assert orjson.loads(orjson.dumps(rendered.data)) == {"page": {"strict": {"id": "7"}}}
    completed = await fast.execute("{ page(rendered: false) { strict { id } } }")
    assert completed.errors is None and completed.data == {"page": {"strict": {"id": "1"}}}
