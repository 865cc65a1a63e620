"""Every actor module, imported so `dramatiq jobs.actors` (and `rwa worker`) registers them all, and the
periodic schedule the worker runs (jobs/scheduler.py)."""

from jobs import (  # noqa: F401 (imported for their side effects)
    broker,  # installs the broker first
    candles,
    kyc,
    offerings,
    orders,
    payments,
    privacy,
    reports,
    sweeps,
    trading_risk,
    webhooks,
)
from jobs.scheduler import Scheduler


def build_scheduler() -> Scheduler:
    from chains.registry import all_chains

    s = Scheduler()
    for spec in all_chains():
        s.add("reconcile_chain", 0.5, spec.chain_id)
    s.add("expire_payments", 5.0)
    s.add("dispatch_webhooks", 0.5)
    s.add("expire_orders", 1.0)
    s.add("resume_halted_markets", 1.0)
    s.add("sample_market_makers", trading_risk.SAMPLE_INTERVAL_S)
    s.add("roll_up_candles", 30.0)
    s.add("expire_kyc_approvals", 60.0)
    s.add("purge_past_retention", privacy.INTERVAL_S)
    s.add("close_due_offerings", 5.0)
    s.add("reconcile_identity_registries", 10.0)
    s.add("refresh_platform_kpis", 30.0)  # resolvers/reports/kpis.py: REFRESH_S
    s.add("checkpoint_cap_tables", 60.0)  # resolvers/reports/checkpoints.py: CHECKPOINT_INTERVAL_S
    for spec in all_chains():
        s.add("sweep_deposits", 30.0, spec.chain_id)
    return s


scheduler = build_scheduler()
broker.broker.add_middleware(scheduler)
