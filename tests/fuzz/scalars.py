"""Argument strategies for the fuzz gate: GraphQL value nodes for every scalar of the schema, half plausible (ids of
seeded rows, cursors and ids the API returned earlier in the run, addresses, currencies, well-formed numbers and
dates) and half hostile (wrong types, NaN and huge exponents, dates at the ends of the calendar, unstorable text,
deep JSON, SQL and LIKE metacharacters).

The built-in String, Int and ID are overridden too: hypothesis-graphql's own draw random text and 32-bit integers,
which almost never name a row, a chain or a currency, so resolvers would answer NOT_FOUND before reaching their
logic. `Pools` is shared with the runner, which adds what responses return (ids, cursors) as the run goes on."""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import graphql
from hypothesis import strategies as st
from hypothesis_graphql import nodes

POOL_LIMIT = 400  # most recent harvested values kept per pool


@dataclass
class Pools:
    ids: list[str] = field(default_factory=list)
    strings: list[str] = field(default_factory=list)
    cursors: list[str] = field(default_factory=list)
    # by kind: "marketId", "orderId" (from `id` fields of Order objects), "address", "currency"
    named: dict[str, list[str]] = field(default_factory=dict)

    def __repr__(self) -> str:  # Hypothesis prints the test's arguments on failure: not 400 ids
        return f"Pools({len(self.ids)} ids, {len(self.strings)} strings, {len(self.cursors)} cursors)"

    def remember(self, pool: list[str], value: str) -> None:
        if value not in pool:
            pool.append(value)
            if len(pool) > POOL_LIMIT:
                del pool[: len(pool) - POOL_LIMIT]

    def harvest(self, data: Any, type_: graphql.GraphQLNamedType | None = None) -> None:
        """Walk a response's data (`type_`: the operation's root type): UUIDs go to `ids` and, when their kind is
        known (an `id` of an Order object, a `marketId` field), to `named[kind]`; cursors to `cursors`."""
        stack: list[tuple[Any, graphql.GraphQLNamedType | None]] = [(data, type_)]
        while stack:
            item, parent = stack.pop()
            if isinstance(item, list):
                stack.extend((child, parent) for child in item)
                continue
            if not isinstance(item, dict):
                continue
            fields = (
                parent.fields if isinstance(parent, (graphql.GraphQLObjectType, graphql.GraphQLInterfaceType)) else {}
            )
            for key, value in item.items():
                if isinstance(value, (dict, list)):
                    stack.append((value, named_type(fields[key].type) if key in fields else None))
                elif not isinstance(value, str):
                    continue
                elif key in ("cursor", "startCursor", "endCursor"):
                    self.remember(self.cursors, value)
                elif len(value) == 36 and value.count("-") == 4:
                    self.remember(self.ids, value)
                    kind = key if key.endswith("Id") else id_kind(parent) if key == "id" else None
                    if kind:
                        self.remember(self.named.setdefault(kind, []), value)
                elif key in ADDRESS_NAMES and value.startswith("0x"):
                    self.remember(self.named.setdefault("address", []), value)


ADDRESS_NAMES = {"address", "token", "holder", "tokenAddress", "walletAddress", "depositAddress", "identityRegistry"}
CURRENCY_NAMES = {"currency", "quoteCurrency", "base", "quote", "fromCurrency", "toCurrency"}
ID_KIND_ALIASES = {"caseId": "kycCaseId", "documentContentId": "assetDocumentId"}


def named_type(type_: graphql.GraphQLType) -> graphql.GraphQLNamedType:
    while isinstance(type_, graphql.GraphQLWrappingType):
        type_ = type_.of_type
    return type_  # type: ignore[return-value]


def id_kind(type_: graphql.GraphQLNamedType | None) -> str | None:
    """The pool of ids of objects of `type_`: Order -> "orderId"."""
    if type_ is None:
        return None
    kind = type_.name[0].lower() + type_.name[1:] + "Id"
    return ID_KIND_ALIASES.get(kind, kind)


