"""Health of a running `rwa agent run`, for its ops port (core/ops_server.py), read from the agent's gauges on the
ops server's thread:

- liveness: the process's event loop still turns (a heartbeat);
- readiness: the loop turns and no signer this process sends for is below its gas threshold (it would send nothing:
  operations wait, docs/runbooks/agent-out-of-gas.md). Per signer: sender or standby, balance, gas_low.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import REGISTRY

from core.ops_server import Heartbeat


def _by_signer(metric: str) -> dict[tuple[str, str], float]:
    out: dict[tuple[str, str], float] = {}
    for family in REGISTRY.collect():
        if family.name == metric:
            for sample in family.samples:
                out[(sample.labels["chain_id"], sample.labels["address"])] = sample.value
    return out


def signers() -> tuple[bool, list[dict[str, Any]]]:
    senders = _by_signer("rwa_agent_sender")
    low = _by_signer("rwa_agent_signer_gas_low")
    balance = _by_signer("rwa_agent_signer_balance_wei")
    rows, ok = [], True
    for key in sorted(set(senders) | set(low)):
        sending = senders.get(key) == 1
        gas_low = sending and low.get(key) == 1
        ok = ok and not gas_low
        rows.append(
            {
                "chainId": int(key[0]),
                "address": key[1],
                "role": "sender" if sending else "standby",
                "balanceWei": None if key not in balance else str(int(balance[key])),
                "gasLow": gas_low,
            }
        )
    return ok, rows


def readiness(heartbeat: Heartbeat):
    def check() -> tuple[bool, dict[str, Any]]:
        alive, beat = heartbeat.check()
        ok, rows = signers()
        return alive and ok, {**beat, "signers": rows}

    return check
