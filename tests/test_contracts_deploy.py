"""deploy helpers: private-key senders, revert reporting, binding deployed contracts."""

from __future__ import annotations

import pytest
from eth_account import Account
from web3 import AsyncWeb3

from chains.deploy import (
    TransactionReverted,
    at,
    deploy_identity_registry,
    deploy_security_token,
    deploy_stablecoin,
    receipt_events,
    transact,
)


async def test_private_key_sender_deploys_and_transacts(anvil_w3: AsyncWeb3, anvil_accounts: list[str]) -> None:
    key = Account.create()
    await anvil_w3.eth.send_transaction({"from": anvil_accounts[0], "to": key.address, "value": 10**18})
    coin = await deploy_stablecoin(anvil_w3, key, name="Tether USD", symbol="USDT")
    assert await coin.functions.owner().call() == key.address
    assert await coin.functions.symbol().call() == "USDT"
    receipt = await transact(coin.functions.mint(key.address, 10), key)
    assert receipt["from"] == key.address
    with pytest.raises(TransactionReverted, match=r"transfer\(\) reverted: insufficient balance") as err:
        await transact(coin.functions.transfer(anvil_accounts[1], 11), key)
    assert err.value.reason == "insufficient balance"
    bound = at(anvil_w3, "Stablecoin", coin.address.lower())
    assert await bound.functions.balanceOf(key.address).call() == 10


async def test_mined_revert_raises_with_receipt(anvil_w3: AsyncWeb3, anvil_accounts: list[str]) -> None:
    owner = anvil_accounts[0]
    coin = await deploy_stablecoin(anvil_w3, owner)
    # An explicit gas limit skips estimation, so the revert happens in a mined block.
    with pytest.raises(TransactionReverted, match="status 0") as err:
        await transact(coin.functions.transfer(anvil_accounts[1], 1), owner, tx={"gas": 100_000})
    assert err.value.receipt is not None and err.value.receipt["status"] == 0


async def test_separate_deploys_with_extra_agents(anvil_w3: AsyncWeb3, anvil_accounts: list[str]) -> None:
    owner, extra = anvil_accounts[0], anvil_accounts[3]
    registry = await deploy_identity_registry(anvil_w3, owner, agents=(extra,))
    token = await deploy_security_token(
        anvil_w3, owner, "Green Bond 2030", "GB30", 6, registry.address, agents=(extra,)
    )
    assert await registry.functions.isAgent(extra).call() and await token.functions.isAgent(extra).call()
    assert await token.functions.decimals().call() == 6
    assert await token.functions.name().call() == "Green Bond 2030"
    receipt = await transact(registry.functions.registerIdentity(extra, owner, 840), extra)
    assert receipt_events(registry, "IdentityRegistered", receipt) == [{"investorAddress": extra, "identity": owner}]
