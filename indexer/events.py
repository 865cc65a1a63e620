"""Event signatures of the watched contracts and hex-slicing decoders (no eth_abi on the hot path).

Each decoder takes the log's ``topics`` and ``data`` (0x-hex strings as the node returns them) and
gives the event's arguments as a dict of JSON-safe values (addresses checksummed, uint256 as str).
``subject`` is the account whose state the event changes, used to recompute derived state:
the holder/investor for freeze and identity events, the token itself for Paused/Unpaused, None
for Transfer (derived through token_transfers) and RecoverySuccess (its effects have own events).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from Crypto.Hash.keccak import new as _keccak_new

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"


def keccak_hex(text: str) -> str:
    """Keccak-256 of ``text`` (UTF-8) as 64 hex digits; pycryptodome directly: eth_utils (its to_checksum_address
    is only the fallback below) is 0.07-0.26 s of imports, paid by every `rwa index backfill` before its first block."""
    return _keccak_new(digest_bits=256, data=text.encode()).digest().hex()  # hexdigest() formats byte by byte


def _to_checksum_address(address: str) -> str:
    from eth_utils import to_checksum_address

    return str(to_checksum_address(address))


# EIP-55 casing without a loop over the characters: bit 3 of each of the hash's first 40 nibbles, spread to one
# byte per character as 0x20 (the ASCII case bit), and-ed with 0x20 where the character is a letter, flips its case.
_NIBBLE_HIGH_BITS = int("8" * 40, 16)
_BIT_TO_CASE = bytes.maketrans(b"01", b"\x00\x20")
_LETTER_CASE = bytes.maketrans(b"0123456789abcdef", b"\x00" * 10 + b"\x20" * 6)


@lru_cache(maxsize=1 << 17)
def checksum(address: str) -> str:
    """Checksum a 0x-address; cached because a busy token sees the same holders again and again.

    EIP-55 over pycryptodome's keccak directly: 20 us against 35 us for eth_utils' to_checksum_address (its
    generic hashing layers), which a realistic history pays once per distinct holder. The digest as bytes
    (hexdigest() formats them one by one in Python: 3.5x the time of the hash), the casing by integer masks (a
    loop over the 40 characters took as long as the hash). Anything that is not "0x" + 40 hex digits goes to
    to_checksum_address, which raises ValueError for it."""
    h = address[2:].lower()
    if len(address) != 42 or address[:2] not in ("0x", "0X") or not (h.isascii() and h.isalnum()):
        return _to_checksum_address(address)
    try:
        int(h, 16)
    except ValueError:
        return _to_checksum_address(address)
    raw = h.encode()
    high = int.from_bytes(_keccak_new(digest_bits=256, data=raw).digest()[:20]) & _NIBBLE_HIGH_BITS
    flags = int.from_bytes(f"{high >> 3:040x}".encode().translate(_BIT_TO_CASE))
    upper = int.from_bytes(raw) ^ (flags & int.from_bytes(raw.translate(_LETTER_CASE)))
    return "0x" + upper.to_bytes(40).decode()


def topic_address(topic: str) -> str:
    return checksum("0x" + topic[-40:])


def word(data: str, i: int) -> str:
    """The i-th 32-byte word of ``data`` as 64 hex chars."""
    start = 2 + 64 * i
    return data[start : start + 64]


def signature_topic(signature: str) -> str:
    return "0x" + keccak_hex(signature)


Args = dict[str, Any]
Decoder = Callable[[list[str], str], Args]


def _transfer(topics: list[str], data: str) -> Args:
    return {"from": topic_address(topics[1]), "to": topic_address(topics[2]), "value": str(int(data[2:66], 16))}


def _pause(topics: list[str], data: str) -> Args:
    return {"account": checksum("0x" + word(data, 0)[24:])}


def _address_frozen(topics: list[str], data: str) -> Args:
    return {"user": topic_address(topics[1]), "frozen": int(topics[2], 16) != 0, "owner": topic_address(topics[3])}


def _tokens_frozen(topics: list[str], data: str) -> Args:
    return {"user": topic_address(topics[1]), "amount": str(int(data[2:66], 16))}


def _recovery(topics: list[str], data: str) -> Args:
    return {
        "lostWallet": topic_address(topics[1]),
        "newWallet": topic_address(topics[2]),
        "investorOnchainId": topic_address(topics[3]),
    }


def _identity(topics: list[str], data: str) -> Args:
    return {"investor": topic_address(topics[1]), "identity": topic_address(topics[2])}


def _country(topics: list[str], data: str) -> Args:
    return {"investor": topic_address(topics[1]), "country": int(topics[2], 16)}


@dataclass(frozen=True, slots=True)
class EventType:
    name: str
    signature: str
    decode: Decoder
    subject_arg: str | None  # which arg is the subject; "@token" means the emitting contract

    @property
    def topic0(self) -> str:
        return signature_topic(self.signature)


EVENT_TYPES: tuple[EventType, ...] = (
    # ERC-20 Transfer: security tokens and stablecoins alike
    EventType("Transfer", "Transfer(address,address,uint256)", _transfer, None),
    EventType("Paused", "Paused(address)", _pause, "@token"),
    EventType("Unpaused", "Unpaused(address)", _pause, "@token"),
    EventType("AddressFrozen", "AddressFrozen(address,bool,address)", _address_frozen, "user"),
    EventType("TokensFrozen", "TokensFrozen(address,uint256)", _tokens_frozen, "user"),
    EventType("TokensUnfrozen", "TokensUnfrozen(address,uint256)", _tokens_frozen, "user"),
    EventType("RecoverySuccess", "RecoverySuccess(address,address,address)", _recovery, None),
    EventType("IdentityRegistered", "IdentityRegistered(address,address)", _identity, "investor"),
    EventType("IdentityRemoved", "IdentityRemoved(address,address)", _identity, "investor"),
    EventType("CountryUpdated", "CountryUpdated(address,uint16)", _country, "investor"),
)
BY_TOPIC0: dict[str, EventType] = {e.topic0: e for e in EVENT_TYPES}
BY_NAME: dict[str, EventType] = {e.name: e for e in EVENT_TYPES}
TRANSFER_TOPIC0 = BY_NAME["Transfer"].topic0
WATCHED_TOPIC0S: list[str] = [e.topic0 for e in EVENT_TYPES]
# Events whose derived state is recomputed from the remaining raw events (after inserts and reorgs).
HOLDING_STATE_EVENTS = ("AddressFrozen", "TokensFrozen", "TokensUnfrozen")
TOKEN_STATE_EVENTS = ("Paused", "Unpaused")
IDENTITY_EVENTS = ("IdentityRegistered", "IdentityRemoved", "CountryUpdated")

# investorCountry(address): the country is not in IdentityRegistered, so it is read at that block.
INVESTOR_COUNTRY_SELECTOR = "0x" + keccak_hex("investorCountry(address)")[:8]


class UndecodableLog(ValueError):
    """A log with a known topic0 whose topics/data do not fit the event (e.g. an ERC-721 Transfer)."""


def decode_log(topics: list[str], data: str) -> tuple[str, Args] | None:
    """(event name, args) for a watched event, None for an unknown topic0.

    Raises UndecodableLog if the shape is wrong (another contract's event with the same topic0).
    """
    if not topics:
        return None
    etype = BY_TOPIC0.get(topics[0])
    if etype is None:
        return None
    try:
        return etype.name, etype.decode(topics, data)
    except (IndexError, ValueError) as exc:
        raise UndecodableLog(f"{etype.name}: {exc}") from exc


def subject_of(name: str, args: Args, emitter: str) -> str | None:
    arg = BY_NAME[name].subject_arg
    if arg is None:
        return None
    if arg == "@token":
        return emitter
    return args[arg]
