"""Input objects built from fields whose conversion is decided once, when the schema is built.

Strawberry turns a GraphQL input value into its input class field by field, resolving each field's type annotation
again on every request (`StrawberryField.resolve_type`) and walking the type to find how to convert it: ~11% of the
server's CPU for a `placeOrder` (cProfile of bench.trading_place_order_profile --http). Here every input type gets a
`from_input` hook (Strawberry's documented extension point, strawberry.types.base.StrawberryObjectDefinition)
that does the same work from a plan made once: fields of scalars and enums (nullable or not) are passed on as
graphql-core already parsed them, exactly what Strawberry's `convert_argument` does for leaves; every other field
(lists, nested inputs, GlobalID) is converted by Strawberry itself (`InputContext.convert`).

Input types with a `Maybe` field, generic ones, and those with a hook of their own are left to Strawberry: a hook
turns off Strawberry's validation of nulls sent for `Maybe` fields.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import MISSING
from typing import Any

import strawberry
from strawberry.relay.types import GlobalID
from strawberry.scalars import is_scalar
from strawberry.types.arguments import InputContext
from strawberry.types.base import StrawberryMaybe, StrawberryObjectDefinition, StrawberryOptional, StrawberryType
from strawberry.types.enum import StrawberryEnumDefinition, has_enum_definition
from strawberry.types.lazy_type import LazyType

# (GraphQL name, Python name, the field's resolved type, or None when the value is passed on as it is)
_Plan = tuple[tuple[str, str, Any], ...]


def install(schema: strawberry.Schema) -> int:
    """Give the schema's input types a planned `from_input`; returns how many got one."""
    converter = schema.schema_converter
    registry = converter.scalar_registry
    installed = 0
    for concrete in list(converter.type_map.values()):
        definition = concrete.definition
        if not isinstance(definition, StrawberryObjectDefinition) or not definition.is_input:
            continue
        if getattr(definition.from_input, "__module__", None) == __name__:  # planned by an earlier build
            installed += 1
            continue
        hook = _hook_for(definition, registry, schema.config.name_converter.from_field)
        if hook is not None:
            definition.from_input = hook
            installed += 1
    return installed


def _hook_for(
    definition: StrawberryObjectDefinition, registry: Mapping[object, Any], graphql_name: Callable[[Any], str]
) -> Callable[[type, Mapping[str, Any], InputContext], Any] | None:
    if definition.from_input is not None or definition.is_graphql_generic or definition.concrete_of is not None:
        return None
    plan = []
    for field in definition.fields:
        type_ = field.resolve_type(type_definition=definition)
        if isinstance(type_, StrawberryMaybe):
            return None
        plan.append((graphql_name(field), field.python_name, None if _passes_through(type_, registry) else type_))
    unset_to_none = {
        field.python_name: None
        for field in definition.fields
        if field.default_value is MISSING and field.default_factory is MISSING
    }
    return _builder(tuple(plan), unset_to_none)


def _passes_through(type_: StrawberryType | type, registry: Mapping[object, Any]) -> bool:
    """`convert_argument` returns values of this type unchanged (None and UNSET included)."""
    if isinstance(type_, StrawberryOptional):
        type_ = type_.of_type
        if isinstance(type_, StrawberryOptional | StrawberryMaybe):
            return False
    if isinstance(type_, LazyType) or type_ is GlobalID:
        return False
    return is_scalar(type_, registry) or isinstance(type_, StrawberryEnumDefinition) or has_enum_definition(type_)


def _builder(plan: _Plan, unset_to_none: dict[str, None]) -> Callable[[type, Mapping[str, Any], InputContext], Any]:
    def from_input(cls: type, value: Mapping[str, Any], context: InputContext) -> Any:
        kwargs: dict[str, Any] = dict(unset_to_none)
        for name, python_name, type_ in plan:
            if name in value:
                given = value[name]
                kwargs[python_name] = given if type_ is None else context.convert(given, type_, name)
        return cls(**kwargs)

    return from_input
