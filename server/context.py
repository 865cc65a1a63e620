"""Per-request GraphQL context: services, the caller, one lazily opened DB session, and DataLoaders."""

from __future__ import annotations

from typing import Any, Callable

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket

from core.logging import request_id_var
from server.services import Services
from server.viewer import Viewer


class Context:
    def __init__(self, services: Services, request: Request | WebSocket, response: Response | WebSocket | None,
                 viewer: Viewer) -> None:
        self.services = services
        self.request = request
        self.response = response
        self.viewer = viewer
        self.request_id = request_id_var.get()
        self._session: AsyncSession | None = None
        # set before execution for query operations (schema.extensions.OperationLifecycle)
        self.read_only = False
        self._loaders: dict[str, Any] = {}
        # set by graphql-transport-ws from the connection_init payload
        self.connection_params: dict[str, Any] | None = None

    @property
    def settings(self):  # type: ignore[no-untyped-def]
        return self.services.settings

    async def session(self) -> AsyncSession:
        """The operation's session: autocommit for queries (no transaction round trips), transactional otherwise."""
        if self._session is None:
            factory = self.services.read_session_factory if self.read_only else self.services.session_factory
            self._session = (factory or self.services.session_factory)()
        return self._session

    async def fetch_one(self, sql: str, *params: Any) -> Any:
        """Hot-path read: one raw SQL statement ($1-style parameters) on the asyncpg read pool (no ORM, no
        statement compilation, autocommit). Falls back to the operation's session when the services have no
        read pool (tests bind everything to one transaction)."""
        pool = self.services.read_pool
        if pool is not None and self._session is None:
            return await pool.fetchrow(sql, *params)
        session = await self.session()
        return (await (await session.connection()).exec_driver_sql(sql, params)).first()

    async def fetch_all(self, sql: str, *params: Any) -> list[Any]:
        """All rows of one raw SQL statement: on the read pool for query operations (like fetch_one); operations
        that write read through their session, so they see their own uncommitted rows."""
        pool = self.services.read_pool
        if pool is not None and self._session is None and self.read_only:
            return await pool.fetch(sql, *params)
        session = await self.session()
        return list((await (await session.connection()).exec_driver_sql(sql, params)).all())

    def loader(self, name: str, factory: Callable[["Context"], Any]) -> Any:
        """One DataLoader per name per request (batching and caching scoped to the request)."""
        loader = self._loaders.get(name)
        if loader is None:
            loader = self._loaders[name] = factory(self)
        return loader

    async def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()
        self._loaders.clear()
