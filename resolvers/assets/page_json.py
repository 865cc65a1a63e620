"""The asset list's answer rendered as JSON by Postgres, for the selections where that is exactly what the objects'
path gives (schema/assets.py Query.assets falls back to it for anything else).

The list's server CPU went mostly into turning 50 wide rows into Asset/Token/Issuer objects and completing those
field by field. Here each node's JSON text is built in the page's statement (over the same page subquery, with the
same joins and token order as asset_page.RELATIONS), keys in the order the query selects them; Python adds only the
cursors (asset_page._cursor, the same text), the page flags and the connection's keys around them, and the
resolver hands the bytes to the response as an orjson.Fragment (schema/fast_executor.py). The text is concatenated
(`'{"id":"' || ...`), not json_build_object's: no spaces, so the same bytes as orjson's in the usual case, and ~10%
less of Postgres's time (no per-value type dispatch for UUIDs, enums and numbers).

What is accepted (`plan`, decided once per document and @skip/@include variable values):
- the connection's `edges { cursor node }`, `pageInfo { ... }`, `totalCount` and `__typename`, with aliases,
  fragments, inline fragments and @skip/@include, merged as graphql-core's collect_subfields merges them;
- on Asset, Valuation (`latestValuation`), Issuer (`issuer`) and Token (`tokens`): the stored fields listed in
  _FIELDS, each with the GraphQL type it is expected to have (a changed schema declines instead of diverging).
Anything else (a field with a resolver of its own: metadata, valuations, documents, chainName, amountIn...,
@defer, a fragment with variables, a directive other than @skip/@include) declines: None, and the objects' path
answers. Scalars render as their serializers do: UUIDs lowercase hyphenated, DateTime in UTC `+00:00` with
microseconds only when non-zero, Date `YYYY-MM-DD`, Decimal plain without trailing zeros (trim_scale, as
Decimal.normalize then format "f"), BigInt a plain integer, enums their names (the database labels).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from graphql import (
    FieldNode,
    FragmentSpreadNode,
    GraphQLNonNull,
    GraphQLObjectType,
    InlineFragmentNode,
    SelectionSetNode,
    VariableNode,
)
from graphql.execution.collect_fields import FieldDetails, FragmentDetails, collect_subfields
from graphql.execution.values import VariableValues

# a switch for tests that compare this path with the objects' path
ENABLED = True

_NAME = re.compile(r"[_A-Za-z][_0-9A-Za-z]*")


def _quoted(sql: str) -> str:
    """A value whose text needs no JSON escaping (a UUID, an enum label, digits, a formatted time), as a JSON
    string; JSON null for SQL NULL."""
    return f"""COALESCE('"' || {sql} || '"', 'null')"""


def _text(sql: str) -> str:
    """Any text as a JSON string (Postgres escapes it as JSON requires); JSON null for SQL NULL."""
    return f"COALESCE(to_json({sql})::text, 'null')"


def _ts(column: str) -> str:
    """A timestamptz as _serialize_datetime writes it: ISO 8601 in UTC, `+00:00`, microseconds when non-zero."""
    utc = f"({column} AT TIME ZONE 'UTC')"
    return _quoted(
        f"CASE WHEN date_trunc('second', {utc}) = {utc} "
        f"""THEN to_char({utc}, 'YYYY-MM-DD"T"HH24:MI:SS"+00:00"') """
        f"""ELSE to_char({utc}, 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"') END"""
    )


