"""The executor loop: one sender per (chain, signer address), each holding its advisory lock while it runs.

    await run_agent(settings)                       # every chain with RPC URLs, until stop is set
    await run_agent(settings, [1], stop=stop)

Per iteration (one batched chain read): gas watch -> send again what is SIGNED -> operators' cancels of signed
ops (agent/cancels.py) -> fold batchable PENDING ops into
batch operations (agent/batches.py) -> sign and send new PENDING ops -> receipts (MINED / dropped / stuck / foreign nonce) -> confirmations from the indexer at finality. Roles that share
an address (the treasury falls back to the agent key in dev) share one sender. Senders for "deposit:<i>" roles start
when such operations appear. An RPC or database failure is logged and the iteration retried after a pause; a signer
that cannot be configured is reported once and its operations wait.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from agent import batches, cancels, confirm, gas, handlers, lock, metrics, receipts, sender
from agent.config import AgentConfig
from agent.context import SenderContext
from agent.errors import SignerError
from agent.signers import Signer, signer_for
from chains.errors import RpcError
from chains.registry import all_chains, get_chain, rpc_urls_for
from chains.rpc import RpcClient
from core.settings import ConfigError, Settings
from models.operations import NONCE_STATES, ChainOperation

log = logging.getLogger("rwa.agent")


async def iterate(ctx: SenderContext) -> int:
    """One pass; returns how much work was done (0: the loop may sleep)."""
    c = str(ctx.chain_id)
    t = time.perf_counter()

    def lap(step: str) -> None:
        nonlocal t
        now = time.perf_counter()
        metrics.STEP_SECONDS.labels(c, step).observe(now - t)
        t = now

    view = await ctx.read_chain()
    lap("read")
    low = gas.watch(ctx, view)
    work = await sender.broadcast_signed(ctx, view)
    lap("resend")
    if ctx.canceling:  # operators' cancels of signed ops: even when gas is low (a cancel costs 21,000 gas)
        work += await cancels.step(ctx, view)
    else:
        ctx.refused_cancels = 0
    metrics.REFUSED.labels(c, ctx.address).set(ctx.refused + ctx.refused_cancels)
    metrics.CANCELING.labels(c, ctx.address).set(ctx.canceling_ops)
    lap("cancel")
    if not low:
        folded = await batches.fold(ctx)
        lap("fold")
        work += folded.members + await sender.sign_new(ctx, view, folded)
        lap("sign")
    work += await receipts.poll(ctx, view)
    lap("receipts")
    work += await confirm.step(ctx, view)
    lap("confirm")
    metrics.NEXT_NONCE.labels(c, ctx.address).set(view.pending_nonce)
    return work


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        pass


@dataclass
class SenderSpec:
    chain_id: int
    signer: Signer
    roles: tuple[str, ...]


async def run_sender(
    engine: AsyncEngine, client: RpcClient, spec: SenderSpec, config: AgentConfig, stop: asyncio.Event
) -> None:
    """Hold the (chain, address) lock and iterate until stop; re-elect after a lost connection."""
    chain = get_chain(spec.chain_id)
    c, a = str(spec.chain_id), spec.signer.address
    while not stop.is_set():
        try:
            async with engine.connect() as conn:
                while not await lock.try_lock(conn, spec.chain_id, a):
                    if stop.is_set():
                        return
                    await _sleep(stop, config.lock_retry_s)
                metrics.IS_SENDER.labels(c, a).set(1)
                log.info("chain %s: sender lock for %s acquired (roles %s)", spec.chain_id, a, ",".join(spec.roles))
                ctx = SenderContext(chain, client, spec.signer, spec.roles, conn, config)
                try:
                    while not stop.is_set():
                        try:
                            work = await iterate(ctx)
                        except (OSError, ConnectionError):
                            raise
                        except Exception as exc:  # noqa: BLE001  (RPC down, node hiccup: retry, never crash-loop)
                            if conn.closed or conn.invalidated:
                                raise
                            metrics.ERRORS.labels(c, type(exc).__name__).inc()
                            ctx.warn_once(
                                f"iter:{type(exc).__name__}",
                                "chain %s: agent iteration failed (%s: %s); retrying",
                                spec.chain_id,
                                type(exc).__name__,
                                exc,
                                every_s=30,
                                exc_info=None if isinstance(exc, RpcError) else exc,
                            )
                            try:
                                await conn.rollback()
                            except Exception:  # noqa: BLE001
                                raise exc from None
                            await _sleep(stop, config.error_backoff_s)
                            continue
                        if not work:
                            await _sleep(stop, config.poll_s)
                finally:
                    metrics.IS_SENDER.labels(c, a).set(0)
                    # counted by the sender only: a standby (or a key rotated out) must not keep showing them
                    metrics.REFUSED.labels(c, a).set(0)
                    metrics.CANCELING.labels(c, a).set(0)
                    # the connection goes back to the pool: it must not keep holding the sender lock there
                    try:
                        await asyncio.shield(lock.unlock(conn, spec.chain_id, a))
                    except BaseException:  # noqa: BLE001  (broken or cancelled: drop the connection, lock with it)
                        await conn.invalidate()
        except Exception as exc:  # noqa: BLE001  (database connection lost: reconnect, re-elect)
            log.warning("chain %s: sender %s lost its database connection (%s); re-electing", spec.chain_id, a, exc)
            await _sleep(stop, config.error_backoff_s)


def _signers(settings: Settings, chain_id: int, roles: list[str], known: dict[str, Signer]) -> list[SenderSpec]:
    """Group roles by address: one sender per (chain, address)."""
    by_addr: dict[str, tuple[Signer, list[str]]] = {}
    for role in roles:
        s = known.get(role)
        if s is None:
            s = signer_for(settings, chain_id, role)
            known[role] = s
        entry = by_addr.setdefault(s.address, (s, []))
        entry[1].append(role)
    return [SenderSpec(chain_id, s, tuple(r)) for s, r in by_addr.values()]


def _orphaned(chain_id: int, active: Sequence[Any], wanted: set[str], before: dict[str, int]) -> dict[str, int]:
    """Senders of nonce-holding ops that no configured signer has (a key rotated out while they were in flight):
    nothing moves them, nor the cancel of a REPLACED one, until that key is configured again. The gauge names them
    (rwa_agent_orphaned_operations, the readiness JSON, `rwa agent status`); logged once when they appear."""
    now: dict[str, int] = {}
    for _role, sender_addr, holding in active:
        if sender_addr is not None and holding and sender_addr not in wanted:
            now[sender_addr] = now.get(sender_addr, 0) + int(holding)
    c = str(chain_id)
    for a in before.keys() - now.keys():
        metrics.ORPHANED.labels(c, a).set(0)
    for a, n in now.items():
        metrics.ORPHANED.labels(c, a).set(n)
        if a not in before:
            log.error(
                "chain %s: %s operation(s) hold nonces of %s, which no configured signer has any more (key "
                "rotated?); they wait until its key is configured again (README: agent, rotating a signer key)",
                chain_id,
                n,
                a,
            )
    return now


async def run_chain(
    settings: Settings, engine: AsyncEngine, chain_id: int, config: AgentConfig, stop: asyncio.Event
) -> None:
    urls = settings.rpc_urls(chain_id) or rpc_urls_for(chain_id)
    known: dict[str, Signer] = {}
    tasks: dict[str, asyncio.Task[None]] = {}  # address -> sender task
    roles_running: dict[str, tuple[str, ...]] = {}
    orphaned: dict[str, int] = {}
    async with RpcClient(urls, chain_id=chain_id, timeout=config.rpc_timeout_s) as client:
        try:
            while not stop.is_set():
                async with engine.connect() as conn:
                    active = (
                        await conn.execute(
                            select(
                                ChainOperation.signer,
                                ChainOperation.sender,
                                func.count().filter(ChainOperation.state.in_(NONCE_STATES)),
                            )
                            .where(ChainOperation.chain_id == chain_id, ChainOperation.state.in_(cancels.ACTIVE_STATES))
                            .group_by(ChainOperation.signer, ChainOperation.sender)
                        )
                    ).all()
                roles = sorted({"agent", "treasury", *(r[0] for r in active)})
                try:
                    specs = _signers(settings, chain_id, roles, known)
                except SignerError as exc:
                    log.error("chain %s: %s; its operations wait", chain_id, exc)
                    specs = []
                    for role in roles:
                        try:
                            specs += _signers(settings, chain_id, [role], known)
                        except SignerError:
                            pass
                wanted = {spec.signer.address for spec in specs}
                orphaned = _orphaned(chain_id, active, wanted, orphaned)
                for a in [a for a in tasks if a not in wanted]:  # e.g. a deposit key whose sweeps are done
                    tasks[a].cancel()
                    await asyncio.gather(tasks.pop(a), return_exceptions=True)
                    roles_running.pop(a, None)
                for spec in specs:
                    a = spec.signer.address
                    if a in tasks and roles_running.get(a) != spec.roles:  # a role joined: restart with it
                        tasks[a].cancel()
                        await asyncio.gather(tasks[a], return_exceptions=True)
                        del tasks[a]
                    if a not in tasks or tasks[a].done():
                        roles_running[a] = spec.roles
                        tasks[a] = asyncio.create_task(
                            run_sender(engine, client, spec, config, stop), name=f"agent-{chain_id}-{a}"
                        )
                await _sleep(stop, 5.0)
        finally:
            if stop.is_set() and tasks:
                # a stop: each sender ends after its current iteration and unlocks; cancelled mid-query, its
                # connection was left in an unknown protocol state and the unlock on it failed at every shutdown
                await asyncio.wait(list(tasks.values()), timeout=config.rpc_timeout_s)
            for t in tasks.values():
                t.cancel()
            await asyncio.gather(*tasks.values(), return_exceptions=True)
            for s in known.values():
                await s.aclose()
            for a in orphaned:  # this process no longer watches the chain: its gauge must not name them forever
                metrics.ORPHANED.labels(str(chain_id), a).set(0)


async def run_agent(
    settings: Settings,
    chain_ids: list[int] | None = None,
    *,
    stop: asyncio.Event | None = None,
    config: AgentConfig | None = None,
) -> None:
    """Run the executor for the given chains (default: every chain with RPC URLs) until `stop` is set."""
    config = config or AgentConfig.from_env()
    stop = stop or asyncio.Event()
    if not settings.database_url:
        raise ConfigError("DATABASE_URL must be set for the agent (or start it through `rwa dev`)")
    ids = chain_ids or [c.chain_id for c in all_chains() if settings.rpc_urls(c.chain_id) or rpc_urls_for(c.chain_id)]
    if not ids:
        raise ConfigError("no chain has RPC URLs (set RPC_URLS_<chainid>)")
    for cid in ids:
        get_chain(cid)
        if not (settings.rpc_urls(cid) or rpc_urls_for(cid)):
            raise ConfigError(f"RPC_URLS_{cid} is not set")
        for role in ("agent", "treasury"):  # refuse a missing / dev key in production before starting
            await signer_for(settings, cid, role).aclose()
    handlers.load_effects()
    engine = create_async_engine(settings.database_url, pool_size=4 * len(ids) + 2, max_overflow=10)
    try:
        await asyncio.gather(*(run_chain(settings, engine, cid, config, stop) for cid in ids))
    finally:
        await engine.dispose()
