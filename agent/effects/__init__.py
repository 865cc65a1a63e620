"""The domain's completion handlers, one module per domain; importing this package registers them all
(agent.handlers.load_effects). Each handler runs in the executor's transaction and never commits."""

from agent.effects import compliance, identity, issuance, payouts, settlement  # noqa: F401
