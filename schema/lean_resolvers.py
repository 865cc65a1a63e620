"""Lean resolvers: strawberry's resolvers replaced, field by field, by shorter ones doing the same steps.

A plain object field (Strawberry "basic": no resolver, no field extensions) resolves with one `getattr` instead of
three Strawberry wrapper calls. A field declared with `metadata={PREFETCHED: "_attr"}` (and no field extensions)
returns `source._attr` directly unless it holds NOT_LOADED, in which case its own resolver runs as usual: a list
resolver can fill a whole page at once and skip one resolver call per row. An async field without arguments whose
one extension is a PermissionExtension with synchronous checks (`me`) runs in one coroutine (_permission_resolver).
Installed by schema.fast_executor.executor_for.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from graphql import GraphQLObjectType, GraphQLSchema
from strawberry.exceptions import PermissionReturnedNonBooleanError
from strawberry.extensions.field_extension import FieldExtension
from strawberry.permission import PermissionExtension

BACKREF = "strawberry-definition"  # where graphql-core's field keeps Strawberry's definition of it
PREFETCHED = "rwa-prefetched"
NOT_LOADED: Any = type("NotLoaded", (), {"__repr__": lambda self: "NOT_LOADED", "__slots__": ()})()


ALLOWED: Any = type("Allowed", (), {"__repr__": lambda self: "ALLOWED", "__slots__": ()})()


async def check_permissions(checks: tuple[tuple[Any, Any], ...], source: Any, info: Any, kwargs: dict[str, Any]) -> Any:
    """Strawberry's PermissionExtension steps for (extension, permission) pairs in the order given:
    `has_permission(source, info, **kwargs)`, awaited when it returns an awaitable, a non-boolean refused with
    PermissionReturnedNonBooleanError; ALLOWED when every check passes, else what the refusing extension's
    `_on_unauthorized` gives (it raises, or answers null for a field that fails silently)."""
    for extension, permission in checks:
        allowed = permission.has_permission(source, info, **kwargs)
        if allowed is True:  # the common answer, without inspect.isawaitable (slow)
            continue
        if inspect.isawaitable(allowed):
            allowed = await allowed
        if not isinstance(allowed, bool):
            if inspect.iscoroutine(allowed):
                allowed.close()
            raise PermissionReturnedNonBooleanError(permission, allowed)
        if not allowed:
            return extension._on_unauthorized(permission)
    return ALLOWED


def _attribute_resolver(attr: str) -> Callable[..., Any]:
    def resolve(source: Any, info: Any, **_: Any) -> Any:
        return getattr(source, attr)

    resolve._is_default = True  # type: ignore[attr-defined]  # as strawberry marks its own default resolvers
    return resolve


def _prefetched_resolver(attr: str, resolver: Callable[..., Any]) -> Callable[..., Any]:
    def resolve(source: Any, info: Any, **kwargs: Any) -> Any:
        value = getattr(source, attr, NOT_LOADED)
        return resolver(source, info, **kwargs) if value is NOT_LOADED else value

    return resolve


def _permission_resolver(definition: Any, info_class: type, extension: Any) -> Callable[..., Any] | None:
    """strawberry's resolver for an async field without arguments whose one extension is a PermissionExtension
    with synchronous checks (`me`, `mfaStatus`), in one coroutine: strawberry's takes five calls and three awaited
    layers (its resolver, await_maybe, argument conversion, the extension chain, the permission's await_maybe)
    around the same steps. The same order: the Info, each permission (its errors, a non-boolean refused, a refusal
    through the extension's _on_unauthorized), then the resolver with self and info as strawberry passes them.
    None for any other field."""
    resolver = definition.base_resolver
    if (
        resolver is None
        or definition.is_subscription
        or not definition.is_async
        or definition.arguments
        or resolver.parent_parameter is not None
        or resolver.root_parameter is not None
        or len(definition.extensions) != 1
        or type(extension) is not PermissionExtension
        or not extension.permissions
        or any(inspect.iscoroutinefunction(p.has_permission) for p in extension.permissions)
        or type(extension).map_arguments is not FieldExtension.map_arguments
    ):
        return None
    checks = tuple((extension, permission) for permission in extension.permissions)
    pass_self = resolver.self_parameter is not None
    info_name = resolver.info_parameter.name if resolver.info_parameter is not None else None
    call = resolver.__call__

    async def resolve(source: Any, info: Any, **kwargs: Any) -> Any:
        strawberry_info = info_class(_raw_info=info, _field=definition)
        refused = await check_permissions(checks, source, strawberry_info, {})
        if refused is not ALLOWED:
            return refused
        args = (source,) if pass_self else ()
        result = call(*args, **{info_name: strawberry_info}) if info_name is not None else call(*args)
        if inspect.isasyncgen(result):
            return result
        return await result

    return resolve


def install_lean_resolvers(schema: GraphQLSchema, info_class: type | None = None) -> None:
    for type_ in schema.type_map.values():
        if not isinstance(type_, GraphQLObjectType) or type_.name.startswith("__"):
            continue
        for field in type_.fields.values():
            definition = (field.extensions or {}).get(BACKREF)
            if definition is None or field.resolve is None:
                continue
            if definition.extensions:
                lean = None
                # replaces strawberry's async resolver only (not a subscription's, nor one wrapped otherwise)
                if (
                    info_class
                    and field.subscribe is None
                    and getattr(field.resolve, "__name__", "") == "_async_resolver"
                ):
                    lean = _permission_resolver(definition, info_class, definition.extensions[0])
                if lean is not None:
                    field.resolve = lean
                continue
            prefetched = (definition.metadata or {}).get(PREFETCHED)
            if prefetched:
                field.resolve = _prefetched_resolver(prefetched, field.resolve)
            elif definition.is_basic_field:
                field.resolve = _attribute_resolver(definition.python_name)
