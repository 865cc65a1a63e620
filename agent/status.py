"""`rwa agent status`: per chain and signer address, the numbers an operator (and Prometheus) needs.

Healthy means: the node answers, the signer's balance is at or above the chain's threshold, no signed operation is
refused by the node for lack of gas funds (it holds its nonce: every later operation of the sender waits behind it;
fund the sender, or cancel it with cancelOperation) and no operation has been open for longer than `stale_after_s`
(default 15 minutes). `refused` lists those operations with the node's reason; `canceling` the operators' cancels
whose 0-value transaction is not final yet (agent/cancels.py); `orphaned` the operations of these roles that hold a
nonce (SIGNED, BROADCAST, MINED, REPLACED) of an address no configured signer has any more (the role's key was
rotated while they were in flight): nothing advances them, a cancel included, until that key is configured again
(README, agent section).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from agent import metrics
from agent.cancels import ACTIVE_STATES
from agent.config import AgentConfig
from agent.errors import SignerError
from agent.lock import holder_count
from agent.sender import REFUSED_PREFIX
from agent.signers import signer_for
from chains.registry import get_chain, rpc_urls_for
from chains.rpc import RpcClient
from core.settings import Settings
from models.operations import NONCE_STATES, ChainOperation, OperationState


@dataclass
class SignerStatus:
    chain_id: int
    chain: str
    roles: list[str]
    address: str | None
    gas_balance_wei: int | None
    min_balance_wei: int
    next_nonce: int | None
    pending: int
    signed_unsent: int
    oldest_pending_age_s: float | None
    failed: int
    sender_running: bool
    healthy: bool
    problems: list[str]
    refused: list[dict[str, object]] = field(default_factory=list)  # SIGNED, the node refuses them for funds
    canceling: list[dict[str, object]] = field(default_factory=list)  # REPLACED: cancel tx not final yet
    orphaned: list[dict[str, object]] = field(default_factory=list)  # nonce of an address without a signer

    def as_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["gas_balance_wei"] = None if self.gas_balance_wei is None else str(self.gas_balance_wei)
        d["min_balance_wei"] = str(self.min_balance_wei)
        return d


async def collect(
    settings: Settings,
    engine: AsyncEngine,
    chain_ids: list[int],
    config: AgentConfig | None = None,
    stale_after_s: float = 900.0,
) -> list[SignerStatus]:
    config = config or AgentConfig.from_env()
    out: list[SignerStatus] = []
    for cid in chain_ids:
        spec = get_chain(cid)
        by_addr: dict[str | None, list[str]] = {}
        problems: dict[str | None, list[str]] = {}
        async with engine.connect() as conn:
            extra = (
                await conn.scalars(
                    select(ChainOperation.signer)
                    .where(ChainOperation.chain_id == cid, ChainOperation.state.in_(ACTIVE_STATES))
                    .distinct()
                )
            ).all()
        for role in sorted({"agent", "treasury", *extra}):
            try:
                s = signer_for(settings, cid, role)
                addr: str | None = s.address
                await s.aclose()
            except SignerError as exc:
                addr = None
                problems.setdefault(None, []).append(f"{role}: {exc}")
            by_addr.setdefault(addr, []).append(role)
        signed_by = {a for a in by_addr if a is not None}  # addresses a configured signer can still sign for
        urls = settings.rpc_urls(cid) or rpc_urls_for(cid)
        for addr, roles in by_addr.items():
            probs = list(problems.get(addr, []))
            balance = nonce = None
            if addr is not None and urls:
                try:
                    async with RpcClient(urls, chain_id=cid, timeout=5, max_retries=1) as client:
                        bal, n = await client.batch(
                            [("eth_getBalance", [addr, "latest"]), ("eth_getTransactionCount", [addr, "pending"])]
                        )
                        balance, nonce = int(bal, 16), int(n, 16)
                except Exception as exc:  # noqa: BLE001  (status reports, never raises)
                    probs.append(f"node unreachable: {type(exc).__name__}: {exc}")
            elif not urls:
                probs.append(f"RPC_URLS_{cid} is not set")
            async with engine.connect() as conn:
                row = (
                    await conn.execute(
                        select(
                            func.count(),
                            func.min(ChainOperation.created_at),
                            func.count().filter(ChainOperation.state == OperationState.SIGNED),
                        ).where(
                            ChainOperation.chain_id == cid,
                            ChainOperation.signer.in_(roles),
                            ChainOperation.state.in_(ACTIVE_STATES),
                        )
                    )
                ).one()
                failed = await conn.scalar(
                    select(func.count()).where(
                        ChainOperation.chain_id == cid,
                        ChainOperation.signer.in_(roles),
                        ChainOperation.state == OperationState.FAILED,
                    )
                )
                running = addr is not None and await holder_count(conn, cid, addr) > 0
                stuck = (
                    await conn.execute(
                        select(
                            ChainOperation.id,
                            ChainOperation.business_ref,
                            ChainOperation.kind,
                            ChainOperation.state,
                            ChainOperation.nonce,
                            ChainOperation.last_error,
                            ChainOperation.sender,
                        )
                        .where(
                            ChainOperation.chain_id == cid,
                            ChainOperation.signer.in_(roles),
                            (
                                (ChainOperation.state == OperationState.SIGNED)
                                & ChainOperation.last_error.startswith(REFUSED_PREFIX, autoescape=True)
                            )
                            | (ChainOperation.state == OperationState.REPLACED)
                            | (
                                ChainOperation.state.in_(NONCE_STATES)
                                & ChainOperation.sender.is_not(None)
                                & ChainOperation.sender.not_in(signed_by or {""})
                            ),
                        )
                        .order_by(ChainOperation.nonce)
                        .limit(50)
                    )
                ).all()
            # an op of a rotated-out sender is listed once, as orphaned: neither its resend nor its cancel can run
            lost = {r.id for r in stuck if r.sender is not None and r.sender not in signed_by}
            orphaned = [_stuck(r, orphan=True) for r in stuck if r.id in lost]
            refused = [_stuck(r) for r in stuck if r.state is OperationState.SIGNED and r.id not in lost]
            canceling = [_stuck(r) for r in stuck if r.state is OperationState.REPLACED and r.id not in lost]
            if refused:
                first = refused[0]
                probs.append(
                    f"{len(refused)} signed operation(s) refused by the node for gas funds, first {first['businessRef']} "
                    f"(id {first['id']}) at nonce {first['nonce']}: {first['reason']}; every later operation of "
                    f"{addr} waits: fund it or cancel them (cancelOperation)"
                )
            for o in orphaned:
                probs.append(
                    f"{o['state']} operation {o['businessRef']} (id {o['id']}) holds nonce {o['nonce']} of "
                    f"{o['sender']}, which no configured signer has any more: {o['reason']}"
                )
            for pending_cancel in canceling:
                probs.append(
                    f"cancel of {pending_cancel['businessRef']} at nonce {pending_cancel['nonce']} under way: "
                    f"{pending_cancel['reason']}"
                )
            age = None if row[1] is None else (datetime.now(UTC) - row[1]).total_seconds()
            threshold = config.min_balance(spec)
            if balance is not None and balance < threshold:
                probs.append(f"gas balance {balance} wei below {threshold} wei: operations wait")
            if age is not None and age > stale_after_s:
                probs.append(f"oldest open operation is {age:.0f} s old")
            st = SignerStatus(
                cid,
                spec.short_name,
                roles,
                addr,
                balance,
                threshold,
                nonce,
                int(row[0]),
                int(row[2]),
                age,
                int(failed or 0),
                running,
                not probs,
                probs,
                refused,
                canceling,
                orphaned,
            )
            out.append(st)
            if addr is not None:
                c = str(cid)
                metrics.PENDING.labels(c, addr).set(st.pending)
                metrics.OLDEST_PENDING_AGE.labels(c, addr).set(age or 0)
                if balance is not None:
                    metrics.GAS_BALANCE.labels(c, addr).set(balance)
                if nonce is not None:
                    metrics.NEXT_NONCE.labels(c, addr).set(nonce)
    return out


ORPHAN_REASON = (
    "it waits until that key is configured again (as the role's key, or any role's); a REPLACED op's cancel needs it "
    "too (README, agent section: rotating a signer key)"
)


def _stuck(row: Any, *, orphan: bool = False) -> dict[str, object]:
    return {
        "id": str(row.id),
        "businessRef": row.business_ref,
        "kind": row.kind,
        "state": row.state.value,
        "nonce": row.nonce,
        "sender": row.sender,
        "reason": ORPHAN_REASON if orphan else row.last_error,
    }
