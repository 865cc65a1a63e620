"""Every custom scalar says its wire format in its description (what generated clients and their authors read), and
DateTime is always sent in UTC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from graphql import GraphQLScalarType, build_schema

from schema import production_sdl
from schema.scalars import _serialize_datetime

BUILT_IN = {"String", "Int", "Float", "Boolean", "ID"}


def test_every_custom_scalar_documents_its_wire_format() -> None:
    schema = build_schema(production_sdl())
    custom = {
        name: t for name, t in schema.type_map.items() if isinstance(t, GraphQLScalarType) and name not in BUILT_IN
    }
    assert {"BigInt", "Decimal", "DateTime", "Date", "UUID", "JSON", "Upload"} <= set(custom)
    undocumented = [
        name
        for name, t in custom.items()
        if not t.description or ("Wire format" not in t.description and name not in ("JSON", "Upload"))
    ]
    assert undocumented == []
    assert "plain decimal integer" in custom["BigInt"].description  # type: ignore[operator]
    assert "never an exponent" in custom["Decimal"].description  # type: ignore[operator]
    assert "UTC" in custom["DateTime"].description  # type: ignore[operator]


@pytest.mark.parametrize(
    "value, wire",
    [
        (datetime(2026, 1, 31, 9, 30, tzinfo=UTC), "2026-01-31T09:30:00+00:00"),
        (datetime(2026, 1, 31, 11, 30, tzinfo=timezone(timedelta(hours=2))), "2026-01-31T09:30:00+00:00"),
        (datetime(2026, 1, 31, 9, 30, 0, 250000), "2026-01-31T09:30:00.250000+00:00"),  # naive: stored as UTC
    ],
)
def test_date_times_are_sent_in_utc(value: datetime, wire: str) -> None:
    assert _serialize_datetime(value) == wire
