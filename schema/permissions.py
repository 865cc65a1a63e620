"""Field authorization. Every protected field declares its rule here-in, so the schema shows who may call what:

    @strawberry.field(extensions=authenticated())        any signed-in caller (API keys: queries only)
    @strawberry.mutation(extensions=requires(Role.ADMIN)) one of the roles

API keys are read-only: any mutation called with one is FORBIDDEN.
"""

from __future__ import annotations

from typing import Any

from graphql import OperationType
from strawberry.extensions.field_extension import FieldExtension
from strawberry.permission import BasePermission, PermissionExtension
from strawberry.types import Info

from core.errors import Forbidden
from models.identity import Role


def _check_read_only(info: Info) -> None:
    if info.context.viewer.read_only and info.operation.operation is not OperationType.QUERY:
        raise Forbidden("API keys are read-only")


class IsAuthenticated(BasePermission):
    def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        info.context.viewer.require_user()
        _check_read_only(info)
        return True


class HasRole(BasePermission):
    def __init__(self, *roles: Role) -> None:
        self.roles = tuple(r.value for r in roles)

    def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        info.context.viewer.require_role(*self.roles)
        _check_read_only(info)
        return True


def authenticated() -> list[FieldExtension]:
    return [PermissionExtension(permissions=[IsAuthenticated()], use_directives=False)]


def requires(*roles: Role) -> list[FieldExtension]:
    return [PermissionExtension(permissions=[HasRole(*roles)], use_directives=False)]
