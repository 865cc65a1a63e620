"""Health of a running `rwa agent run`, for its ops port (core/ops_server.py), read from the agent's gauges on the
ops server's thread:

- liveness: the process's event loop still turns (a heartbeat);
- readiness: the loop turns and no signer this process sends for is below its gas threshold (it would send nothing:
  operations wait, docs/runbooks/agent-out-of-gas.md). Per signer: sender or standby, balance, gas_low, and what
  `rwa agent status` lists as problems without failing readiness: `refused` (signed transactions, or cancels of
  them, the node refuses for gas funds: they hold the sender's nonce) and `canceling` (operators' cancels of signed
  operations not settled yet); `orphaned`: addresses whose operations hold nonces no configured signer can fill
  any more (a rotated key: README, agent section), with how many.
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
    refused = _by_signer("rwa_agent_refused_operations")
    canceling = _by_signer("rwa_agent_canceling_operations")
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
                "refused": int(refused.get(key, 0)) if sending else 0,
                "canceling": int(canceling.get(key, 0)) if sending else 0,
            }
        )
    return ok, rows


def orphaned() -> list[dict[str, Any]]:
    return [
        {
            "chainId": int(chain_id),
            "address": address,
            "operations": int(n),
            "reason": "no configured signer has this address any more (key rotated?): its operations wait",
        }
        for (chain_id, address), n in sorted(_by_signer("rwa_agent_orphaned_operations").items())
        if n > 0
    ]


def readiness(heartbeat: Heartbeat):
    def check() -> tuple[bool, dict[str, Any]]:
        alive, beat = heartbeat.check()
        ok, rows = signers()
        return alive and ok, {**beat, "signers": rows, "orphaned": orphaned()}

    return check
