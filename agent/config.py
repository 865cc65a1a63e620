"""Executor tuning, read once from the environment (RWA_AGENT_*); defaults fit public chains.

Per-chain overrides: RWA_AGENT_FEE_CAP_WEI_<chainid> (the replacement fee cap) and
RWA_AGENT_MIN_BALANCE_WEI_<chainid> (the gas-balance alert threshold); otherwise the chain spec's values.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from chains.spec import ChainSpec

CRASH_POINTS = ("after_sign", "after_broadcast", "after_cancel_sign", "after_cancel_broadcast")


@dataclass(frozen=True)
class AgentConfig:
    poll_s: float = 0.2  # pause between iterations when there is nothing to do
    replace_after_s: float = 30.0  # a tx not mined for this long is re-broadcast (dropped) or fee-bumped (stuck)
    fee_bump_pct: int = 25  # replacement bump; nodes require >= 10-12.5% on both fee fields
    gas_margin_pct: int = 25  # estimated gas x (1 + margin)
    max_in_flight: int = 256  # signed-but-unmined txs per sender (consecutive nonces), REPLACED ones included
    batch: int = 200  # ops signed and broadcast per iteration
    batch_max: int = 100  # members per batch operation (agent/batches.py); 1 sends every operation alone
    error_backoff_s: float = 1.0
    lock_retry_s: float = 1.0
    failed_backoff_s: float = 5.0  # an op whose estimate failed for a non-revert reason waits this long
    rpc_timeout_s: float = 20.0
    fee_cap_wei: Mapping[int, int] = field(default_factory=dict)
    min_balance_wei: Mapping[int, int] = field(default_factory=dict)
    # test hook (refused in production): SIGKILL this process at a point of the send path
    crash_at: str | None = None

    @classmethod
    def from_settings(cls, settings: Any) -> AgentConfig:
        """The tuning the settings object read (RWA_AGENT_*; core/settings.py)."""
        crash = settings.agent_test_crash_at
        if crash is not None and crash not in CRASH_POINTS:
            raise ValueError(f"RWA_AGENT_TEST_CRASH_AT must be one of {', '.join(CRASH_POINTS)}")
        if crash is not None and settings.is_production:
            raise ValueError("RWA_AGENT_TEST_CRASH_AT is a test hook; refused when RWA_ENV=production")
        return cls(
            poll_s=settings.agent_poll_s,
            replace_after_s=settings.agent_replace_after_s,
            fee_bump_pct=settings.agent_fee_bump_pct,
            gas_margin_pct=settings.agent_gas_margin_pct,
            max_in_flight=settings.agent_max_in_flight,
            batch=settings.agent_batch,
            batch_max=settings.agent_batch_max,
            fee_cap_wei=settings.chain_ints("RWA_AGENT_FEE_CAP_WEI_"),
            min_balance_wei=settings.chain_ints("RWA_AGENT_MIN_BALANCE_WEI_"),
            crash_at=crash,
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> AgentConfig:
        """From the settings object; with an explicit mapping (tests, tools), parsed from it."""
        if environ is None:
            from core.settings import get_settings

            return cls.from_settings(get_settings())
        crash = environ.get("RWA_AGENT_TEST_CRASH_AT", "").strip() or None
        if crash is not None and crash not in CRASH_POINTS:
            raise ValueError(f"RWA_AGENT_TEST_CRASH_AT must be one of {', '.join(CRASH_POINTS)}")
        if crash is not None and environ.get("RWA_ENV", "").strip().lower() == "production":
            raise ValueError("RWA_AGENT_TEST_CRASH_AT is a test hook; refused when RWA_ENV=production")
        return cls(
            poll_s=_number(environ, "RWA_AGENT_POLL_S", 0.2, float),
            replace_after_s=_number(environ, "RWA_AGENT_REPLACE_AFTER_S", 30.0, float),
            fee_bump_pct=_number(environ, "RWA_AGENT_FEE_BUMP_PCT", 25, int, minimum=13),
            gas_margin_pct=_number(environ, "RWA_AGENT_GAS_MARGIN_PCT", 25, int, minimum=0),
            max_in_flight=_number(environ, "RWA_AGENT_MAX_IN_FLIGHT", 256, int, minimum=1),
            batch=_number(environ, "RWA_AGENT_BATCH", 200, int, minimum=1),
            batch_max=_number(environ, "RWA_AGENT_BATCH_MAX", 100, int, minimum=1),
            fee_cap_wei=_per_chain(environ, "RWA_AGENT_FEE_CAP_WEI_"),
            min_balance_wei=_per_chain(environ, "RWA_AGENT_MIN_BALANCE_WEI_"),
            crash_at=crash,
        )

    def fee_cap(self, spec: ChainSpec) -> int:
        return self.fee_cap_wei.get(spec.chain_id, spec.max_fee_cap_wei)

    def min_balance(self, spec: ChainSpec) -> int:
        return self.min_balance_wei.get(spec.chain_id, spec.min_signer_balance_wei)


def _per_chain(environ: Mapping[str, str], prefix: str) -> dict[int, int]:
    return {
        int(k.removeprefix(prefix)): _number(environ, k, 0, int, minimum=0)
        for k, v in environ.items()
        if k.startswith(prefix) and k.removeprefix(prefix).isdigit() and v.strip()
    }


def _number(
    environ: Mapping[str, str], name: str, default: Any, kind: Callable[[str], Any], minimum: float = 1e-9
) -> Any:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        value = None
    if value is None or not value >= minimum:  # also refuses nan
        raise ValueError(f"{name} must be a number >= {minimum:g}, got {raw!r}")
    return value
