"""Every actor module, imported so `dramatiq jobs.actors` (and `rwa worker`) registers them all."""

from jobs import broker  # noqa: F401  (installs the broker first)
