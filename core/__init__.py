"""Process-wide primitives: settings, database, Redis, security, logging, metrics."""

from core.recursion_limit import pin as _pin_recursion_limit

_pin_recursion_limit()  # before anything imports eth-account (core/recursion_limit.py)
