"""Contract wallets (EIP-1271: Safe and other smart accounts) sign by answering `isValidSignature(hash, signature)`
with the magic value 0x1626ba7e. The hash is the EIP-191 personal-message hash of the text the user signed, as
wallets (Safe's included) compute it for personal_sign."""

from __future__ import annotations

from eth_utils import keccak

from chains.errors import RpcResponseError
from chains.rpc import RpcClient

MAGIC_VALUE = "1626ba7e"
SELECTOR = "0x1626ba7e"  # isValidSignature(bytes32,bytes)


def personal_message_hash(message: str) -> bytes:
    data = message.encode()
    return keccak(b"\x19Ethereum Signed Message:\n" + str(len(data)).encode() + data)


def _call_data(digest: bytes, signature: bytes) -> str:
    padded = signature + b"\x00" * (-len(signature) % 32)
    return (
        SELECTOR
        + digest.hex()
        + (64).to_bytes(32, "big").hex()
        + len(signature).to_bytes(32, "big").hex()
        + padded.hex()
    )


async def has_code(rpc: RpcClient, address: str) -> bool:
    code = await rpc.call("eth_getCode", [address, "latest"])
    return bool(code) and code not in ("0x", "0x0")


async def is_valid_signature(rpc: RpcClient, wallet: str, message: str, signature: bytes) -> bool:
    """True when the contract at `wallet` accepts `signature` for `message`; a revert or any other answer is no."""
    try:
        result = await rpc.eth_call(wallet, _call_data(personal_message_hash(message), signature))
    except RpcResponseError:  # the contract reverted (or has no such function): not valid
        return False
    raw = (result or "0x").removeprefix("0x")
    return len(raw) >= 8 and raw[:8].lower() == MAGIC_VALUE