# GraphQL type -> field -> (its type as the schema prints it, SQL giving the JSON text of its value over the type's
# alias, written `{a}`). Only stored columns, rendered as the scalar's serializer renders the value the objects hold.
_FIELDS: dict[str, dict[str, tuple[str, str]]] = {
    "Asset": {
        "id": ("ID!", _quoted("{a}.id::text")),
        "name": ("String!", _text("{a}.name")),
        "type": ("AssetType!", _quoted("{a}.type::text")),
        "status": ("AssetStatus!", _quoted("{a}.status::text")),
        "description": ("String!", _text("{a}.description")),
        "jurisdiction": ("String!", _text("{a}.jurisdiction")),
        "currency": ("String!", _text("{a}.currency")),
        "reviewReason": ("String", _text("{a}.review_reason")),
        "createdAt": ("DateTime!", _ts("{a}.created_at")),
        "updatedAt": ("DateTime!", _ts("{a}.updated_at")),
        "issuerId": ("UUID!", _quoted("{a}.issuer_id::text")),
    },
    "Valuation": {
        "id": ("ID!", _quoted("{a}.id::text")),
        "assetId": ("UUID!", _quoted("{a}.asset_id::text")),
        "amount": ("Decimal!", _quoted("trim_scale({a}.amount)::text")),
        "currency": ("String!", _text("{a}.currency")),
        "method": ("ValuationMethod!", _quoted("{a}.method::text")),
        "asOf": ("Date!", _quoted("to_char({a}.as_of, 'YYYY-MM-DD')")),
        "source": ("String!", _text("{a}.source")),
        "createdAt": ("DateTime!", _ts("{a}.created_at")),
    },
    "Issuer": {
        "id": ("UUID!", _quoted("{a}.id::text")),
        "email": ("String!", _text("{a}.email")),
    },
    "Token": {
        "id": ("ID!", _quoted("{a}.id::text")),
        "assetId": ("UUID", _quoted("{a}.asset_id::text")),
        "chainId": ("Int!", "COALESCE({a}.chain_id::text, 'null')"),
        "address": ("String!", _text("{a}.address")),
        "kind": ("TokenKind!", _quoted("{a}.kind::text")),
        "name": ("String!", _text("{a}.name")),
        "symbol": ("String!", _text("{a}.symbol")),
        "decimals": ("Int!", "COALESCE({a}.decimals::text, 'null')"),
        "totalSupply": ("BigInt!", _quoted("{a}.total_supply::text")),
        "paused": ("Boolean!", "CASE WHEN {a}.paused THEN 'true' WHEN NOT {a}.paused THEN 'false' ELSE 'null' END"),
        "identityRegistry": ("String", _text("{a}.identity_registry")),
    },
}
# Asset field -> (its type, the related type, how it is read): a LEFT JOIN of the page (alias, join SQL), or the
# asset's tokens (a JSON array, oldest first, as TokensByAssetLoader and asset_page.RELATIONS order them)
_JOINS = {
    "issuer": ("Issuer", "Issuer", "u", "LEFT JOIN users u ON u.id = p.issuer_id"),
    "latestValuation": ("Valuation", "Valuation", "v", "LEFT JOIN valuations v ON v.id = p.latest_valuation_id"),
}
_TOKENS = ("[Token!]!", "Token")


# render(records, cursors, has_next, has_previous, count) -> the connection's JSON text (_renderer)
Renderer = Callable[[Sequence[Any], list[str], bool, bool, int | None], str]


class Declined(Exception):
    """The selection is not one this module renders exactly."""


@dataclass(frozen=True, slots=True)
class ConnectionPlan:
    """How to answer one `assets` field: `nodes` (SQL expressions, one per distinct node selection) and `joins`
    for the statement; `render` the connection's JSON text from the page's records and cursors (_renderer)."""

    nodes: tuple[str, ...]
    joins: tuple[str, ...]
    render: Renderer
    wants_count: bool


