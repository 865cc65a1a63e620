"""Field authorization. Every protected field declares its rule here-in, so the schema shows who may call what:

    @strawberry.field(extensions=authenticated())        any signed-in caller (API keys: queries only)
    @strawberry.mutation(extensions=requires(Role.ADMIN)) one of the roles
    @strawberry.field(extensions=public_market_data())   anyone (MARKET_DATA_REQUIRES_LOGIN: signed in);
                                                         anonymous callers rate-limited per client IP

API keys are read-only: any mutation called with one is FORBIDDEN.
"""

from __future__ import annotations

from typing import Any

from graphql import OperationType
from strawberry.extensions.field_extension import FieldExtension
from strawberry.permission import BasePermission, PermissionExtension
from strawberry.types import Info

from core.errors import Forbidden
from core.rate_limit import hit
from models.identity import Role


def _check_read_only(info: Info) -> None:
    if info.context.viewer.read_only and info.operation.operation is not OperationType.QUERY:
        raise Forbidden("API keys are read-only")


class IsAuthenticated(BasePermission):
    def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        info.context.viewer.check_signed_in()
        _check_read_only(info)
        return True


class HasRole(BasePermission):
    def __init__(self, *roles: Role) -> None:
        self.roles = tuple(r.value for r in roles)

    def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        info.context.viewer.check_role(*self.roles)
        _check_read_only(info)
        return True


class PublicMarketData(BasePermission):
    """Public market data (markets, order books, trades, tickers, candles): readable without a login, as exchanges
    publish it, unless MARKET_DATA_REQUIRES_LOGIN. Anonymous callers share PUBLIC_RATE_PER_MINUTE reads per client
    IP (one count per root field and per subscription start); signed-in callers and API keys are not counted
    (API keys, read-only, still cannot subscribe)."""

    async def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        context = info.context
        viewer = context.viewer
        if viewer.authenticated:
            _check_read_only(info)  # API keys: queries only, as everywhere
            return True
        settings = context.services.settings
        if settings.market_data_requires_login:
            viewer.check_signed_in()
        await hit(
            context.services.redis,
            context.services.keys("rl", "public", viewer.client_ip),
            settings.public_rate_per_minute,
            60,
            "market data requests",
        )
        return True


def public_market_data() -> list[FieldExtension]:
    return [PermissionExtension(permissions=[PublicMarketData()], use_directives=False)]


def authenticated() -> list[FieldExtension]:
    return [PermissionExtension(permissions=[IsAuthenticated()], use_directives=False)]


def requires(*roles: Role) -> list[FieldExtension]:
    return [PermissionExtension(permissions=[HasRole(*roles)], use_directives=False)]
