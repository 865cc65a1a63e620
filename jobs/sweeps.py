"""Deposit sweeps (resolvers/payments/sweeps.py), run periodically by the worker: one pass per chain reads each
candidate address's gas balance and the chain's gas price from the node and queues top-ups and sweeps."""

from __future__ import annotations

import logging

import dramatiq

from jobs import broker  # noqa: F401  (installs the broker first)
from jobs.context import job_context
from jobs.scheduler import release

log = logging.getLogger("rwa.jobs.sweeps")


@dramatiq.actor(queue_name="payments", max_retries=3, min_backoff=1_000, max_backoff=30_000)
async def sweep_deposits(chain_id: int) -> None:
    from agent.errors import SignerError
    from agent.signers import signer_for
    from chains.registry import rpc_urls_for
    from chains.rpc import RpcClient
    from resolvers.payments.sweeps import sweep_pass

    ctx = job_context()
    try:
        urls = ctx.settings.rpc_urls(chain_id) or rpc_urls_for(chain_id)
        if not urls:
            return
        try:
            treasury = signer_for(ctx.settings, chain_id, "treasury")
        except SignerError as exc:  # not configured (production without TREASURY_*): nothing to sweep to
            log.warning("chain %s: no sweeps: %s", chain_id, exc)
            return
        try:
            async with RpcClient(urls, chain_id=chain_id) as rpc:

                async def balance(_: int, address: str) -> int:
                    return int(await rpc.call("eth_getBalance", [address, "latest"]), 16)

                async def price(_: int) -> int:
                    return int(await rpc.call("eth_gasPrice", []), 16)

                async with ctx.session_factory() as session:
                    queued = await sweep_pass(
                        session,
                        ctx.settings.sweep_min_amount,
                        lambda _: treasury.address,
                        balance,
                        price,
                        chain_id=chain_id,
                    )
                    await session.commit()
        finally:
            await treasury.aclose()
        if any(queued.values()):
            log.info("chain %s: queued %s", chain_id, queued)
    finally:
        release("sweep_deposits", chain_id)
