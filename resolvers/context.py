"""What a domain operation may read from its caller's context, as a Protocol: resolvers type their `ctx` with it and
never import the API server. `server.context.Context` (one per GraphQL request or websocket operation) is the
implementation the API passes; anything else with these members (a job's or a test's) serves as well."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from core.services import Services
from core.settings import Settings
from resolvers.viewer import Viewer


class Context(Protocol):
    @property
    def services(self) -> Services: ...

    @property
    def viewer(self) -> Viewer: ...

    @property
    def settings(self) -> Settings: ...

    @property
    def request_id(self) -> str | None: ...

    @property
    def request(self) -> Any:
        """The HTTP request or websocket the operation came on (headers, url); None outside a request."""

    async def session(self) -> AsyncSession:
        """The operation's database session (autocommit for queries, transactional otherwise)."""
        ...

    async def fetch_one(self, sql: str, *params: Any) -> Any:
        """One row of one raw SQL statement ($1-style parameters)."""
        ...

    async def fetch_all(self, sql: str, *params: Any) -> list[Any]:
        """All rows of one raw SQL statement ($1-style parameters)."""
        ...

    def loader(self, name: str, factory: Callable[[Any], Any]) -> Any:
        """One DataLoader per name per operation, made by `factory(ctx)` on first use."""
        ...
