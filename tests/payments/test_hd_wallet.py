"""Deposit-address derivation and the secrets it depends on."""

from __future__ import annotations

import logging

import pytest
from eth_account import Account

from core.hd_wallet import DepositWallet, mnemonic_for
from core.settings import ConfigError, Environment, Settings
from tests.platform.test_settings import production_env

ANVIL_MNEMONIC = "test test test test test test test test test test test junk"


def test_addresses_match_eth_account_derivation() -> None:
    Account.enable_unaudited_hdwallet_features()
    wallet = DepositWallet(ANVIL_MNEMONIC)
    for index in (0, 1, 7, 12345):
        expected = Account.from_mnemonic(ANVIL_MNEMONIC, account_path=f"m/44'/60'/0'/0/{index}").address
        assert wallet.address(index) == expected
    # anvil's first dev account is index 0 of this mnemonic
    assert wallet.address(0) == "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
    assert len({wallet.address(i) for i in range(50)}) == 50


def test_wallet_repr_hides_the_seed(caplog: pytest.LogCaptureFixture) -> None:
    wallet = DepositWallet(ANVIL_MNEMONIC)
    logging.getLogger("t").warning("wallet %r", wallet)
    assert "test" not in repr(wallet) and wallet.private_key(0).hex() not in caplog.text


def test_dev_mnemonic_is_generated_once_per_data_dir(tmp_path) -> None:  # type: ignore[no-untyped-def]
    s = Settings(RWA_ENV=Environment.DEVELOPMENT, RWA_DATA_DIR=str(tmp_path))  # type: ignore[call-arg]
    first = mnemonic_for(s)
    assert len(first.split()) == 12 and mnemonic_for(s) == first
    other = Settings(RWA_ENV=Environment.DEVELOPMENT, RWA_DATA_DIR=str(tmp_path / "b"))  # type: ignore[call-arg]
    assert mnemonic_for(other) != first
    assert (tmp_path / "hd-wallet-dev.mnemonic").stat().st_mode & 0o077 == 0


def test_production_refuses_the_public_anvil_mnemonic(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HD_WALLET_MNEMONIC", raising=False)
    env = production_env()
    Settings(**env).check_production()  # type: ignore[arg-type]
    for value in (
        ANVIL_MNEMONIC,
        ANVIL_MNEMONIC.upper(),
        "  test test test test test test test test test test test  junk ",
    ):
        with pytest.raises(ConfigError, match="HD_WALLET_MNEMONIC"):
            Settings(**{**env, "HD_WALLET_MNEMONIC": value}).check_production()  # type: ignore[arg-type]
