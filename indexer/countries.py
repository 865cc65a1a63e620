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
        results = await _latest_words(client, regs, hex(head))
    except (RetryableRpcError, AllEndpointsFailed):
        raise
    except RpcError as err:
        raise InconsistentFetch(f"investorCountry at the latest block failed: {err}") from err
    out: dict[tuple[str, int], CountryReading] = {}
    unknown: list[str] = []
    for lg, (country, identity) in zip(regs, results):
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


async def _latest_words(client: RpcClient, regs: Sequence[dict[str, Any]], tag: str) -> list[tuple[Any, Any]]:
    """(investorCountry, identity) results of each registration's investor at block ``tag``: READS_PER_CALL
    registrations per eth_call of READER_CODE; a group the reader does not answer (an error other than a
    transient one, a failed or odd-sized inner call) is read with two plain eth_calls per registration, whose
    answers and failures are what they always were."""
    out: list[tuple[Any, Any] | None] = [None] * len(regs)
    plain: list[int] = []
    groups: list[range] = []
    calls: list[tuple[str, list[Any]]] = []
    for lo in range(0, len(regs), READS_PER_CALL):
        group = range(lo, min(lo + READS_PER_CALL, len(regs)))
        args = [_reader_args(regs[i]) for i in group]
        pairs = [a for a in args if a is not None]
        if len(pairs) < len(args):
            plain.extend(group)
        else:
            groups.append(group)
            calls.append(("eth_call", [{"data": "0x" + READER_CODE + "".join(pairs)}, tag]))
    answers: list[Any] = [None] * len(calls)
    if calls:
        try:
            answers = await client.batch(calls, return_exceptions=True)
        except (RetryableRpcError, AllEndpointsFailed):
            raise
        except RpcError:
            pass  # the batch refused as a whole (a node without creation calls?): every group the plain way
    for group, answer in zip(groups, answers):
        if isinstance(answer, RetryableRpcError | AllEndpointsFailed):
            raise answer
        words = _reader_words(answer, len(group))
        if words is None:
            plain.extend(group)
            continue
        for i, pair in zip(group, words):
            out[i] = pair
    if plain:
        single: list[tuple[str, list[Any]]] = []
        for i in plain:
            lg = regs[i]
            investor = lg["topics"][1][2:]
            single.append(("eth_call", [{"to": lg["address"], "data": INVESTOR_COUNTRY_SELECTOR + investor}, tag]))
            single.append(("eth_call", [{"to": lg["address"], "data": _IDENTITY_SELECTOR + investor}, tag]))
        results = await _batched(client, single, "at the latest block")
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            raise InconsistentFetch(f"investorCountry at the latest block failed: {failed[0]}") from failed[0]
        for k, i in enumerate(plain):
            out[i] = (results[2 * k], results[2 * k + 1])
    return [pair for pair in out if pair is not None]


# One eth_call for many registrations. Reading old registrations at the head took two eth_calls each: 10,000
# for the 5,000 of bench/indexer_backfill.py's realistic shape, 0.35-0.65 s of the node's time (anvil answers
# eth_calls one at a time: groups sent concurrently were no faster) before the first batch could be decoded,
# a fifth of that backfill. READER_CODE is creation code run by eth_call without a "to" (no contract is
# deployed, no multicall contract needed: any node that simulates a deployment runs it): its constructor
# arguments, appended to it, are (contract, investor) word pairs; for each it makes the same two calls,
# investorCountry(investor) and identity(investor), as STATICCALLs, and returns one zero word then the two
# 32-byte results per pair. An inner call that fails or answers anything but one word reverts the whole
# call, and that group is read the plain way (the same answers or failures as before). Returned as deployed
# code, the output must stay under EIP-170's 24,576 bytes (32 + 64 per pair) and not start with 0xEF
# (EIP-3541: the zero word); the arguments under EIP-3860's 49,152 bytes of creation code.
READS_PER_CALL = 256


