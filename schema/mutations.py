"""How every mutation is declared: one `input:` object, a payload with typed errors, one unit of work.

    @mutation(extensions=requires(Role.ADMIN), description="Open a market for an ACTIVE security token.")
    async def open_market(self, info: Info, token_id: uuid.UUID, tick_size: Decimal, ...) -> Market:
        return Market.of(await markets.open_market(...))

is served as

    openMarket(input: OpenMarketInput!): OpenMarketPayload!
    type OpenMarketPayload { market: Market  errors: [OpenMarketError!]! }
    type OpenMarketError implements UserError { code: UserErrorCode!  field: [String!]  message: String! }

The arguments:
- a parameter named `id` (the entity the mutation acts on) stays a top-level argument;
- a parameter named `input` whose type is already an input object is kept as it is;
- every other parameter becomes a field of a generated `<Name>Input` (same names, types, defaults and
  descriptions); that input is optional when all its fields are.
A mutation without parameters takes none.

The result field is named after the returned type (`Market` -> `market`, `list[Order]` -> `orders`, `bool` -> `ok`)
unless `result=` names it. It is null when the mutation failed.

Expected failures (core.errors: BadUserInput, NotFound, Conflict, InvalidTransition: validation, missing or hidden
targets, state conflicts, domain refusals) come back as `errors`, with `code` the specific reason when the raise
site gave one (`Conflict(..., reason="INSUFFICIENT_BALANCE")`, core.errors.ErrorReason) and `field` the input path
(`["input", "quantity"]`). Authentication, authorization, rate limits and internal errors stay top-level GraphQL
errors with `extensions.code`.

The resolver runs in a `resolvers.unit_of_work.UnitOfWork` on the operation's session: committed at its end,
re-run on a deadlock/serialization failure, publishes queued with `after_commit(info, ...)` sent only after the
commit; an expected failure rolls back what was not committed.
"""

from __future__ import annotations

import inspect
import logging
import typing
import uuid
from collections.abc import Awaitable, Callable
from enum import Enum
from typing import Annotated, Any, get_args, get_origin

import strawberry
from strawberry.types import Info
from strawberry.types.arguments import StrawberryArgument
from strawberry.types.base import get_object_definition

from core import response_versions
from core.errors import AppError, BadUserInput, Conflict, ErrorReason, InvalidTransition, NotFound
from resolvers.unit_of_work import UnitOfWork

log = logging.getLogger("rwa.graphql")

EXPECTED: tuple[type[AppError], ...] = (BadUserInput, NotFound, Conflict)

# a functional Enum built at import from the generic codes plus every domain reason (mypy sees an Enum value)
UserErrorCode = strawberry.enum(  # type: ignore[call-overload]  # the argument is an Enum class
    Enum(
        "UserErrorCode",
        {
            "BAD_USER_INPUT": "BAD_USER_INPUT",
            "NOT_FOUND": "NOT_FOUND",
            "CONFLICT": "CONFLICT",
            **{r.value: r.value for r in ErrorReason},
        },
    ),
    description=(
        "Why a mutation failed, as data: BAD_USER_INPUT (invalid input: see `field`), NOT_FOUND (the target does "
        "not exist or is not visible to you), CONFLICT (its state does not allow it), or a more specific domain "
        "reason (INSUFFICIENT_BALANCE, INVALID_STATE, MARKET_CLOSED, ...)."
    ),
)


@strawberry.interface(description="An expected failure of a mutation, returned in its payload's `errors`.")
class UserError:
    code: UserErrorCode = strawberry.field(description="What went wrong.")  # type: ignore[valid-type]  # functional Enum
    field: list[str] | None = strawberry.field(
        description='The argument path at fault, e.g. ["input", "quantity"]; null when no single input is.'
    )
    message: str = strawberry.field(description="A human-readable explanation (English).")


_REGISTRY: dict[str, str] = {}  # generated type name -> the mutation that owns it (duplicate names fail early)
# generated input type -> "Mutation.<field>": its fields are described like that mutation's arguments
# (schema/descriptions.py: ARG_OVERRIDES "Mutation.openMarket.tickSize", then ARGS by name)
GENERATED_INPUTS: dict[str, str] = {}
# "Mutation field" -> the argument path its NOT_FOUND names when the error itself names none of its arguments
NOT_FOUND_TARGETS: dict[str, list[str] | None] = {}


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def pascal(name: str) -> str:
    c = camel(name)
    return c[:1].upper() + c[1:]


