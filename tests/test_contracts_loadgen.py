"""batchTransfer load generation: every requested Transfer lands on chain."""

from __future__ import annotations

from web3 import AsyncWeb3

from chains.anvil import AnvilNode
from chains.deploy import RwaStack, transact
from chains.loadgen import load_recipients, prepare_security_token_load, send_batch_transfers


async def test_security_token_load(
    anvil: AnvilNode, anvil_w3: AsyncWeb3, rwa_stack: RwaStack, anvil_accounts: list[str]
) -> None:
    agent = anvil_accounts[0]
    recipients = load_recipients(500)
    await prepare_security_token_load(anvil_w3, rwa_stack, agent, recipients, supply=10**24)
    result = await send_batch_transfers(anvil.url, rwa_stack.token.address, agent, recipients, txs=6)
    assert (result.txs, result.events) == (6, 3000)
    assert result.first_block <= result.last_block <= anvil.block_number()
    logs = await anvil_w3.eth.get_logs(
        {"address": rwa_stack.token.address, "fromBlock": result.first_block, "toBlock": result.last_block}
    )
    assert len(logs) == 3000
    assert await rwa_stack.token.functions.balanceOf(recipients[0]).call() == 6
    assert result.events_per_second > 0


async def test_stablecoin_load_without_identities(
    anvil: AnvilNode, rwa_stack: RwaStack, anvil_accounts: list[str]
) -> None:
    owner = anvil_accounts[0]
    await transact(rwa_stack.stablecoin.functions.mint(owner, 10**12), owner)
    recipients = load_recipients(100, offset=0x20000)
    result = await send_batch_transfers(anvil.url, rwa_stack.stablecoin.address, owner, recipients, txs=3, amount=5)
    assert result.events == 300
    assert await rwa_stack.stablecoin.functions.balanceOf(recipients[-1]).call() == 15
