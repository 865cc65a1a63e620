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


class OperationContext:
    """A `Context` without a request: what jobs, the CLI and scripts pass to a domain operation. One session (the
    caller owns it and its transaction, e.g. through a `resolvers.unit_of_work.UnitOfWork`), the acting viewer
    (a `Viewer(user_id, roles)` for a staff action run from the CLI, say) and the services.

        async with services.session_factory() as session:
            ctx = OperationContext(services, session, Viewer(admin_id, frozenset({"ADMIN"})))
            market = await UnitOfWork(session).run(lambda: markets.open_market(ctx, spec))
    """

    def __init__(self, services: Services, session: AsyncSession, viewer: Viewer, request_id: str | None = None):
        self.services = services
        self.viewer = viewer
        self.request_id = request_id
        self.request: Any = None
        self._session = session
        self._loaders: dict[str, Any] = {}

    @property
    def settings(self) -> Settings:
        return self.services.settings

    async def session(self) -> AsyncSession:
        return self._session

    async def fetch_one(self, sql: str, *params: Any) -> Any:
        return (await (await self._session.connection()).exec_driver_sql(sql, params)).first()

    async def fetch_all(self, sql: str, *params: Any) -> list[Any]:
        return list((await (await self._session.connection()).exec_driver_sql(sql, params)).all())

    def loader(self, name: str, factory: Callable[[Any], Any]) -> Any:
        loader = self._loaders.get(name)
        if loader is None:
            loader = self._loaders[name] = factory(self)
        return loader
