"""Cursors are opaque: whatever a client sends as `after`/`before` is either a cursor the API wrote or
BAD_USER_INPUT, never INTERNAL (and never a crash: a 312 kB cursor of nested arrays segfaulted a worker whose
recursion limit eth-account's py_ecc had raised)."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC

import pytest

from resolvers.pagination import MAX_CURSOR_CHARS, decode_cursor, encode_cursor


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def tagged(*items: object) -> str:
    return b64(json.dumps(list(items)).encode())


U = str(uuid.uuid4())
CRAFTED = {
    "nested arrays 312 kB": b64(b"[" * 234_000),
    "nested under the limit": b64(b"[" * 300 + b"]" * 300),
    "nested objects": b64(b'{"a":' * 500 + b"1" + b"}" * 500),
    "not base64 json": "not-a-cursor!!",
    "empty": "",
    "object": b64(b'{"dt": "2020-01-01"}'),
    "unknown tag": tagged(["zz", 1], ["u", U]),
    "tag not a string": tagged([1, 1], ["u", U]),
    "item not a pair": tagged(["v", 1, 2], ["u", U]),
    "huge decimal exponent": tagged(["dec", "1e999999999"], ["u", U]),
    "decimal NaN": tagged(["dec", "NaN"], ["u", U]),
    "decimal infinity": tagged(["dec", "-Infinity"], ["u", U]),
    "decimal of 400 digits": tagged(["dec", "9" * 400], ["u", U]),
    "float value": tagged(["v", 1.5], ["u", U]),
    "huge integer": tagged(["v", 2**70], ["u", U]),
    "5000-digit integer": b64(b'[["v", ' + b"9" * 5000 + b'], ["u", "' + U.encode() + b'"]]'),
    "object value": tagged(["v", {"a": 1}], ["u", U]),
    "list value": tagged(["v", [1]], ["u", U]),
    "NUL in string": tagged(["v", "a\u0000b"], ["u", U]),
    "lone surrogate": b64(b'[["v", "\\ud800"], ["u", "' + U.encode() + b'"]]'),
    "bad datetime": tagged(["dt", "2020-13-45T00:00:00"], ["u", U]),
    "datetime overflowing UTC": tagged(["dt", "0001-01-01T00:00:00+01:00"], ["u", U]),
    "bad uuid": tagged(["dt", "2020-01-01T00:00:00+00:00"], ["u", "nope"]),
    "wrong width": tagged(["dt", "2020-01-01T00:00:00+00:00"]),
    "string for a datetime": tagged(["v", "yesterday"], ["u", U]),
    "int for a uuid": tagged(["dt", "2020-01-01T00:00:00+00:00"], ["v", 7]),
    "NaN constant": b64(b'[["v", NaN], ["u", "' + U.encode() + b'"]]'),
    "too long": "A" * (MAX_CURSOR_CHARS + 1),
    "invalid utf-8": b64(b'[["v", "\xff\xfe"], ["u", "x"]]'),
}

# (query, role): lists over each kind of key (datetime+uuid, date+strings, bigint seq, numeric+string)
LISTS = {
    "assets": ("query($c: String!) { assets(after: $c) { edges { cursor } } }", "INVESTOR"),
    "assets by name": ("query($c: String!) { assets(orderBy: NAME_ASC, after: $c) { edges { cursor } } }", "ISSUER"),
    "assets backwards": ("query($c: String!) { assets(last: 5, before: $c) { edges { cursor } } }", "ADMIN"),
    "fxRates": ("query($c: String!) { fxRates(after: $c) { edges { cursor } } }", "INVESTOR"),
    "myOrders": ("query($c: String!) { myOrders(after: $c) { edges { cursor } } }", "INVESTOR"),
    "auditLog": ("query($c: String!) { auditLog(after: $c) { edges { cursor } } }", "ADMIN"),
    "tokenHoldings": (
        'query($c: String!) { tokenHoldings(chainId: 1, token: "0x0000000000000000000000000000000000000001",'
        " after: $c) { edges { cursor } } }",
        "ADMIN",
    ),
}

# crafted for a (datetime, uuid) key, but a well-formed cursor of these lists' keys
VALID_ELSEWHERE = {("assets by name", "string for a datetime"), ("auditLog", "int for a uuid")}


@pytest.mark.parametrize("target", list(LISTS))
async def test_crafted_cursors_are_bad_user_input(gql, make_user, target: str) -> None:  # type: ignore[no-untyped-def]
    query, role = LISTS[target]
    token = (await make_user(roles=[role])).token if role else None
    for name, cursor in CRAFTED.items():
        result = await gql(query, {"c": cursor}, token=token)
        codes = [e["extensions"]["code"] for e in result.get("errors") or []]
        if name == "empty" or (target, name) in VALID_ELSEWHERE:  # "" means no cursor: the first page
            assert codes == [], (target, name, result)
            continue
        assert codes == ["BAD_USER_INPUT"], (target, name, result)


async def test_cursors_of_one_list_are_refused_by_another(gql, make_user) -> None:  # type: ignore[no-untyped-def]
    user = await make_user(roles=["ADMIN"])
    # a bigint-seq cursor on a (datetime, uuid) list and a (datetime, uuid) cursor on a seq list
    seq = encode_cursor([12])
    result = await gql(LISTS["auditLog"][0], {"c": seq}, token=user.token)
    assert result["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    from datetime import datetime

    stamp = encode_cursor([datetime.now(UTC), uuid.uuid4()])
    result = await gql(LISTS["myOrders"][0], {"c": stamp}, token=user.token)
    assert result["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    # an out-of-range bigint for a seq key
    result = await gql(LISTS["myOrders"][0], {"c": encode_cursor([2**63])}, token=user.token)
    assert result["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


def test_cursors_round_trip() -> None:
    from datetime import date, datetime
    from decimal import Decimal

    values = [
        datetime(2024, 5, 1, 12, tzinfo=UTC),
        date(2024, 5, 1),
        Decimal("12345678901234567890.5"),
        uuid.uuid4(),
        2**62,
        "Tour Eiffel 🗼" * 14,
        None,
        True,
    ]
    assert decode_cursor(encode_cursor(values), len(values)) == values
    # a 200-character name of emoji (the longest asset name) still fits the length cap
    assert decode_cursor(encode_cursor(["🗼" * 200, uuid.UUID(U)]), 2)[0] == "🗼" * 200
