"""Building JSON-RPC parameters: block references and eth_getLogs filters (by range or by block hash)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

BlockRef = int | str
BLOCK_TAGS = frozenset({"latest", "safe", "finalized", "earliest", "pending"})


def block_param(block: BlockRef) -> str:
    """An int, a tag or a 0x-quantity, as the JSON-RPC block parameter."""
    if isinstance(block, bool):
        raise TypeError("block must be an int or a tag, not bool")
    if isinstance(block, int):
        if block < 0:
            raise ValueError(f"block number must be >= 0, got {block}")
        return hex(block)
    if block in BLOCK_TAGS:
        return block
    if block.startswith("0x"):
        int(block, 16)  # validates
        return block
    raise ValueError(f"not a block number or tag: {block!r}")


def logs_filter(
    address: str | Sequence[str] | None,
    topics: Sequence[str | Sequence[str] | None] | None,
    from_block: BlockRef,
    to_block: BlockRef,
) -> dict[str, Any]:
    """The eth_getLogs filter object; an empty address list means "any address" and is omitted."""
    flt: dict[str, Any] = {"fromBlock": block_param(from_block), "toBlock": block_param(to_block)}
    if isinstance(address, str):
        flt["address"] = address
    elif address:
        flt["address"] = list(address)
    if topics:
        flt["topics"] = [t if t is None or isinstance(t, str) else list(t) for t in topics]
    return flt


def logs_filter_by_hash(
    address: str | Sequence[str] | None,
    topics: Sequence[str | Sequence[str] | None] | None,
    block_hash: str,
) -> dict[str, Any]:
    """The eth_getLogs filter for exactly one block (EIP-234): no fromBlock/toBlock beside blockHash."""
    flt: dict[str, Any] = {"blockHash": block_hash}
    if isinstance(address, str):
        flt["address"] = address
    elif address:
        flt["address"] = list(address)
    if topics:
        flt["topics"] = [t if t is None or isinstance(t, str) else list(t) for t in topics]
    return flt
