"""Gas balance watch: below the chain's threshold the signer sends nothing new (operations wait in PENDING, nothing
is lost), a metric is set and an error is logged (once a minute while it lasts); topped up, sending resumes."""

from __future__ import annotations

import logging

from agent import metrics
from agent.context import ChainView, SenderContext, log


def watch(ctx: SenderContext, view: ChainView) -> bool:
    """Update the metrics; True while the balance is too low to send."""
    c, a = str(ctx.chain_id), ctx.address
    # a deposit address sends once, topped up by the treasury with what its sweep needs (resolvers/payments/
    # sweeps.py): the signer-wide alert threshold would hold its sweep for ever
    threshold = 0 if all(r.startswith("deposit:") for r in ctx.roles) else ctx.config.min_balance(ctx.spec)
    metrics.GAS_BALANCE.labels(c, a).set(view.balance)
    low = view.balance < threshold
    metrics.GAS_LOW.labels(c, a).set(1 if low else 0)
    if low:
        ctx.warn_once(
            "gaslow",
            "chain %s: signer %s has %s wei, below the %s wei threshold: operations wait until it is topped up",
            ctx.chain_id,
            a,
            view.balance,
            threshold,
            level=logging.ERROR,
        )
    elif ctx.gas_low:
        ctx.warned.pop("gaslow", None)
        log.info("chain %s: signer %s topped up (%s wei); sending resumes", ctx.chain_id, a, view.balance)
    ctx.gas_low = low
    return low
