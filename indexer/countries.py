"""Investor countries of IdentityRegistered logs, without depending on archive state.

IdentityRegistered(investor, identity) does not carry the country: the registry stores it, so it is read
with ``investorCountry(investor)``. Read at the log's own block (EIP-1898 block hash) it is exact, but a
node that keeps only recent state (anvil --prune-history, geth/erigon/reth full nodes, most providers)
refuses blocks older than its state window ("BlockOutOfRangeError ... requested was 7", "missing trie
node"), and an archive read is slow (anvil: 3.4k calls/s at an old block hash vs 10.5k at the head). So
only registrations within RECENT_BLOCKS of the head are read at their own block (falling back as below on
a state-window error); older ones are read at the node's latest block, and trusted only if the investor is
still registered there with the same identity as in the log (then the country is this registration's,
or a later CountryUpdated's, which the identity row takes from that event anyway); else it is unknown. Each reading says
where it came from (``source``: EVENT | LATEST | UNKNOWN), the decoder puts that into the event's args
and the identities row carries it (``country_source``), and a warning names what could not be read, so a
backfill of old history completes instead of stopping.

A transient RPC failure propagates as itself (the caller's retry policy for RPC faults applies); any other
failure (e.g. an unknown block hash after a reorg) raises InconsistentFetch: the caller retries the batch.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from chains.errors import AllEndpointsFailed, RetryableRpcError, RpcError, RpcResponseError
from chains.rpc import RpcClient
from indexer.errors import InconsistentFetch
from indexer.events import BY_NAME, INVESTOR_COUNTRY_SELECTOR, keccak_hex

log = logging.getLogger(__name__)

_REGISTERED_TOPIC0 = BY_NAME["IdentityRegistered"].topic0
_IDENTITY_SELECTOR = "0x" + keccak_hex("identity(address)")[:8]

EVENT, LATEST, UNKNOWN = "EVENT", "LATEST", "UNKNOWN"
CALLS_PER_GROUP = 500
# Registrations at most this far below the head are read at their own block (exact; full nodes keep 128
# blocks of state, anvil keeps its newest states in memory); older ones at the head, with the identity check.
RECENT_BLOCKS = 64

# What nodes answer for state they no longer keep (anvil, geth/erigon/reth/nethermind, hosted providers).
_STATE_WINDOW = re.compile(
    r"block ?out ?of ?range|blockoutofrange|requested was|missing trie node|historical state|"
    r"state (is )?(not available|unavailable|pruned)|state.{0,40}(not available|unavailable|pruned)|"
    r"pruned|not an archive|archive node|distance to target block exceeds",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class CountryReading:
    country: int | None  # None: could not be read (source UNKNOWN)
    source: str  # EVENT: at the log's block; LATEST: at ``block``, the registration still current; UNKNOWN
    block: int | None = None  # the block read when source is LATEST

    def args(self) -> dict[str, Any]:
        """The keys added to the IdentityRegistered args (only ``country`` when read at the event's block,
        so args stay what they always were on an archive node)."""
        if self.source == EVENT:
            return {"country": self.country}
        return {"country": self.country, "countrySource": self.source, "countryBlock": self.block}


def is_state_window_error(err: object) -> bool:
    """True if ``err`` says the node does not keep state that old (not a transient or reorg failure)."""
    if isinstance(err, AllEndpointsFailed):
        err = err.last_error
    if isinstance(err, RpcResponseError):
        text = f"{err.rpc_message} {err.data or ''}"
    elif isinstance(err, RpcError):
        text = err.message
    else:
        return False
    return bool(_STATE_WINDOW.search(text))


async def _batched(client: RpcClient, calls: list[Any], where: str) -> list[Any]:
    """The calls in groups of CALLS_PER_GROUP, one group at a time (a batch's chunks go out concurrently: 5,000
    registrations at once made a busy node time out), failed items in place. A transient failure of a whole
    group propagates as the RPC error it is (the caller's retry policy for RPC faults applies); anything
    else is InconsistentFetch."""
    out: list[Any] = []
    for i in range(0, len(calls), CALLS_PER_GROUP):
        try:
            out += await client.batch(calls[i : i + CALLS_PER_GROUP], return_exceptions=True)
        except (RetryableRpcError, AllEndpointsFailed):
            raise
        except RpcError as err:
            raise InconsistentFetch(f"investorCountry {where} failed: {err}") from err
    return out


def _word_int(result: Any) -> int:
    return int(result, 16) if result not in (None, "0x") else 0


def _word_address(result: Any) -> str:
    return "0x" + result[-40:].lower() if isinstance(result, str) and len(result) >= 42 else "0x" + "0" * 40


async def read_countries(client: RpcClient, logs: Sequence[dict[str, Any]]) -> dict[tuple[str, int], CountryReading]:
    """(block hash, log index) -> CountryReading for each IdentityRegistered log in ``logs``."""
    regs = [lg for lg in logs if lg["topics"] and lg["topics"][0] == _REGISTERED_TOPIC0]
    if not regs:
        return {}
    head = await client.block_number()
    old = [lg for lg in regs if head - int(lg["blockNumber"], 16) > RECENT_BLOCKS]
    out: dict[tuple[str, int], CountryReading] = {}
    if old:  # a backfill of old history: no archive state needed (and 3x faster on anvil)
        regs = [lg for lg in regs if head - int(lg["blockNumber"], 16) <= RECENT_BLOCKS]
        out.update(await _read_at_latest(client, old, head, why="old"))
        if not regs:
            return out
    calls = [
        (
            "eth_call",
            [
                {"to": lg["address"], "data": INVESTOR_COUNTRY_SELECTOR + lg["topics"][1][2:]},
                {"blockHash": lg["blockHash"]},
            ],
        )  # EIP-1898: the state of exactly that block
        for lg in regs
    ]
    results = await _batched(client, calls, "at a fetched block")
    too_old: list[dict[str, Any]] = []
    for lg, r in zip(regs, results):
        if isinstance(r, BaseException):
            if not is_state_window_error(r):
                raise InconsistentFetch(f"investorCountry at a fetched block failed: {r}") from r
            too_old.append(lg)
        else:
            out[(lg["blockHash"], int(lg["logIndex"], 16))] = CountryReading(_word_int(r), EVENT)
    if too_old:
        out.update(await _read_at_latest(client, too_old, head, why="no state"))
    return out


async def _read_at_latest(
    client: RpcClient, regs: Sequence[dict[str, Any]], head: int | None = None, why: str = "no state"
) -> dict[tuple[str, int], CountryReading]:
    """Country and identity at one recent block for registrations whose own block's state is gone or old."""
    try:
        if head is None:
            head = await client.block_number()
        tag = hex(head)
        calls: list[tuple[str, list[Any]]] = []
        for lg in regs:
            investor = lg["topics"][1][2:]
            calls.append(("eth_call", [{"to": lg["address"], "data": INVESTOR_COUNTRY_SELECTOR + investor}, tag]))
            calls.append(("eth_call", [{"to": lg["address"], "data": _IDENTITY_SELECTOR + investor}, tag]))
        results = await _batched(client, calls, "at the latest block")
    except (RetryableRpcError, AllEndpointsFailed):
        raise
    except RpcError as err:
        raise InconsistentFetch(f"investorCountry at the latest block failed: {err}") from err
    failed = [r for r in results if isinstance(r, BaseException)]
    if failed:
        raise InconsistentFetch(f"investorCountry at the latest block failed: {failed[0]}") from failed[0]
    out: dict[tuple[str, int], CountryReading] = {}
    unknown: list[str] = []
    for i, lg in enumerate(regs):
        country, identity = results[2 * i], results[2 * i + 1]
        logged_identity = "0x" + lg["topics"][2][-40:].lower()
        key = (lg["blockHash"], int(lg["logIndex"], 16))
        if _word_address(identity) == logged_identity:
            out[key] = CountryReading(_word_int(country), LATEST, head)
        else:  # removed or re-registered since: today's country is not this registration's
            out[key] = CountryReading(None, UNKNOWN, None)
            unknown.append(f"{'0x' + lg['topics'][1][-40:]}@{int(lg['blockNumber'], 16)}")
    cause = (
        "the node keeps no state at" if why == "no state" else f"more than {RECENT_BLOCKS} blocks below the head are"
    )
    # a registration that is no longer current, or a node without the state, is news; an old block is not
    level = logging.WARNING if unknown or why == "no state" else logging.INFO
    log.log(
        level,
        "identity registry: %s %s registration block(s) (oldest %s); country read at block %s for %s, unknown for %s%s",
        cause,
        len(regs),
        min(int(lg["blockNumber"], 16) for lg in regs),
        head,
        len(regs) - len(unknown),
        len(unknown),
        f" ({', '.join(unknown[:5])})" if unknown else "",
    )
    return out
