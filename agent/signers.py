"""Signers behind one interface: a local key from settings, or a remote signer over JSON-RPC.

    signer = signer_for(settings, chain_id, "agent")      # or "treasury", "deposit:<index>"
    raw, tx_hash = await signer.sign(tx)                  # tx: a complete EIP-1559 or legacy transaction dict

Local keys: AGENT_PRIVATE_KEY_<chainid> or AGENT_PRIVATE_KEY (TREASURY_PRIVATE_KEY[_<chainid>] for "treasury",
which falls back to the agent's key outside production). Remote: AGENT_SIGNER_URL[_<chainid>] and
AGENT_SIGNER_ADDRESS[_<chainid>] (TREASURY_SIGNER_*): `eth_signTransaction` as Web3Signer and Clef expose it (and
anvil for its unlocked accounts). A remote signature is checked to recover to the configured address, so a
misconfigured signer cannot make the executor store a transaction from another account. Production refuses a
missing key, a placeholder and every key of the public anvil/hardhat mnemonic. Keys are never logged.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Protocol

from eth_account import Account
from eth_utils import keccak, to_checksum_address

from agent.errors import RemoteSignerError, SignerNotConfigured, SignerRefused
from chains.rpc import RpcClient
from core.settings import PLACEHOLDER_MARKERS, WELL_KNOWN_MNEMONICS, WELL_KNOWN_PRIVATE_KEYS, Settings

ROLES = ("agent", "treasury")


class Signer(Protocol):
    address: str

    async def sign(self, tx: dict[str, Any]) -> tuple[str, str]:
        """(raw signed tx as 0x-hex, its hash as 0x-hex)."""
        ...

    async def aclose(self) -> None: ...


def _int(v: Any) -> int:
    return int(v, 16) if isinstance(v, str) else int(v)


def _rlp_len(n: int, offset: int) -> bytes:
    if n < 56:
        return bytes([offset + n])
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([offset + 55 + len(b)]) + b


def rlp_encode(item: Any) -> bytes:
    """Minimal RLP (ints, bytes, lists): the `rlp` package's generic codec cost ~1.5 ms per transaction."""
    if isinstance(item, int):
        item = item.to_bytes((item.bit_length() + 7) // 8, "big") if item else b""
    if isinstance(item, (bytes, bytearray)):
        if len(item) == 1 and item[0] < 0x80:
            return bytes(item)
        return _rlp_len(len(item), 0x80) + bytes(item)
    body = b"".join(rlp_encode(x) for x in item)
    return _rlp_len(len(body), 0xC0) + body


class LocalSigner:
    """A key in this process. EIP-1559 and EIP-155 legacy transactions are RLP-encoded and signed here with
    libsecp256k1 (coincurve): ~20x cheaper than eth_account's generic path (which took 2-7 ms per transaction,
    most of the executor's CPU at 1,000 transfers); RFC 6979 makes the bytes identical (tests compare them)."""

    def __init__(self, private_key: str | bytes) -> None:
        import coincurve

        self._account = Account.from_key(private_key)
        self._key = coincurve.PrivateKey(bytes(self._account.key))
        self.address: str = self._account.address

    def __repr__(self) -> str:
        return f"LocalSigner({self.address})"

    async def sign(self, tx: dict[str, Any]) -> tuple[str, str]:
        return self.sign_sync(tx)

    def sign_sync(self, tx: dict[str, Any]) -> tuple[str, str]:
        rlp_ = rlp_encode
        to = bytes.fromhex(str(tx["to"])[2:]) if tx.get("to") else b""
        data = bytes.fromhex(str(tx.get("data") or "0x")[2:])
        common = [_int(tx["nonce"])]
        if "gasPrice" in tx and "maxFeePerGas" not in tx:
            chain = _int(tx["chainId"])
            body = [_int(tx["nonce"]), _int(tx["gasPrice"]), _int(tx["gas"]), to, _int(tx.get("value", 0)), data]
            sig = self._key.sign_recoverable(keccak(rlp_([*body, chain, 0, 0])), hasher=None)
            v = sig[64] + chain * 2 + 35
            raw = rlp_([*body, v, int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:64], "big")])
        else:
            body = [
                _int(tx["chainId"]),
                *common,
                _int(tx["maxPriorityFeePerGas"]),
                _int(tx["maxFeePerGas"]),
                _int(tx["gas"]),
                to,
                _int(tx.get("value", 0)),
                data,
                [],
            ]
            sig = self._key.sign_recoverable(keccak(b"\x02" + rlp_(body)), hasher=None)
            raw = b"\x02" + rlp_([*body, sig[64], int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:64], "big")])
        return "0x" + raw.hex(), "0x" + keccak(raw).hex()

    async def aclose(self) -> None:
        return None


