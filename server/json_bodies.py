"""JSON on the GraphQL view's wire: what a request body or a graphql-transport-ws message may hold (nesting depth,
text a column can store, the message shape), decoded with those checks, and answers encoded with orjson."""

from __future__ import annotations

import json
import math
import re
import sys
from itertools import accumulate

import orjson

MAX_JSON_NESTING = 64
# types json.dumps refuses are refused by orjson too (they then fail in json.dumps, as before)
_ORJSON_STRICT = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_SUBCLASS
# JSON escapes of text no column can store: NUL (Postgres text refuses it) and UTF-16 surrogates (JSON decodes a
# lone one into a str that cannot be encoded as UTF-8). Only bodies containing one are walked (see unstorable_text).
_SUSPECT_ESCAPE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")
_GRAPHQL_NUL_ESCAPE = re.compile(r"\\u(?:0000|\{0+\})")
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_BRACKET_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


def json_nesting_exceeds(data: bytes, limit: int) -> bool:
    """True when the JSON text nests arrays/objects deeper than `limit`. json's C decoder recurses on the C stack,
    and py_ecc (imported by eth-account) raises the recursion limit to 100000, so a body of 100k `[` crashed the
    worker with a segfault instead of raising RecursionError."""
    if data.count(b"[") + data.count(b"{") <= limit:  # cannot nest deeper than it has brackets
        return False
    brackets = _JSON_STRING.sub(b"", data).translate(None, _NOT_BRACKETS)
    return max(accumulate(_BRACKET_STEP[b] for b in brackets), default=0) > limit


def unstorable_text(value: object) -> bool:
    """True when a decoded JSON value holds a string with NUL or a lone surrogate, or a GraphQL document with a
    NUL escape in a literal; each ended as an INTERNAL error where the string reached Postgres or a hash."""
    if isinstance(value, str):
        if "\x00" in value or _GRAPHQL_NUL_ESCAPE.search(value):
            return True
        try:
            value.encode()
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(unstorable_text(k) or unstorable_text(v) for k, v in value.items())
    if isinstance(value, list):
        return any(unstorable_text(v) for v in value)
    return False


# graphql-transport-ws messages that name an operation: its `id` is a string. strawberry took any JSON value, so
# a numeric id ran the operation (frames echoed `"id": 1`) and a complete with one was silently ignored
_WITH_ID = frozenset({"subscribe", "complete"})


def well_formed_ws_message(message: object) -> bool:
    """An object; a subscribe's or complete's id a string; a subscribe's payload an object with a string query and
    optional object variables/extensions."""
    if not isinstance(message, dict):
        return False
    kind = message.get("type")
    if isinstance(kind, str) and kind in _WITH_ID and not isinstance(message.get("id"), str):
        return False
    if kind != "subscribe":
        return True
    payload = message.get("payload")
    return (
        isinstance(payload, dict)
        and isinstance(payload.get("query"), str)
        and isinstance(payload.get("variables") or {}, dict)
        and isinstance(payload.get("extensions") or {}, dict)
        and isinstance(payload.get("operationName") or "", str)
    )


def encode_http_json(data: object) -> bytes:
    """Whatever orjson refuses (integers beyond 64 bits in a JSON scalar, say) goes through json.dumps."""
    try:
        return orjson.dumps(data, option=_ORJSON_STRICT)
    except TypeError:
        return json.dumps(data, separators=(",", ":")).encode()


def _refuse_constant(name: str) -> object:
    raise json.JSONDecodeError(f"{name} is not JSON (RFC 8259 has no NaN or Infinity)", "", 0)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999: json.loads made it inf
        raise json.JSONDecodeError(f"the number {text[:40]} is out of range", "", 0)
    return value


def decode_checked(data: str | bytes) -> object:
    """json.loads, refusing (JSONDecodeError) nesting deeper than MAX_JSON_NESTING, bytes that are not UTF-8 and
    strings no column can store (unstorable_text). Python's json also took NaN, Infinity and -Infinity, and made
    1e999 inf: inside a JSON scalar (asset metadata) they reached Postgres' jsonb and came back INTERNAL."""
    raw = data.encode() if isinstance(data, str) else data
    if json_nesting_exceeds(raw, MAX_JSON_NESTING):
        raise json.JSONDecodeError(f"nested deeper than {MAX_JSON_NESTING} levels", "", 0)
    try:
        decoded = json.loads(raw, parse_constant=_refuse_constant, parse_float=_finite_float)
    except UnicodeDecodeError as exc:
        raise json.JSONDecodeError("not UTF-8", "", exc.start) from exc
    except json.JSONDecodeError:
        raise
    except ValueError as exc:  # an integer of more digits than int() converts (4300): was a 500 / a 1011 close
        raise json.JSONDecodeError(f"a number with more than {sys.get_int_max_str_digits()} digits", "", 0) from exc
    if (_SUSPECT_ESCAPE.search(raw) or b"u{" in raw) and unstorable_text(decoded):
        raise json.JSONDecodeError("strings must not contain NUL characters or unpaired surrogates", "", 0)
    return decoded