def _assemble(ops: Sequence[Any]) -> str:
    """EVM bytecode as hex from opcode names, ("push", value, bytes), ("label", name) (a JUMPDEST) and
    ("to", name) (PUSH2 of that label's offset)."""
    codes = {
        "ADD": 0x01, "SUB": 0x03, "LT": 0x10, "EQ": 0x14, "ISZERO": 0x15, "AND": 0x16, "SHL": 0x1B,
        "CODESIZE": 0x38, "CODECOPY": 0x39, "RETURNDATASIZE": 0x3D, "MLOAD": 0x51, "MSTORE": 0x52,
        "JUMP": 0x56, "JUMPI": 0x57, "GAS": 0x5A, "DUP1": 0x80, "DUP2": 0x81, "DUP3": 0x82, "DUP6": 0x85,
        "SWAP1": 0x90, "SWAP2": 0x91, "RETURN": 0xF3, "STATICCALL": 0xFA, "REVERT": 0xFD,
    }  # fmt: skip
    size = lambda op: 1 if isinstance(op, str) or op[0] == "label" else 3 if op[0] == "to" else 1 + op[2]  # noqa: E731
    labels, at = {}, 0
    for op in ops:
        if not isinstance(op, str) and op[0] == "label":
            labels[op[1]] = at
        at += size(op)
    code = bytearray()
    for op in ops:
        if isinstance(op, str):
            code.append(codes[op])
        elif op[0] == "label":
            code.append(0x5B)
        elif op[0] == "to":
            code += bytes((0x61,)) + labels[op[1]].to_bytes(2, "big")
        else:
            code += bytes((0x5F + op[2],)) + op[1].to_bytes(op[2], "big")
    return code.hex()


def _reader_code() -> str:
    def push(value: int, n: int = 1) -> tuple[str, int, int]:
        return ("push", value, n)

    def read(selector: str, out_offset: int) -> list[Any]:  # stack [q, p, end]: out[q + out_offset] = call result
        return [
            push(int(selector, 16), 4), push(224), "SHL", push(0), "MSTORE",  # memory[0:4] = selector
            "DUP2", push(32), "ADD", "MLOAD", push(4), "MSTORE",  # memory[4:36] = investor (the pair's 2nd word)
            push(32), "DUP2", push(out_offset), "ADD", push(36), push(0), "DUP6", "MLOAD", "GAS", "STATICCALL",
            "RETURNDATASIZE", push(32), "EQ", "AND", "ISZERO", ("to", "fail"), "JUMPI",
        ]  # fmt: skip

    body = [
        # memory: [0, 64) call data scratch, [64, end) the argument pairs, then the output (a zero word first)
        ("to", "args"), "DUP1", "CODESIZE", "SUB", "DUP1", "SWAP2", push(64), "CODECOPY",  # stack [size]
        push(64), "ADD", push(64), "DUP2", push(32), "ADD",  # stack [q (output), p (pairs), end]
        ("label", "loop"), "DUP3", "DUP3", "LT", "ISZERO", ("to", "done"), "JUMPI",
        *read(INVESTOR_COUNTRY_SELECTOR, 0), *read(_IDENTITY_SELECTOR, 32),
        push(64), "ADD", "SWAP1", push(64), "ADD", "SWAP1", ("to", "loop"), "JUMP",
        ("label", "done"), "DUP3", "SWAP1", "SUB", "DUP3", "RETURN",  # return memory[end:q]
        ("label", "fail"), push(0), "DUP1", "REVERT",
        ("label", "args"),
    ]  # fmt: skip
    code = _assemble(body)
    return code[:-2]  # the "args" label marks where the arguments start: no JUMPDEST there


READER_CODE = _reader_code()


def _reader_args(lg: dict[str, Any]) -> str | None:
    """The log's (contract, investor) words, None if they are not 20 and 32 bytes of hex."""
    contract, investor = str(lg["address"])[2:].lower(), str(lg["topics"][1])[2:].lower()
    if len(contract) != 40 or len(investor) != 64:
        return None
    try:
        int(contract, 16), int(investor, 16)
    except ValueError:
        return None
    return "0" * 24 + contract + investor


def _reader_words(answer: Any, n: int) -> list[tuple[str, str]] | None:
    """The reader's output as ("0x" + word, "0x" + word) per pair, None unless it is exactly one zero word and
    n pairs."""
    if not isinstance(answer, str) or len(answer) != 2 + 64 * (1 + 2 * n) or answer[2:66] != "0" * 64:
        return None
    return [
        ("0x" + answer[66 + 128 * i : 130 + 128 * i], "0x" + answer[130 + 128 * i : 194 + 128 * i]) for i in range(n)
    ]
