"""Deposit sweeps (resolvers/payments/sweeps.py), run periodically by the worker: one pass per chain reads each
candidate address's gas balance and the chain's gas price from the node and queues top-ups and sweeps."""

from __future__ import annotations

import logging
from typing import Any

import dramatiq

from jobs import broker  # noqa: F401  (installs the broker first)
from jobs.context import job_context
from jobs.scheduler import release

log = logging.getLogger("rwa.jobs.sweeps")


async def signing_price(rpc: Any, settings: Any, chain_id: int) -> int:
    """Wei per gas the agent will sign the sweep with (agent.fees.initial_fees: 2 x base fee + the chain's tip, or
    the legacy gas price), not eth_gasPrice: on Polygon the spec's 30 gwei tip is ~30x what the node quotes, so the
    top-up paid for a tenth of the sweep, whose broadcast was then refused ("insufficient funds for gas") forever
    (an open sweep blocks another top-up) and the deposit's funds stayed where they were."""
    from agent.config import AgentConfig
    from agent.fees import initial_fees
    from chains.registry import get_chain

    spec = get_chain(chain_id)
    block, gas_price, node_tip = await rpc.batch(
        [("eth_getBlockByNumber", ["latest", False]), ("eth_gasPrice", []), ("eth_maxPriorityFeePerGas", [])],
        return_exceptions=True,
    )
    for value in (block, gas_price):
        if isinstance(value, Exception):
            raise value
    base_fee = int(block["baseFeePerGas"], 16) if block and block.get("baseFeePerGas") else None
    tip = None if isinstance(node_tip, Exception) or not node_tip else int(node_tip, 16)
    cap = AgentConfig.from_settings(settings).fee_cap(spec)
    return initial_fees(spec, cap, base_fee, tip, int(gas_price, 16)).max_cost_per_gas


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
                    return await signing_price(rpc, ctx.settings, chain_id)

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