def argument_kind(name: str, id_of: graphql.GraphQLNamedType | None) -> str | None:
    """The pool an argument or input field named `name` draws from (`id` arguments: the root field's type)."""
    if name in ADDRESS_NAMES:
        return "address"
    if name in CURRENCY_NAMES:
        return "currency"
    if name in ("country", "jurisdiction"):
        return "country"
    if name == "id":
        return id_kind(id_of)
    if name.endswith("Id"):
        return ID_KIND_ALIASES.get(name, name)
    return None


def live(pool: list[str]) -> st.SearchStrategy[str]:
    """A member of `pool` as it is when drawn (the pool grows during the run)."""
    return st.integers(min_value=0, max_value=1 << 16).map(lambda i: pool[i % len(pool)] if pool else "")


def string_node(value: str) -> graphql.StringValueNode:
    return graphql.StringValueNode(value=value)


def raw_int(value: int) -> graphql.IntValueNode:
    return graphql.IntValueNode(value=str(value))


def raw_float(text: str) -> graphql.FloatValueNode:
    return graphql.FloatValueNode(value=text)


# text a client may send and the server must store or refuse with a code (NUL and lone surrogates are refused at the
# HTTP layer, the rest reaches resolvers and Postgres)
HOSTILE_TEXT = st.sampled_from(
    [
        "",
        " ",
        "\t\n",
        "'; DROP TABLE users; --",
        "%",
        "_",
        "\\",
        "%_\\%",
        "*",
        ".*",
        "kyc.*",
        "a\x00b",
        "\u202e\u200b",
        "\U0001f600" * 3,
        "x" * 5000,
        "0x",
        "0x" + "0" * 40,
        "0x" + "f" * 40,
        "0x" + "G" * 40,
        "0X" + "a" * 40,
        "1" * 400,
        "null",
        "undefined",
        "NaN",
        "-1",
        "<script>alert(1)</script>",
        "../../etc/passwd",
        "https://",
        "http://127.0.0.1/",
        "http://169.254.169.254/latest",
        "https://example.com/" + "a" * 3000,
        "usd",
        "USD ",
        "EUR",
        "USD",
        "JPY",
        "XXX",
        "ÄÖÜ",
        "\u0130",
        "ﬀ",
    ]
)
TEXT = st.one_of(st.text(max_size=60), HOSTILE_TEXT)
UUID_TEXT = st.one_of(
    st.uuids().map(str),
    st.just(str(uuid.UUID(int=0))),
    st.just("ffffffff-ffff-ffff-ffff-ffffffffffff"),
    st.uuids().map(lambda u: u.hex),
    st.uuids().map(lambda u: "{%s}" % u),
    st.uuids().map(lambda u: str(u).upper()),
    st.sampled_from(["not-a-uuid", "", "1", "urn:uuid:"]),
)
DECIMAL_TEXT = st.one_of(
    st.decimals(min_value=-(10**6), max_value=10**6, places=2).map(str),
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(
        [
            "0",
            "-0",
            "0.01",
            "1",
            "2",
            "100",
            "1e3",
            "1E-18",
            "0.000000000000000001",
            "NaN",
            "sNaN",
            "-Infinity",
            "1E+999999999",
            "1e-999999999",
            "9" * 60,
            "1." + "1" * 58,
            "0E-1000026",
            "1,5",
            "0x10",
            " 1",
            "",
            "abc",
            "1_000",
            "١٢٣",
        ]
    ),
)
DATETIME_TEXT = st.one_of(
    st.datetimes(timezones=st.none() | st.timezones()).map(lambda d: d.isoformat()),
    st.sampled_from(
        [
            "2026-01-01T00:00:00Z",
            "2026-12-31T23:59:59+14:00",
            "0001-01-01T00:00:00Z",
            "0001-01-01T00:00:00+14:00",
            "9999-12-31T23:59:59Z",
            "9999-12-31T23:59:59-12:00",
            "2024-02-30T00:00:00Z",
            "2024-01-01",
            "2024-01-01T00:00:00",
            "now",
            "",
            "1700000000",
            "2024-01-01T25:00:00Z",
            "+002024-01-01T00:00:00Z",
        ]
    ),
)
DATE_TEXT = st.one_of(
    st.dates().map(str),
    st.sampled_from(["0001-01-01", "9999-12-31", "2024-02-30", "2024-1-1", "2026-01-01", "20240101", "", "today"]),
)
INTS = st.one_of(
    st.sampled_from([0, 1, 2, 5, 10, 20, 50, 100, 137, 56, -1, 1000, 2**31 - 1, -(2**31)]),
    st.integers(min_value=-(2**31), max_value=2**31 - 1),
)


