"""Stablecoin: a plain 6-decimal ERC-20 with owner mint and batchTransfer."""

from __future__ import annotations

import pytest
from eth_utils import to_checksum_address

from chains.deploy import RwaStack, TransactionReverted, receipt_events, transact

ZERO = "0x0000000000000000000000000000000000000000"


async def test_metadata(rwa_stack: RwaStack) -> None:
    coin = rwa_stack.stablecoin
    assert await coin.functions.decimals().call() == 6
    assert await coin.functions.name().call() == "USD Coin"
    assert await coin.functions.symbol().call() == "USDC"


async def test_owner_mints_and_anyone_transfers(rwa_stack: RwaStack, anvil_accounts: list[str]) -> None:
    owner, alice, bob = anvil_accounts[:3]
    coin = rwa_stack.stablecoin
    receipt = await transact(coin.functions.mint(alice, 5_000_000), owner)
    assert receipt_events(coin, "Transfer", receipt) == [{"from": ZERO, "to": alice, "value": 5_000_000}]
    with pytest.raises(TransactionReverted, match="not the owner"):
        await transact(coin.functions.mint(alice, 1), alice)
    receipt = await transact(coin.functions.transfer(bob, 1_250_000), alice)  # no identity needed
    assert receipt_events(coin, "Transfer", receipt) == [{"from": alice, "to": bob, "value": 1_250_000}]
    with pytest.raises(TransactionReverted, match="insufficient balance"):
        await transact(coin.functions.transfer(bob, 3_750_001), alice)
    assert await coin.functions.balanceOf(alice).call() == 3_750_000
    assert await coin.functions.totalSupply().call() == 5_000_000


async def test_batch_transfer(rwa_stack: RwaStack, anvil_accounts: list[str]) -> None:
    owner, coin = anvil_accounts[0], rwa_stack.stablecoin
    recipients = [to_checksum_address(f"0x{0xC0FFEE00 + i:040x}") for i in range(20)]
    await transact(coin.functions.mint(owner, 1_000), owner)
    receipt = await transact(coin.functions.batchTransfer(recipients, [7] * 20), owner)
    transfers = receipt_events(coin, "Transfer", receipt)
    assert [(t["from"], t["to"], t["value"]) for t in transfers] == [(owner, r, 7) for r in recipients]
    assert await coin.functions.balanceOf(owner).call() == 1_000 - 140
