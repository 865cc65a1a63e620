"""Deposit addresses derived from the platform's HD key (BIP-32/44, the Ethereum path m/44'/60'/0'/0/<index>).

    wallet = DepositWallet.from_settings(settings)
    address = wallet.address(index)          # one index per payment, from payment_deposit_index_seq

The mnemonic comes from HD_WALLET_MNEMONIC (production refuses a missing, placeholder or well-known one), or in
development from a mnemonic generated once per data dir (like the dev KYC key). The seed and keys are never
logged and never part of a repr. The account-level node is derived once; each address then costs one soft
child derivation (libsecp256k1 via coincurve), so creating many payments stays cheap.
"""

from __future__ import annotations

import os
from functools import lru_cache

from core.settings import Settings

ACCOUNT_PATH = "m/44'/60'/0'/0"
# anvil's and hardhat's default mnemonic: its keys are public, so production must never use it.
from core.settings import WELL_KNOWN_MNEMONICS  # noqa: E402, F401  (re-exported after the path constants)


class DepositWallet:
    __slots__ = ("_key", "_chain_code")

    def __init__(self, mnemonic: str) -> None:
        # eth_account is imported lazily: it is heavy and the API only needs it when a payment is created
        from eth_account.hdaccount import seed_from_mnemonic
        from eth_account.hdaccount.deterministic import HDPath, derive_child_key, hmac_sha512

        root = hmac_sha512(b"Bitcoin seed", seed_from_mnemonic(" ".join(mnemonic.split()), ""))
        key, chain_code = root[:32], root[32:]
        for node in HDPath(ACCOUNT_PATH)._path:
            key, chain_code = derive_child_key(key, chain_code, node)
        self._key, self._chain_code = key, chain_code

    def __repr__(self) -> str:
        return "DepositWallet(<secret>)"

    def private_key(self, index: int) -> bytes:
        """The key of deposit address `index` (for sweeping; never log it)."""
        from eth_account.hdaccount.deterministic import SoftNode, derive_child_key

        if not 0 <= index < 2**31:
            raise ValueError("derivation index out of range")
        key, _ = derive_child_key(self._key, self._chain_code, SoftNode(index))
        return key

    def address(self, index: int) -> str:
        """Checksummed address of m/44'/60'/0'/0/<index>; equals Account.from_mnemonic(..., account_path=...)."""
        from eth_account import Account

        return Account.from_key(self.private_key(index)).address

    @classmethod
    def from_settings(cls, settings: Settings) -> DepositWallet:
        return _wallet(mnemonic_for(settings))


@lru_cache(maxsize=4)
def _wallet(mnemonic: str) -> DepositWallet:
    return DepositWallet(mnemonic)


def mnemonic_for(settings: Settings) -> str:
    if settings.hd_wallet_mnemonic is not None and settings.hd_wallet_mnemonic.get_secret_value().strip():
        return settings.hd_wallet_mnemonic.get_secret_value()
    return dev_mnemonic(settings)


def dev_mnemonic(settings: Settings) -> str:
    """Development only: a mnemonic generated once per data dir, so deposit addresses survive restarts."""
    from eth_account.hdaccount import Language, generate_mnemonic

    path = settings.data_path() / "hd-wallet-dev.mnemonic"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(generate_mnemonic(12, Language.ENGLISH))
        tmp.chmod(0o600)
        tmp.replace(path)
    return path.read_text().strip()
