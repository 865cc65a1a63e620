"""Per-request GraphQL context: services, the caller, lazily opened DB sessions, and DataLoaders.

An AsyncSession (one connection) admits one statement at a time, so whatever runs concurrently needs a session of
its own. The database state of an operation (session, DataLoaders, read-only flag) lives in a `DbSlot`:

- an HTTP request runs one operation: the context's default slot (the hot path: no context variable involved);
- a query's root fields are resolved concurrently (graphql-core gathers them): when there are several, the
  executor opens one slot per root field (`root_field_slot`) and every resolver and DataLoader below that root
  field, down to the leaves, uses it; the slot's session is closed as soon as its root field is complete, so a
  request never holds one connection while waiting for another (no pool deadlock under load);
- a websocket runs many operations concurrently over one context: each gets its own slot (`start_operation`).

Which slot is current is carried by a context variable, which asyncio copies into every task an operation
spawns (graphql-core's gathers, DataLoader batches). Mutations resolve their root fields serially in one slot,
so they read their own uncommitted writes.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket

from core.logging import request_id_var
from core.services import Services
from core.settings import Settings
from resolvers.viewer import Viewer

SETTLE_S = 5.0  # how long closing waits for sibling work still running on the session


class DbSlot:
    """The database state of one operation, or of one root field of a query."""

    __slots__ = ("owner", "session", "loaders", "read_only", "children", "closed", "users")

    def __init__(self, owner: Context, read_only: bool = False) -> None:
        self.owner = owner
        self.session: AsyncSession | None = None
        self.loaders: dict[str, Any] = {}
        self.read_only = read_only
        self.children: list[DbSlot] = []
        self.closed = False
        # tasks that took the session: when a non-null child fails, graphql-core's gather raises at once and leaves
        # its siblings running; closing the session under a sibling's statement put a closed connection back in the
        # pool, and the next request on it answered INTERNAL
        self.users: set[asyncio.Task[Any]] = set()

    async def close(self) -> None:
        """Give the connection back (also of root-field slots opened below this one), once the other tasks using
        it have finished; one still running after SETTLE_S gets its connection discarded instead."""
        if self.session is None and not self.users and not self.children:
            # nothing was opened (reads on the read pool, a placeOrder placed by its market's sequencer): the same
            # end without looking up the current task (a getpid() system call in CPython 3.11's asyncio)
            self.closed = True
            self.loaders.clear()
            return
        current = asyncio.current_task()
        others = [t for t in self.users if t is not current and not t.done()]
        self.users.clear()
        discard = False
        if others:
            _, pending = await asyncio.wait(others, timeout=SETTLE_S)
            discard = bool(pending)
        self.closed = True
        children, self.children = self.children, []
        for child in children:
            await child.close()
        if self.session is not None:
            session, self.session = self.session, None
            if discard:
                await session.invalidate()
            elif not _untouched(session):
                await session.close()
        self.loaders.clear()


def _untouched(session: AsyncSession) -> bool:
    """A session that never began a transaction (so holds no connection) and holds no objects: closing it would
    only empty its empty maps, through a greenlet (~60 µs). A placeOrder's session is such one: the market's
    sequencer places the order on a connection of its own (resolvers/trading/orders.py)."""
    sync = session.sync_session
    return sync._transaction is None and not sync._new and not sync._deleted and len(sync.identity_map) == 0


_current_slot: contextvars.ContextVar[DbSlot | None] = contextvars.ContextVar("rwa_db_slot", default=None)


class Context:
    def __init__(
        self, services: Services, request: Request | WebSocket, response: Response | WebSocket | None, viewer: Viewer
    ) -> None:
        self.services = services
        self.request = request
        self.response = response
        self.viewer = viewer
        self.request_id = request_id_var.get()
        self._default = DbSlot(self)
        # True once a slot other than the default was opened: only then is the context variable consulted
        self._scoped = False
        # a websocket's context serves many concurrent operations (see start_operation)
        self.per_operation_slots = isinstance(request, WebSocket)
        # set by graphql-transport-ws from the connection_init payload
        self.connection_params: dict[str, Any] | None = None
        # a socket's revocation watch (server.graphql_view): lives as long as the socket's context
        self.revocation_watch: Any = None

    def __copy__(self) -> Context:
        """A copy (a subscription's snapshot context) has database state of its own."""
        clone = object.__new__(Context)
        clone.__dict__.update(self.__dict__)
        clone._default = DbSlot(clone, self._slot().read_only)
        clone._scoped = False
        return clone

    @property
    def settings(self) -> Settings:
        return self.services.settings

    def _slot(self) -> DbSlot:
        if self._scoped:
            slot = _current_slot.get()
            if slot is not None and slot.owner is self:
                return slot
        return self._default

    @property
    def read_only(self) -> bool:
        """The operation is a query: its sessions are autocommit and raw reads may use the read pool."""
        return self._slot().read_only

    @read_only.setter
    def read_only(self, value: bool) -> None:
        self._slot().read_only = value

    def start_operation(self, read_only: bool) -> None:
        """Called before an operation executes (schema.extensions.OperationLifecycle), in the operation's task.
        On a websocket, the operation gets a slot of its own (closed by `close` at its end)."""
        if self.per_operation_slots:
            slot = DbSlot(self, read_only)
            self._scoped = True
            _current_slot.set(slot)  # the operation's own task: nothing to reset
        else:
            self._slot().read_only = read_only

    def root_field_slot(self) -> DbSlot:
        """A slot for one root field of a query (schema.fast_executor): closed when the root field is complete,
        or with its operation's slot at the latest."""
        parent = self._slot()
        slot = DbSlot(self, parent.read_only)
        parent.children.append(slot)
        self._scoped = True
        return slot

    @staticmethod
    def enter_slot(slot: DbSlot) -> contextvars.Token:
        return _current_slot.set(slot)

    @staticmethod
    def leave_slot(token: contextvars.Token) -> None:
        _current_slot.reset(token)

    @staticmethod
    async def run_in_slot(slot: DbSlot, work: Awaitable[Any]) -> Any:
        """Await `work` (a root field's resolution and completion) with `slot` current, then close the slot."""
        token = _current_slot.set(slot)
        try:
            return await work
        finally:
            _current_slot.reset(token)
            await slot.close()

    async def session(self) -> AsyncSession:
        """The slot's session: autocommit for queries (no transaction round trips), transactional otherwise."""
        slot = self._slot()
        if slot.session is None:
            if slot.closed and slot is not self._default:
                # work left running after its root field ended (a sibling's error settles it in the background)
                raise RuntimeError("the root field's database session is closed")
            factory = self.services.read_session_factory if slot.read_only else self.services.session_factory
            slot.session = (factory or self.services.session_factory)()
        task = asyncio.current_task()
        if task is not None:
            slot.users.add(task)
        return slot.session

    async def fetch_one(self, sql: str, *params: Any) -> Any:
        """Hot-path read: one raw SQL statement ($1-style parameters) on the asyncpg read pool (no ORM, no
        statement compilation, autocommit). Falls back to the slot's session when the services have no
        read pool (tests bind everything to one transaction)."""
        pool = self.services.read_pool
        if pool is not None and self._slot().session is None:
            return await pool.fetchrow(sql, *params)
        session = await self.session()
        return (await (await session.connection()).exec_driver_sql(sql, params)).first()

    async def fetch_all(self, sql: str, *params: Any) -> list[Any]:
        """All rows of one raw SQL statement: on the read pool for query operations (like fetch_one); operations
        that write read through their session, so they see their own uncommitted rows."""
        pool = self.services.read_pool
        slot = self._slot()
        if pool is not None and slot.session is None and slot.read_only:
            return await pool.fetch(sql, *params)
        session = await self.session()
        return list((await (await session.connection()).exec_driver_sql(sql, params)).all())

    def loader(self, name: str, factory: Callable[[Context], Any]) -> Any:
        """One DataLoader per name per slot (batching and caching scoped to the operation, or to one root field
        of a query: a loader's batches run on its slot's session)."""
        loaders = self._slot().loaders
        loader = loaders.get(name)
        if loader is None:
            loader = loaders[name] = factory(self)
        return loader

    async def close(self) -> None:
        """End of the operation: close the current slot (on a websocket the operation's own)."""
        await self._slot().close()
