"""SecurityToken.settlementTransfer / batchSettlementTransfer: the agent moves a seller's tokens to a buyer under every
rule of an ordinary transfer, so a settlement the token's rules forbid since the match reverts (forcedTransfer
would override them)."""

from __future__ import annotations

import pytest

from chains.deploy import RwaStack, TransactionReverted, receipt_events, transact
from tests.test_contracts_token import agent, alice, bob, funded, verify  # noqa: F401  (fixtures)


async def reverts(call, sender: str) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(TransactionReverted) as err:
        await transact(call, sender)
    return str(err.value)


async def test_settlement_transfer_follows_the_token_rules(
    funded: RwaStack,
    agent: str,
    alice: str,
    bob: str,  # noqa: F811
    anvil_accounts: list[str],
) -> None:
    token = funded.token
    receipt = await transact(token.functions.settlementTransfer(alice, bob, 10), agent)
    assert receipt_events(token, "Transfer", receipt) == [{"from": alice, "to": bob, "value": 10}]
    assert "caller is not an agent" in await reverts(token.functions.settlementTransfer(alice, bob, 1), bob)
    assert "insufficient unfrozen balance" in await reverts(token.functions.settlementTransfer(alice, bob, 91), agent)
    outsider = anvil_accounts[7]
    assert "identity is not verified" in await reverts(token.functions.settlementTransfer(alice, outsider, 1), agent)
    await transact(token.functions.setAddressFrozen(bob, True), agent)
    assert "wallet is frozen" in await reverts(token.functions.settlementTransfer(alice, bob, 1), agent)
    await transact(token.functions.setAddressFrozen(bob, False), agent)
    await transact(token.functions.freezePartialTokens(alice, 85), agent)
    assert "insufficient unfrozen balance" in await reverts(token.functions.settlementTransfer(alice, bob, 6), agent)
    await transact(token.functions.pause(), agent)
    assert "token is paused" in await reverts(token.functions.settlementTransfer(alice, bob, 1), agent)
    await transact(token.functions.unpause(), agent)
    receipt = await transact(token.functions.batchSettlementTransfer([alice, bob], [bob, alice], [5, 3]), agent)
    assert [e["value"] for e in receipt_events(token, "Transfer", receipt)] == [5, 3]
    assert await token.functions.balanceOf(alice).call() == 100 - 10 - 5 + 3