def json_values() -> st.SearchStrategy[graphql.ValueNode]:
    leaves = st.one_of(
        st.none().map(lambda _: graphql.NullValueNode()),
        st.booleans().map(nodes.Boolean),
        st.integers(min_value=-(2**70), max_value=2**70).map(raw_int),
        TEXT.map(string_node),
        st.floats(allow_nan=False, allow_infinity=False).map(nodes.Float),
        st.sampled_from(["1e400", "-1e400", "1e-400"]).map(raw_float),
        st.just(nodes.List([])),
        st.just(graphql.ObjectValueNode(fields=())),
    )
    return st.recursive(
        leaves,
        lambda children: st.one_of(
            st.lists(children, min_size=1, max_size=4).map(nodes.List),
            st.lists(
                st.tuples(st.from_regex(r"[_A-Za-z][_0-9A-Za-z]{0,8}", fullmatch=True), children),
                min_size=1,
                max_size=4,
                unique_by=lambda kv: kv[0],
            ).map(
                lambda kvs: graphql.ObjectValueNode(
                    fields=tuple(graphql.ObjectFieldNode(name=graphql.NameNode(value=k), value=v) for k, v in kvs)
                )
            ),
        ),
        max_leaves=30,
    )


def wrong_type() -> st.SearchStrategy[graphql.ValueNode]:
    """A value of another JSON type than the scalar expects (the scalar's parser must refuse it with a code)."""
    return st.one_of(
        st.booleans().map(nodes.Boolean),
        st.just(nodes.List([])),
        st.just(graphql.ObjectValueNode(fields=())),
        st.floats(allow_nan=False).map(nodes.Float),
    )


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


CURSOR_VALUES = st.one_of(
    st.sampled_from(
        [
            ["dt", "0001-01-01T00:00:00+14:00"],
            ["dt", "9999-12-31T23:59:59-12:00"],
            ["dt", "2026-01-01"],
            ["d", "0001-01-01"],
            ["dec", "1e999999999"],
            ["dec", "NaN"],
            ["dec", "-0"],
            ["u", "x"],
            ["u", str(uuid.UUID(int=0))],
            ["v", 2**63],
            ["v", -(2**63) - 1],
            ["v", 1.5],
            ["v", None],
            ["v", True],
            ["v", "a\x00"],
            ["v", "\ud800"],
            ["v", [1]],
            ["zz", 1],
            ["v"],
            [],
            {"a": 1},
        ]
    ),
    st.tuples(
        st.sampled_from(["dt", "d", "dec", "u", "v"]),
        st.one_of(st.integers(), st.text(max_size=30), st.none(), st.booleans()),
    ).map(list),
)


def crafted_cursors(pools: Pools) -> st.SearchStrategy[str]:
    """Cursors that look like the API's (base64url JSON of [tag, value] pairs), with values of the wrong tag, type or
    range, spliced into real ones taken from the pool, or nested, huge and not JSON at all."""

    def splice(cursor: str, index: int, value: Any) -> str:
        try:
            items = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        except ValueError:
            items = []
        items = items if isinstance(items, list) and items else [value]
        items[index % len(items)] = value
        return _b64(json.dumps(items).encode())

    return st.one_of(
        st.builds(splice, live(pools.cursors), st.integers(0, 3), CURSOR_VALUES),
        st.lists(CURSOR_VALUES, max_size=3).map(lambda items: _b64(json.dumps(items).encode())),
        st.integers(1, 3000).map(lambda depth: _b64(b"[" * depth + b"]" * depth)),
        st.sampled_from(
            [_b64(b"{}"), _b64(b"null"), _b64(b'[["u", "' + b"9" * 5000 + b'"]]'), "!!!", "====", _b64(b"\xff\xfe")]
        ),
    )


