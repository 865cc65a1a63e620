"""Indexer errors.

IndexerError
├── ReorgDetected      the chain under the cursor changed (handled: walk back, roll back, re-fetch)
├── InconsistentFetch  logs and blocks of one fetch disagree (a reorg raced the fetch): retried after a
│                      backoff, then the stored window is self-checked against the node
├── ReorgTooDeep       a proven hash mismatch whose rollback would remove a block recorded as finalized:
│                      that chain stops, untouched (a null block is never a reorg: BlockUnavailable in
│                      chains.errors, transient)
├── IndexerBusy        another process holds the chain's writer lock (backfill refuses to run)
├── UnknownToken       backfill --token names a token the database does not list
└── NoRpcUrls          no RPC_URLS_<chain_id> configured
"""

from __future__ import annotations


class IndexerError(Exception):
    """Base of the indexer's own errors (RPC errors come from chains.errors)."""


class ReorgDetected(IndexerError):
    def __init__(self, chain_id: int, block: int, detail: str) -> None:
        super().__init__(f"chain {chain_id}: reorg detected at block {block}: {detail}")
        self.chain_id = chain_id
        self.block = block


class InconsistentFetch(IndexerError):
    pass


class ReorgTooDeep(IndexerError):
    def __init__(self, chain_id: int, indexed_block: int, detail: str) -> None:
        super().__init__(
            f"chain {chain_id}: reorg deeper than the finality window below indexed block {indexed_block} "
            f"({detail}); the chain's indexer stopped without touching its data. Investigate the node, then "
            f"roll back manually (or re-index from a finalized block)."
        )
        self.chain_id = chain_id
        self.indexed_block = indexed_block


class IndexerBusy(IndexerError):
    def __init__(self, chain_id: int) -> None:
        super().__init__(f"chain {chain_id}: another indexer process holds the writer lock; stop it first")
        self.chain_id = chain_id


class UnknownToken(IndexerError):
    def __init__(self, chain_id: int, address: str) -> None:
        super().__init__(f"chain {chain_id}: token {address} is not in the tokens table")
        self.chain_id = chain_id
        self.address = address


class NoRpcUrls(IndexerError):
    def __init__(self, chain_id: int) -> None:
        super().__init__(f"chain {chain_id}: no RPC URL configured (set RPC_URLS_{chain_id}, comma-separated)")
        self.chain_id = chain_id
