"""A root field's resolver called without Strawberry's wrapper around it (schema.root_field's path): the steps of
Strawberry's `_async_resolver` (schema_converter.from_resolver) for a field whose wrapper does nothing else, in one
coroutine and with the per-field decisions taken once. Strawberry's takes its Info, converts the arguments
(`get_arguments`: convert_arguments, each extension's map_arguments, then self/info), runs the extension chain
(`reduce` of partials: the last extension runs first; a PermissionExtension checks its permissions in order, awaits
each check, refuses a non-boolean, a refusal goes through its `_on_unauthorized`), then awaits the resolver. Here the
same steps in the same order with the same objects: the Info of the schema's info class, arguments converted by
Strawberry's own `convert_argument` (a scalar or enum is passed on as it is, as convert_argument does; an input
object with a `from_input` hook gets it called with the same InputContext), `has_permission(source, info,
**kwargs)` with the converted arguments, the resolver with self and `info` as Strawberry passes them.

`direct_resolver` decides once per field; None (the field keeps its wrapper) for anything else: a sync or
generator resolver, a subscription, a field extension other than PermissionExtension itself, exception handlers
for the field's type, parent/root parameters, an info parameter not named `info`, a custom field or resolver class,
a resolve function that is not Strawberry's (or schema.lean_resolvers' equivalent)."""

from __future__ import annotations

import inspect
import weakref
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import Any

from graphql import GraphQLField, GraphQLSchema
from strawberry.permission import PermissionExtension
from strawberry.relay.types import GlobalID
from strawberry.scalars import is_scalar
from strawberry.types.arguments import InputContext, convert_argument
from strawberry.types.base import StrawberryMaybe, StrawberryOptional, has_object_definition
from strawberry.types.enum import StrawberryEnumDefinition, has_enum_definition
from strawberry.types.field import StrawberryField
from strawberry.types.fields.resolver import StrawberryResolver
from strawberry.types.lazy_type import LazyType
from strawberry.types.unset import UNSET

from schema.lean_resolvers import ALLOWED, check_permissions

BACKREF = "strawberry-definition"  # where graphql-core's field keeps Strawberry's definition of it

DirectResolver = Callable[[Any, Any, dict[str, Any]], Awaitable[Any]]  # (source, graphql-core info, arguments)
Converter = Callable[[Any, Any], Any]  # (graphql-core's argument value, Strawberry's info) -> the Python value

# per field (by id, with a weak reference telling a reused id apart): its direct resolver or None
_DECIDED: dict[int, tuple[weakref.ref[GraphQLField], DirectResolver | None]] = {}


def direct_resolver(schema: GraphQLSchema, field: GraphQLField) -> DirectResolver | None:
    """The field's direct resolver (decided once per field), or None when it keeps Strawberry's wrapper."""
    decided = _DECIDED.get(id(field))
    if decided is not None and decided[0]() is field:
        return decided[1]
    try:
        direct = _build(schema, field)
    except Exception:  # noqa: BLE001 - anything unexpected about the field: it keeps its wrapper
        direct = None
    key = id(field)
    _DECIDED[key] = (weakref.ref(field, partial(_forget, key)), direct)
    return direct


def _forget(key: int, _: Any) -> None:
    decided = _DECIDED.get(key)
    if decided is not None and decided[0]() is None:
        del _DECIDED[key]


def _is_strawberry_resolve(resolve: Any) -> bool:
    module = getattr(resolve, "__module__", None)
    qualname = getattr(resolve, "__qualname__", "")
    return (
        module == "strawberry.schema.schema_converter" and qualname.endswith("from_resolver.<locals>._async_resolver")
    ) or (module == "schema.lean_resolvers" and qualname == "_permission_resolver.<locals>.resolve")


def _build(schema: GraphQLSchema, field: GraphQLField) -> DirectResolver | None:
    strawberry_schema = getattr(schema, "_strawberry_schema", None)
    definition = (field.extensions or {}).get(BACKREF)
    if strawberry_schema is None or type(definition) is not StrawberryField or field.subscribe is not None:
        return None
    resolver = definition.base_resolver
    if (
        resolver is None
        or type(resolver) is not StrawberryResolver
        or definition.is_subscription
        or not definition.is_async
        or not inspect.iscoroutinefunction(resolver._unbound_wrapped_func)
        or not callable(resolver.wrapped_func)
        or resolver.parent_parameter is not None
        or resolver.root_parameter is not None
        or (resolver.info_parameter is not None and resolver.info_parameter.name != "info")
        or not _is_strawberry_resolve(field.resolve)
    ):
        return None
    extensions = [extension for extension in definition.extensions if type(extension) is PermissionExtension]
    if len(extensions) != len(definition.extensions):
        return None
    converter = strawberry_schema.schema_converter
    if converter._get_field_exception_handlers(definition):
        return None
    config = strawberry_schema.config
    registry = converter.scalar_registry
    info_class = config.info_class
    converters = tuple(
        (config.name_converter.from_argument(argument), argument.python_name, _converter(argument, config, registry))
        for argument in definition.arguments
    )
    # the chain's order: the last extension is the outermost, so its permissions are checked first
    checks = tuple(
        (extension, permission) for extension in reversed(extensions) for permission in extension.permissions
    )
    call = resolver.wrapped_func
    pass_self = resolver.self_parameter is not None
    pass_info = resolver.info_parameter is not None

    async def resolve(source: Any, raw_info: Any, args: dict[str, Any]) -> Any:
        info = info_class(_raw_info=raw_info, _field=definition)
        kwargs: dict[str, Any] = {}
        for name, python_name, convert in converters:
            if name in args:
                kwargs[python_name] = convert(args[name], info)
        if checks:
            refused = await check_permissions(checks, source, info, kwargs)
            if refused is not ALLOWED:
                return refused
        if pass_info:
            kwargs["info"] = info
        result = call(source, **kwargs) if pass_self else call(**kwargs)
        if inspect.isasyncgen(result):
            return result
        return await result

    return resolve


def _converter(argument: Any, config: Any, registry: Mapping[object, Any]) -> Converter:
    """Strawberry's convert_argument for one argument, with its type dispatch done once where that is plain."""
    type_ = argument.type
    name = config.name_converter.from_argument(argument)
    path = (name,)
    inner = type_
    if isinstance(type_, StrawberryOptional) and not isinstance(type_, StrawberryMaybe):
        inner = type_.of_type
    if not isinstance(inner, StrawberryOptional | LazyType) and inner is not GlobalID:
        if is_scalar(inner, registry) or isinstance(inner, StrawberryEnumDefinition) or has_enum_definition(inner):

            def leaf(value: Any, info: Any) -> Any:  # convert_argument returns a scalar's or an enum's value as is
                return value

            return leaf
        if has_object_definition(inner) and not is_scalar(inner, registry):
            type_definition = inner.__strawberry_definition__

            def input_object(value: Any, info: Any) -> Any:
                hook = type_definition.from_input
                if value is None or value is UNSET or hook is None:  # as convert_argument; no hook: its walk
                    return convert_argument(value, type_, registry, config, info, path=path)
                return hook(inner, value, InputContext(info=info, config=config, scalar_registry=registry, path=path))

            return input_object

    def generic(value: Any, info: Any) -> Any:
        return convert_argument(value, type_, registry, config, info, path=path)

    return generic