def mostly_plausible(
    plausible: st.SearchStrategy[graphql.ValueNode], hostile: st.SearchStrategy[graphql.ValueNode]
) -> st.SearchStrategy[graphql.ValueNode]:
    """Nine plausible values to one hostile. hypothesis-graphql fills every optional argument too, so with (say)
    eight arguments a higher share would leave few operations that get past input checks into the resolvers."""
    return st.integers(min_value=0, max_value=9).flatmap(lambda i: hostile if i == 0 else plausible)


WORDS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz ABCXYZ-0123456789", min_size=1, max_size=24)


def scalar_strategies(pools: Pools, hostile: bool = True) -> dict[str, st.SearchStrategy[graphql.ValueNode]]:
    """`hostile=False`: plausible values only (documents of several root fields, where one refused argument would
    refuse the whole operation before anything runs concurrently)."""
    ids, strings, cursors = live(pools.ids), live(pools.strings), live(pools.cursors)

    def mostly(
        plausible: st.SearchStrategy[graphql.ValueNode], bad: st.SearchStrategy[graphql.ValueNode]
    ) -> st.SearchStrategy[graphql.ValueNode]:
        return mostly_plausible(plausible, bad) if hostile else plausible

    return {
        "String": mostly(
            st.one_of(strings, cursors, WORDS).map(string_node),
            st.one_of(TEXT, crafted_cursors(pools)).map(string_node),
        ),
        "ID": mostly(ids.map(string_node), st.one_of(UUID_TEXT.map(string_node), INTS.map(raw_int))),
        "Int": mostly(
            st.sampled_from([0, 1, 2, 5, 10, 20, 100, 1, 137, 56]).map(raw_int),
            st.one_of(INTS.map(raw_int), st.integers(min_value=2**31, max_value=2**70).map(raw_int)),
        ),
        "UUID": mostly(ids.map(string_node), st.one_of(UUID_TEXT.map(string_node), INTS.map(raw_int), wrong_type())),
        "Decimal": mostly(
            st.one_of(
                st.decimals(min_value=0, max_value=10**4, places=2).map(str),
                st.sampled_from(["1", "2", "0.5", "10", "100", "1000.25"]),
            ).map(string_node),
            st.one_of(
                DECIMAL_TEXT.map(string_node),
                st.integers(min_value=-(10**45), max_value=10**45).map(raw_int),
                st.floats(allow_nan=False, allow_infinity=False).map(nodes.Float),
                st.sampled_from(["1e400", "1.5", "0.1", "-2.5e-30"]).map(raw_float),
                wrong_type(),
            ),
        ),
        "BigInt": mostly(
            st.integers(min_value=0, max_value=10**24).map(lambda i: string_node(str(i))),
            st.one_of(
                st.integers(min_value=-(2**300), max_value=2**300).map(lambda i: string_node(str(i))),
                st.integers(min_value=-(2**300), max_value=2**300).map(raw_int),
                st.sampled_from(["0x10", "1e5", "", " 1", "1.0", "-0", "9" * 5000]).map(string_node),
                wrong_type(),
            ),
        ),
        "DateTime": mostly(
            st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)).map(
                lambda d: string_node(d.isoformat())
            ),
            st.one_of(DATETIME_TEXT.map(string_node), INTS.map(raw_int), wrong_type()),
        ),
        "Date": mostly(
            st.dates(min_value=date(2020, 1, 1), max_value=date(2030, 1, 1)).map(lambda d: string_node(str(d))),
            st.one_of(DATE_TEXT.map(string_node), INTS.map(raw_int), wrong_type()),
        ),
        "JSON": json_values() if hostile else st.just(graphql.ObjectValueNode(fields=())),
        # JSON requests cannot carry a file: what arrives in place of one must be refused with a code (the runner
        # also sends real multipart uploads when it hoists arguments into variables)
        "Upload": st.one_of(TEXT.map(string_node), INTS.map(raw_int), wrong_type()),
    }