class RemoteSigner:
    """eth_signTransaction on a signer endpoint (Web3Signer/Clef/anvil)."""

    def __init__(self, url: str, address: str, *, timeout: float = 10.0) -> None:
        self.address: str = to_checksum_address(address)
        self._client = RpcClient([url], timeout=timeout, max_retries=0)

    def __repr__(self) -> str:
        return f"RemoteSigner({self.address} @ {self._client.current_endpoint})"

    async def sign(self, tx: dict[str, Any]) -> tuple[str, str]:
        request = {k: (hex(v) if isinstance(v, int) else v) for k, v in tx.items()}
        request["from"] = self.address
        if "chainId" in request:  # Clef and Web3Signer read "chainId"; anvil accepts it too
            request["chainId"] = hex(tx["chainId"])
        try:
            result = await self._client.call("eth_signTransaction", [request])
        except Exception as exc:  # noqa: BLE001  (any failure: the op stays PENDING and is retried)
            raise RemoteSignerError(f"remote signer failed: {exc}") from exc
        raw = result.get("raw") if isinstance(result, dict) else result  # Clef returns {"raw": ..., "tx": ...}
        if not isinstance(raw, str) or not raw.startswith("0x"):
            raise RemoteSignerError("remote signer returned no raw transaction")
        try:
            signer = Account.recover_transaction(raw)
        except Exception as exc:  # noqa: BLE001
            raise RemoteSignerError(f"remote signer returned an undecodable transaction: {exc}") from exc
        if signer != self.address:
            raise RemoteSignerError(f"remote signer signed as {signer}, expected {self.address}")
        return raw, "0x" + keccak(hexstr=raw).hex()

    async def aclose(self) -> None:
        await self._client.aclose()


@lru_cache(maxsize=1)
def dev_private_keys() -> frozenset[str]:
    """The first 20 keys of the public anvil/hardhat mnemonic (lowercase hex, no 0x)."""
    Account.enable_unaudited_hdwallet_features()
    keys = set(WELL_KNOWN_PRIVATE_KEYS)
    for mnemonic in WELL_KNOWN_MNEMONICS:
        for i in range(20):
            keys.add(bytes(Account.from_mnemonic(mnemonic, account_path=f"m/44'/60'/0'/0/{i}").key).hex())
    return frozenset(keys)


def _check_key(name: str, raw: str, settings: Settings) -> str:
    key = raw.strip().lower().removeprefix("0x")
    try:
        Account.from_key(key)
    except Exception:  # noqa: BLE001  (never echo the value)
        raise SignerNotConfigured(f"{name} is not a valid private key") from None
    if settings.is_production:
        if key in dev_private_keys():
            raise SignerRefused(f"{name} is a public anvil/hardhat test key; set a real one for RWA_ENV=production")
        if any(m in key for m in PLACEHOLDER_MARKERS):
            raise SignerRefused(f"{name} looks like a placeholder; set a real key for RWA_ENV=production")
    return key


def signer_for(settings: Settings, chain_id: int, role: str) -> Signer:
    """The signer of `role` on `chain_id` (SignerNotConfigured / SignerRefused naming the variable)."""
    if role.startswith("deposit:"):
        from core.hd_wallet import DepositWallet

        try:
            index = int(role.removeprefix("deposit:"))
        except ValueError:
            raise SignerNotConfigured(f"bad deposit signer role {role!r}") from None
        return LocalSigner(DepositWallet.from_settings(settings).private_key(index))
    if role not in ROLES:
        raise SignerNotConfigured(f"unknown signer role {role!r}")
    prefix = role.upper()
    url = settings.chain_value(f"{prefix}_SIGNER_URL", chain_id)
    if url:
        address = settings.chain_value(f"{prefix}_SIGNER_ADDRESS", chain_id)
        if not address:
            raise SignerNotConfigured(f"{prefix}_SIGNER_URL is set: {prefix}_SIGNER_ADDRESS[_{chain_id}] must be too")
        return RemoteSigner(url, address)
    name = f"{prefix}_PRIVATE_KEY"
    raw = settings.chain_value(name, chain_id)
    if raw:
        return LocalSigner(_check_key(name, raw, settings))
    if role == "treasury":
        if settings.is_production:
            raise SignerRefused(f"{name}[_{chain_id}] must be set when RWA_ENV=production")
        return signer_for(settings, chain_id, "agent")
    if settings.is_production:
        raise SignerRefused(f"{name}[_{chain_id}] (or AGENT_SIGNER_URL) must be set when RWA_ENV=production")
    raise SignerNotConfigured(f"{name} (or {name}_{chain_id}, or AGENT_SIGNER_URL) is not set")
