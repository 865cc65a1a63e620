"""What one sender's steps share: its chain, RPC client, signer, roles, locked DB connection, tuning, and the chain
state read at the start of the iteration (`ChainView`, one batched RPC round trip)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from agent.config import AgentConfig
from agent.fees import Fees, initial_fees
from chains.rpc import RpcClient
from chains.spec import ChainSpec

if TYPE_CHECKING:  # eth-account (~1 s, ~20 MB) stays out of the API, which imports the operations API only
    from agent.signers import Signer

log = logging.getLogger("rwa.agent")


@dataclass
class ChainView:
    mined_nonce: int  # eth_getTransactionCount(latest)
    pending_nonce: int  # eth_getTransactionCount(pending)
    balance: int
    head: int
    base_fee: int | None
    fees: Fees
    finalized: int | None  # the indexer's finalized block (indexer_cursors), None before it ran


@dataclass
class SenderContext:
    spec: ChainSpec
    client: RpcClient
    signer: Signer
    roles: tuple[str, ...]
    conn: AsyncConnection
    config: AgentConfig
    gas_low: bool = False
    refused: int = 0  # SIGNED ops the node refused for funds at the last resend (rwa_agent_refused_operations)
    refused_balance: int | None = None  # the sender's balance when they were refused (a change: send again)
    refused_at: float = 0.0  # monotonic time of that refusal
    refused_cancels: int = 0  # cancel txs (agent/cancels.py) the node refused for funds at the last try
    cancel_refused_balance: int | None = None
    cancel_refused_at: float = 0.0
    canceling: bool = True  # an operator's cancel (REPLACED) may wait: agent/cancels.py runs (True: check at start)
    canceling_ops: int = 0  # REPLACED ops of this sender seen by the last resend read (rwa_agent_canceling_operations)
    last_gas_log: float = 0.0
    warned: dict[str, float] = field(default_factory=dict)

    @property
    def chain_id(self) -> int:
        return self.spec.chain_id

    @property
    def address(self) -> str:
        return self.signer.address

    @property
    def cap(self) -> int:
        return self.config.fee_cap(self.spec)

    def session(self) -> AsyncSession:
        return AsyncSession(bind=self.conn, expire_on_commit=False, autoflush=False)

    def warn_once(
        self,
        key: str,
        msg: str,
        *args: Any,
        every_s: float = 60.0,
        level: int = logging.WARNING,
        exc_info: BaseException | None = None,
    ) -> None:
        """Log at most once per `every_s` per key: a condition that persists must not flood the log."""
        now = time.monotonic()
        if now - self.warned.get(key, -1e9) >= every_s:
            self.warned[key] = now
            log.log(level, msg, *args, exc_info=exc_info)

    async def read_chain(self) -> ChainView:
        calls: list[tuple[str, list[Any]]] = [
            ("eth_getTransactionCount", [self.address, "latest"]),
            ("eth_getTransactionCount", [self.address, "pending"]),
            ("eth_getBalance", [self.address, "latest"]),
            ("eth_getBlockByNumber", ["latest", False]),
            ("eth_gasPrice", []),
            ("eth_maxPriorityFeePerGas", []),  # optional: some nodes lack it, the spec's tip then suffices
        ]
        mined, pending, balance, block, gas_price, node_tip = await self.client.batch(calls, return_exceptions=True)
        for value in (mined, pending, balance, block, gas_price):
            if isinstance(value, Exception):
                raise value
        base_fee = int(block["baseFeePerGas"], 16) if block and block.get("baseFeePerGas") else None
        tip = None if isinstance(node_tip, Exception) or not node_tip else int(node_tip, 16)
        finalized = await self.conn.scalar(
            text("SELECT finalized_block FROM indexer_cursors WHERE chain_id = :c"), {"c": self.chain_id}
        )
        await self.conn.commit()
        return ChainView(
            mined_nonce=int(mined, 16),
            pending_nonce=int(pending, 16),
            balance=int(balance, 16),
            head=int(block["number"], 16),
            base_fee=base_fee,
            fees=initial_fees(self.spec, self.cap, base_fee, tip, int(gas_price, 16)),
            finalized=None if finalized is None else int(finalized),
        )