def _result_name(annotation: Any) -> str:
    if get_origin(annotation) is list:
        return _result_name(get_args(annotation)[0]) + "s"
    if annotation is bool:
        return "ok"
    name = getattr(annotation, "__name__", None) or "result"
    if name == "JSON":
        return "data"
    definition = get_object_definition(annotation)
    if definition is not None:
        name = definition.name
    return name[:1].lower() + name[1:]


def _is_input(annotation: Any) -> bool:
    definition = get_object_definition(annotation)
    return bool(definition and definition.is_input)


def _own(type_name: str, mutation: str) -> str:
    owner = _REGISTRY.setdefault(type_name, mutation)
    if owner != mutation:
        raise TypeError(f"{mutation}: the type name {type_name} is already generated for {owner}")
    return type_name


def _field_of(param: inspect.Parameter, annotation: Any) -> tuple[Any, Any]:
    """(annotation, strawberry.field) for a parameter moved into the generated input."""
    description = None
    name = None
    if get_origin(annotation) is Annotated:
        base, *meta = get_args(annotation)
        for m in meta:
            if isinstance(m, StrawberryArgument):
                description = m.description
                name = m.graphql_name
        annotation = base
    kwargs: dict[str, Any] = {"description": description, "name": name}
    if param.default is not inspect.Parameter.empty:
        kwargs["default"] = param.default
    return annotation, strawberry.field(**kwargs)


def _optional(annotation: Any) -> bool:
    return type(None) in get_args(annotation)


def _is_reference(annotation: Any) -> bool:
    """A UUID argument (optional or not): a reference to the thing the mutation acts on."""
    annotation = getattr(annotation, "of_type", annotation)  # a resolved input field's StrawberryOptional
    return annotation is uuid.UUID or (type(None) in get_args(annotation) and uuid.UUID in get_args(annotation))


def error_of(
    exc: AppError,
    error_type: type,
    input_fields: set[str],
    target: list[str] | None = None,
    kept: frozenset[str] = frozenset(),
) -> Any:
    """The payload error for `exc`. `field` is a path to one of the mutation's arguments or null. A NOT_FOUND that
    names none of them (or nothing) is about the mutation's target: its `id`, else its input's one reference."""
    reason = exc.extensions.get("reason")
    if isinstance(exc, InvalidTransition):
        code = "INVALID_STATE"
    elif isinstance(reason, str) and reason in ErrorReason.__members__:
        code = reason
    else:
        if reason is not None:
            log.warning("reason %r is not in core.errors.ErrorReason; reported as %s", reason, exc.code.value)
        code = exc.code.value
    field = exc.extensions.get("field")
    path: list[str] | None = None
    if isinstance(field, str) and field:
        path = ["input", field] if field in input_fields else [field]
    if (
        isinstance(exc, NotFound)
        and target is not None
        and (path is None or (path[0] != "input" and path[0] not in kept))
    ):
        path = target
    return error_type(code=UserErrorCode[code], field=path, message=exc.message)


def unit_of_work(info: Info) -> UnitOfWork:
    """The running mutation's unit of work (to queue after-commit work from a resolver)."""
    uow = getattr(info.context, "unit_of_work", None)
    if uow is None:
        raise RuntimeError("not inside a mutation's unit of work")
    return uow


def after_commit(info: Info, callback: Callable[[], Awaitable[object]]) -> None:
    """Queue `callback` (a publish, a job) to run once the running mutation has committed."""
    unit_of_work(info).after_commit(callback)