def _key(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise Declined(name)
    return name


def _unwrap(type_: Any) -> Any:
    return type_.of_type if isinstance(type_, GraphQLNonNull) else type_


class _Planner:
    def __init__(self, info: Any) -> None:
        self.schema = info.schema
        self.operation = info.operation
        variables = info.variable_values  # graphql-core's resolve info: the coerced values (a dict)
        self.variables = variables if isinstance(variables, VariableValues) else VariableValues({}, variables)
        fragments = {}
        for name, definition in info.fragments.items():
            if definition.variable_definitions:
                raise Declined("fragment variables")
            fragments[name] = FragmentDetails(definition, None)
        self.fragments = fragments
        self.joins: list[str] = []

    def fields(self, type_: GraphQLObjectType, details: list[FieldDetails]) -> list[tuple[str, list[FieldDetails]]]:
        collected = collect_subfields(self.schema, self.fragments, self.variables, self.operation, type_, details)
        if collected.new_defer_usages or collected.forbidden_directive_instances:
            raise Declined("defer")
        out = []
        for key, group in collected.grouped_field_set.items():
            for d in group:
                if d.defer_usage is not None or d.fragment_variable_values is not None:
                    raise Declined("defer")
                if any(x.name.value not in ("skip", "include") for x in d.node.directives or ()):
                    raise Declined("directive")
            out.append((_key(key), group))
        return out

    def object_sql(self, type_: GraphQLObjectType, details: list[FieldDetails], alias: str) -> str:
        """SQL giving the JSON text of the selection on `type_` (a stored row under `alias`)."""
        stored = _FIELDS.get(type_.name)
        if stored is None:
            raise Declined(type_.name)
        pairs: list[tuple[str, str]] = []
        for key, group in self.fields(type_, details):
            name = group[0].node.name.value
            if any(d.node.arguments for d in group):
                raise Declined("arguments")
            if name == "__typename":
                pairs.append((key, f"""'"{_key(type_.name)}"'"""))
                continue
            field = type_.fields.get(name)
            if field is None:
                raise Declined(name)
            printed = str(field.type)
            if name in stored:
                expected, expr = stored[name]
                if printed != expected:
                    raise Declined(name)
                pairs.append((key, expr.format(a=alias)))
            elif type_.name == "Asset" and name in _JOINS:
                expected, related, sub, join = _JOINS[name]
                if printed != expected or _unwrap(field.type).name != related:
                    raise Declined(name)
                if join not in self.joins:
                    self.joins.append(join)
                inner = self.object_sql(_unwrap(field.type), group, sub)
                pairs.append((key, f"CASE WHEN {sub}.id IS NULL THEN 'null' ELSE {inner} END"))
            elif type_.name == "Asset" and name == "tokens":
                if printed != _TOKENS[0]:
                    raise Declined(name)
                token_type = self.schema.get_type(_TOKENS[1])
                inner = self.object_sql(token_type, group, "t")
                # ARRAY(SELECT ... ORDER BY): an ordered string_agg sorts through a tuplesort per asset (~30% more
                # of the statement's time on PostgreSQL 15)
                pairs.append(
                    (
                        key,
                        f"('[' || array_to_string(ARRAY(SELECT {inner} FROM tokens t WHERE t.asset_id = {alias}.id "
                        "ORDER BY t.created_at, t.id), ',') || ']')",
                    )
                )
            else:
                raise Declined(name)
        if not pairs:
            return "'{}'"
        # the JSON text by concatenation: keys are GraphQL names (no escaping), values JSON texts (never NULL)
        return (
            "("
            + " || ".join(f"""'{"{" if i == 0 else ","}"{key}":' || {value}""" for i, (key, value) in enumerate(pairs))
            + " || '}')"
        )


_Part = str | int  # literal JSON text, or a slot: 0 the cursor, n > 0 the n-th node JSON column


def _object(parts: list[_Part], members: list[tuple[str, list[_Part]]]) -> None:
    parts.append("{")
    for i, (key, value) in enumerate(members):
        parts.append(("," if i else "") + orjson.dumps(key).decode() + ":")
        parts.extend(value)
    parts.append("}")


def _merge(parts: list[_Part]) -> tuple[_Part, ...]:
    out: list[_Part] = []
    for p in parts:
        if isinstance(p, str) and out and isinstance(out[-1], str):
            out[-1] += p
        else:
            out.append(p)
    return tuple(out)


def _plan(info: Any) -> ConnectionPlan:
    planner = _Planner(info)
    connection = _unwrap(info.return_type)
    if str(info.return_type) != "AssetConnection!":
        raise Declined("type")
    root = [FieldDetails(node, None) for node in info.field_nodes]
    nodes: list[str] = []
    edge_shapes: list[tuple[str, tuple[_Part, ...]]] = []  # per `edges` key: the parts of one edge
    # the connection's members: (key, kind, value) with kind "edges" (index into edge_shapes), "page" (parts with
    # slots: -1 hasNext, -2 hasPrevious, -3 startCursor, -4 endCursor), "count", or "json" (literal text)
    members: list[tuple[str, str, Any]] = []
    wants_count = False
    for key, group in planner.fields(connection, root):
        name = group[0].node.name.value
        if name == "__typename":
            members.append((key, "json", orjson.dumps(connection.name).decode()))
        elif name == "edges" and str(connection.fields["edges"].type) == "[AssetEdge!]!":
            edge_type = connection.fields["edges"].type.of_type.of_type.of_type
            edge: list[tuple[str, list[_Part]]] = []
            for ekey, egroup in planner.fields(edge_type, group):
                ename = egroup[0].node.name.value
                if ename == "__typename":
                    edge.append((ekey, [orjson.dumps(edge_type.name).decode()]))
                elif ename == "cursor" and str(edge_type.fields["cursor"].type) == "String!":
                    edge.append((ekey, ['"', 0, '"']))  # cursors are base64url: no escaping
                elif ename == "node" and str(edge_type.fields["node"].type) == "Asset!":
                    nodes.append(planner.object_sql(edge_type.fields["node"].type.of_type, egroup, "p"))
                    edge.append((ekey, [len(nodes)]))
                else:
                    raise Declined(ename)
            parts: list[_Part] = []
            _object(parts, edge)
            edge_shapes.append((key, _merge(parts)))
            members.append((key, "edges", len(edge_shapes) - 1))
        elif name == "pageInfo" and str(connection.fields["pageInfo"].type) == "PageInfo!":
            page_type = connection.fields["pageInfo"].type.of_type
            slots = {"hasNextPage": -1, "hasPreviousPage": -2, "startCursor": -3, "endCursor": -4}
            types = {"hasNextPage": "Boolean!", "hasPreviousPage": "Boolean!"}
            page: list[tuple[str, list[_Part]]] = []
            for pkey, pgroup in planner.fields(page_type, group):
                pname = pgroup[0].node.name.value
                if pname == "__typename":
                    page.append((pkey, [orjson.dumps(page_type.name).decode()]))
                elif pname in slots and str(page_type.fields[pname].type) == types.get(pname, "String"):
                    page.append((pkey, [slots[pname]]))
                else:
                    raise Declined(pname)
            parts = []
            _object(parts, page)
            members.append((key, "page", _merge(parts)))
        elif name == "totalCount" and str(connection.fields["totalCount"].type) == "Int":
            wants_count = True
            members.append((key, "count", None))
        else:
            raise Declined(name)
        if any(d.node.arguments for d in group):
            raise Declined("arguments")
    return ConnectionPlan(tuple(nodes), tuple(planner.joins), _renderer(members, edge_shapes), wants_count)


def _template(parts: tuple[_Part, ...]) -> tuple[str, tuple[int, ...]]:
    """A %-format string of the parts (literals escaped, a `%s` per slot) and the slots in order."""
    text = "".join(p.replace("%", "%%") if isinstance(p, str) else "%s" for p in parts)
    return text, tuple(p for p in parts if not isinstance(p, str))


def _renderer(members: list[tuple[str, str, Any]], edge_shapes: list[tuple[str, tuple[_Part, ...]]]) -> Renderer:
    """render(records, cursors, has_next, has_previous, count): the connection's JSON text. A record holds the row's
    id, sort key and node JSON texts (slot n >= 1 is record[n + 1]); slot 0 is the row's cursor."""
    keys = [orjson.dumps(key).decode() + ":" for key, _, _ in members]
    edges = [_template(parts) for _, parts in edge_shapes]

    def edge_list(template: str, slots: tuple[int, ...], records: Sequence[Any], cursors: list[str]) -> str:
        if slots == (0, 1):  # `edges { cursor node }`
            items = [template % (c, r[2]) for c, r in zip(cursors, records)]
        else:
            items = [template % tuple(c if i == 0 else r[i + 1] for i in slots) for c, r in zip(cursors, records)]
        return "[" + ",".join(items) + "]"

    def render(
        records: Sequence[Any], cursors: list[str], has_next: bool, has_previous: bool, count: int | None
    ) -> str:
        out = []
        for text_key, (_, kind, value) in zip(keys, members):
            if kind == "edges":
                template, slots = edges[value]
                text = edge_list(template, slots, records, cursors)
            elif kind == "page":
                flags = {
                    -1: "true" if has_next else "false",
                    -2: "true" if has_previous else "false",
                    -3: '"' + cursors[0] + '"' if cursors else "null",
                    -4: '"' + cursors[-1] + '"' if cursors else "null",
                }
                text = "".join(p if isinstance(p, str) else flags[p] for p in value)
            elif kind == "count":
                text = "null" if count is None else str(count)
            else:
                text = value
            out.append(text_key + text)
        return "{" + ",".join(out) + "}"

    return render


# field nodes (held, so their ids stay theirs) -> (variables the directives read, plans per their values)
_PLANS: OrderedDict[tuple[int, ...], tuple[tuple[Any, ...], tuple[str, ...], dict[tuple[Any, ...], Any]]] = (
    OrderedDict()
)
_MAX_DOCUMENTS = 256


def plan(info: Any) -> ConnectionPlan | None:
    """The plan of this `assets` field (graphql-core's info), or None when the objects' path must answer it.
    Cached per field nodes (documents are cached: the same nodes for the same query text) and the values of the
    variables its @skip/@include directives read."""
    nodes = tuple(info.field_nodes)
    ids = tuple(map(id, nodes))
    entry = _PLANS.get(ids)
    if entry is None:
        entry = (nodes, _directive_variables(info), {})
        _PLANS[ids] = entry
        if len(_PLANS) > _MAX_DOCUMENTS:
            _PLANS.popitem(last=False)
    coerced = info.variable_values
    coerced = coerced.coerced if isinstance(coerced, VariableValues) else coerced
    try:
        values = tuple(_hashable(coerced.get(name)) for name in entry[1])
    except TypeError:
        return None
    plans = entry[2]
    if values not in plans:
        try:
            found: ConnectionPlan | None = _plan(info)
        except Declined:
            found = None
        if len(plans) < 64:
            plans[values] = found
        return found
    return plans[values]


def _hashable(value: Any) -> Any:
    hash(value)
    return value


def _directive_variables(info: Any) -> tuple[str, ...]:
    """Names of the variables any directive below the field reads (fragments included)."""
    names: set[str] = set()
    seen: set[str] = set()

    def walk(selection_set: SelectionSetNode | None) -> None:
        if selection_set is None:
            return
        for sel in selection_set.selections:
            for directive in sel.directives or ():
                for argument in directive.arguments or ():
                    if isinstance(argument.value, VariableNode):
                        names.add(argument.value.name.value)
            if isinstance(sel, FieldNode | InlineFragmentNode):
                walk(sel.selection_set)
            elif isinstance(sel, FragmentSpreadNode) and sel.name.value not in seen:
                seen.add(sel.name.value)
                fragment = info.fragments.get(sel.name.value)
                if fragment is not None:
                    walk(fragment.selection_set)

    for node in info.field_nodes:
        walk(node.selection_set)
    return tuple(sorted(names))
