"""Completion hooks: what the domain does when an operation of a kind is CONFIRMED or FAILED.

The executor calls the handler IN THE SAME TRANSACTION that moves the operation to CONFIRMED / FAILED, so the
domain effect (trade SETTLED, refund paid, ledger reversed) and the operation's state commit together, exactly once.
Handlers must not commit. They are registered by importing `agent.effects` (owned by the domain side), which the
executor does at start (`load_effects`). The longest registered prefix of an operation's kind wins.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from models.operations import ChainOperation

log = logging.getLogger("rwa.agent.handlers")

OnConfirmed = Callable[[AsyncSession, ChainOperation], Awaitable[None]]
OnFailed = Callable[[AsyncSession, ChainOperation, str], Awaitable[None]]
OnConfirmedMany = Callable[[AsyncSession, list[ChainOperation]], Awaitable[None]]


@dataclass(frozen=True)
class Handler:
    kind_prefix: str
    on_confirmed: OnConfirmed
    on_failed: OnFailed | None = None
    on_confirmed_many: OnConfirmedMany | None = None  # the same as on_confirmed for each, set-based


_registry: dict[str, Handler] = {}


def register(
    kind_prefix: str,
    *,
    on_confirmed: OnConfirmed,
    on_failed: OnFailed | None = None,
    on_confirmed_many: OnConfirmedMany | None = None,
) -> None:
    """Register (or replace, so a module re-import is harmless) the hooks for kinds starting with `kind_prefix`."""
    _registry[kind_prefix] = Handler(kind_prefix, on_confirmed, on_failed, on_confirmed_many)


def unregister(kind_prefix: str) -> None:
    _registry.pop(kind_prefix, None)


def handler_for(kind: str) -> Handler | None:
    best: Handler | None = None
    for prefix, h in _registry.items():
        if kind.startswith(prefix) and (best is None or len(prefix) > len(best.kind_prefix)):
            best = h
    return best


async def run_confirmed(session: AsyncSession, op: ChainOperation) -> None:
    h = handler_for(op.kind)
    if h is not None:
        await h.on_confirmed(session, op)


async def run_confirmed_many(session: AsyncSession, ops: list[ChainOperation]) -> None:
    """run_confirmed for each op, through the kind's set-based hook where it has one (ops grouped by handler)."""
    groups: dict[str, tuple[Handler, list[ChainOperation]]] = {}
    for op in ops:
        h = handler_for(op.kind)
        if h is not None:
            groups.setdefault(h.kind_prefix, (h, []))[1].append(op)
    for h, members in groups.values():
        if h.on_confirmed_many is not None:
            await h.on_confirmed_many(session, members)
        else:
            for op in members:
                await h.on_confirmed(session, op)


async def run_failed(session: AsyncSession, op: ChainOperation, reason: str) -> None:
    h = handler_for(op.kind)
    if h is not None and h.on_failed is not None:
        await h.on_failed(session, op, reason)


def load_effects() -> None:
    """Import `agent.effects` (the domain's handlers) if it exists, and the batch operations' own hooks
    (agent.batches); their modules register on import."""
    importlib.import_module("agent.batches")
    try:
        importlib.import_module("agent.effects")
    except ModuleNotFoundError as exc:
        if exc.name not in ("agent.effects",):
            raise
        log.info("agent.effects not present: operations complete without domain handlers")