def mutation(
    *,
    description: str,
    extensions: list[Any] | None = None,
    result: str | None = None,
    input_description: str | None = None,
) -> Callable[[Callable[..., Awaitable[Any]]], Any]:
    def decorate(fn: Callable[..., Awaitable[Any]]) -> Any:
        module = inspect.getmodule(fn)
        hints = typing.get_type_hints(fn, globalns=vars(module) if module else None, include_extras=True)
        signature = inspect.signature(fn)
        name = pascal(fn.__name__)
        gql_name = camel(fn.__name__)
        returned = hints["return"]

        params = [p for p in signature.parameters.values() if p.name not in ("self", "info")]
        keep: list[inspect.Parameter] = []  # top-level arguments kept as they are
        folded: list[inspect.Parameter] = []  # moved into the generated input
        for p in params:
            if p.name == "id" or (p.name == "input" and _is_input(hints[p.name])):
                keep.append(p)
            else:
                folded.append(p)
        if folded and any(p.name == "input" for p in keep):
            raise TypeError(f"{gql_name}: {[p.name for p in folded]} must be fields of its input type")

        input_type: type | None = None
        input_fields: set[str] = set()
        references: list[str] = []  # the input's UUID fields: what a NOT_FOUND is about when it names nothing
        if any(p.name == "input" for p in keep):
            for f in get_object_definition(hints["input"], strict=True).fields:
                input_fields.add(f.graphql_name or camel(f.name))
                if _is_reference(f.type):
                    references.append(f.graphql_name or camel(f.name))
        if folded:
            annotations: dict[str, Any] = {}
            namespace: dict[str, Any] = {}
            for p in folded:
                annotation, field = _field_of(p, hints[p.name])
                annotations[p.name] = annotation
                namespace[p.name] = field
                input_fields.add(field.graphql_name or camel(p.name))
                if _is_reference(annotation):
                    references.append(field.graphql_name or camel(p.name))
            namespace["__annotations__"] = annotations
            namespace["__module__"] = fn.__module__
            GENERATED_INPUTS[f"{name}Input"] = f"Mutation.{gql_name}"
            input_type = strawberry.input(
                type(_own(f"{name}Input", gql_name), (), namespace),
                description=input_description or f"The arguments of `{gql_name}`.",
            )
        kept_names = frozenset(p.name for p in keep)
        target = ["id"] if "id" in kept_names else (["input", references[0]] if len(references) == 1 else None)
        NOT_FOUND_TARGETS[gql_name] = target
        all_optional = all(p.default is not inspect.Parameter.empty or _optional(hints[p.name]) for p in folded)

        error_type = strawberry.type(
            type(_own(f"{name}Error", gql_name), (UserError,), {"__module__": fn.__module__}),
            description=f"An expected failure of `{gql_name}`.",
        )
        result_field = result or _result_name(returned)
        payload_annotations = {result_field: returned | None, "errors": list[error_type]}  # type: ignore[valid-type]  # a class built here
        payload_type = strawberry.type(
            type(
                _own(f"{name}Payload", gql_name),
                (),
                {
                    "__annotations__": payload_annotations,
                    "__module__": fn.__module__,
                    result_field: strawberry.field(
                        default=None, description="The result; null when `errors` is not empty."
                    ),
                    "errors": strawberry.field(
                        default_factory=list, description="The expected failures; empty on success."
                    ),
                },
            ),
            description=f"The result of `{gql_name}`, or why it failed.",
        )

        async def run(self: Any, info: Info, **kwargs: Any) -> Any:
            if input_type is not None:
                given = kwargs.pop("input", None)
                for p in folded:
                    value = getattr(given, p.name) if given is not None else p.default
                    kwargs[p.name] = None if value is inspect.Parameter.empty else value
            session = await info.context.session()
            uow = UnitOfWork(session)
            info.context.unit_of_work = uow
            try:
                value = await uow.run(lambda: fn(self, info, **kwargs))
            except EXPECTED as exc:
                await uow.abort()
                return payload_type(
                    **{result_field: None, "errors": [error_of(exc, error_type, input_fields, target, kept_names)]}
                )
            except BaseException:
                await uow.abort()
                raise
            finally:
                info.context.unit_of_work = None
            services = info.context.services
            # cached reads this may change are stale from now on (server/response_cache.py), before we answer
            await response_versions.bump(services.redis, services.keys, response_versions.tags_changed_by(gql_name))
            return payload_type(**{result_field: value, "errors": []})

        parameters = [
            inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD),
            inspect.Parameter("info", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Info),
        ]
        annotations = {"info": Info, "return": payload_type}
        for p in keep:
            parameters.append(p.replace(kind=inspect.Parameter.KEYWORD_ONLY, annotation=hints[p.name]))
            annotations[p.name] = hints[p.name]
        if input_type is not None:
            input_annotation = input_type | None if all_optional else input_type
            default = None if all_optional else inspect.Parameter.empty
            parameters.append(
                inspect.Parameter("input", inspect.Parameter.KEYWORD_ONLY, annotation=input_annotation, default=default)
            )
            annotations["input"] = input_annotation
        run.__name__ = fn.__name__
        run.__qualname__ = fn.__qualname__
        run.__module__ = fn.__module__
        run.__doc__ = fn.__doc__
        run.__signature__ = inspect.Signature(parameters, return_annotation=payload_type)  # type: ignore[attr-defined]  # read by inspect.signature (Strawberry)
        run.__annotations__ = annotations
        return strawberry.mutation(run, description=description, extensions=extensions)

    return decorate
