"""IdentityRegistry: ERC-3643 identity events and the verification the token relies on."""

from __future__ import annotations

import pytest
from eth_utils import to_checksum_address

from chains.contracts import load_artifact
from chains.deploy import RwaStack, TransactionReverted, receipt_events, transact

ZERO = "0x0000000000000000000000000000000000000000"


def addr(i: int) -> str:
    return to_checksum_address(f"0x{0xDE00000 + i:040x}")


def test_event_signatures_are_erc3643() -> None:
    events = {e["name"]: e["inputs"] for e in load_artifact("IdentityRegistry")["abi"] if e["type"] == "event"}
    as_tuples = {name: [(i["name"], i["type"], i["indexed"]) for i in inputs] for name, inputs in events.items()}
    assert as_tuples["IdentityRegistered"] == [("investorAddress", "address", True), ("identity", "address", True)]
    assert as_tuples["IdentityRemoved"] == [("investorAddress", "address", True), ("identity", "address", True)]
    assert as_tuples["CountryUpdated"] == [("investorAddress", "address", True), ("country", "uint16", True)]


async def test_register_update_delete_emit_events(rwa_stack: RwaStack, anvil_accounts: list[str]) -> None:
    agent, registry = anvil_accounts[0], rwa_stack.registry
    user, onchain_id = addr(1), addr(2)
    assert not await registry.functions.isVerified(user).call()

    receipt = await transact(registry.functions.registerIdentity(user, onchain_id, 250), agent)
    registered = receipt_events(registry, "IdentityRegistered", receipt)
    assert registered == [{"investorAddress": user, "identity": onchain_id}]
    assert await registry.functions.isVerified(user).call()
    assert await registry.functions.identity(user).call() == onchain_id
    assert await registry.functions.investorCountry(user).call() == 250
    with pytest.raises(TransactionReverted, match="already registered"):
        await transact(registry.functions.registerIdentity(user, onchain_id, 250), agent)

    receipt = await transact(registry.functions.updateCountry(user, 276), agent)
    assert receipt_events(registry, "CountryUpdated", receipt) == [{"investorAddress": user, "country": 276}]
    assert int.from_bytes(receipt["logs"][0]["topics"][2], "big") == 276  # country is an indexed topic
    assert await registry.functions.investorCountry(user).call() == 276

    receipt = await transact(registry.functions.deleteIdentity(user), agent)
    assert receipt_events(registry, "IdentityRemoved", receipt) == [{"investorAddress": user, "identity": onchain_id}]
    assert not await registry.functions.isVerified(user).call()
    assert await registry.functions.identity(user).call() == ZERO
    with pytest.raises(TransactionReverted, match="not registered"):
        await transact(registry.functions.deleteIdentity(user), agent)


async def test_batch_register(rwa_stack: RwaStack, anvil_accounts: list[str]) -> None:
    agent, registry = anvil_accounts[0], rwa_stack.registry
    users = [addr(10 + i) for i in range(3)]
    ids = [addr(20 + i) for i in range(3)]
    receipt = await transact(registry.functions.batchRegisterIdentity(users, ids, [1, 2, 3]), agent)
    assert receipt_events(registry, "IdentityRegistered", receipt) == [
        {"investorAddress": u, "identity": i} for u, i in zip(users, ids)
    ]
    assert [await registry.functions.investorCountry(u).call() for u in users] == [1, 2, 3]
    with pytest.raises(TransactionReverted, match="length mismatch"):
        await transact(registry.functions.batchRegisterIdentity([addr(30)], [addr(31)], []), agent)


async def test_only_agents_write(rwa_stack: RwaStack, anvil_accounts: list[str]) -> None:
    outsider, registry = anvil_accounts[5], rwa_stack.registry
    with pytest.raises(TransactionReverted, match="not an agent"):
        await transact(registry.functions.registerIdentity(addr(40), addr(41), 1), outsider)
    with pytest.raises(TransactionReverted, match="not the owner"):
        await transact(registry.functions.addAgent(outsider), outsider)
    assert await registry.functions.isAgent(rwa_stack.token.address).call()  # wired by deploy_rwa_stack


async def test_token_transfers_stop_when_sender_identity_is_deleted(
    rwa_stack: RwaStack, anvil_accounts: list[str]
) -> None:
    agent, alice, bob = anvil_accounts[:3]
    registry, token = rwa_stack.registry, rwa_stack.token
    await transact(registry.functions.batchRegisterIdentity([alice, bob], [addr(50), addr(51)], [250, 250]), agent)
    await transact(token.functions.mint(alice, 10), agent)
    await transact(registry.functions.deleteIdentity(alice), agent)
    with pytest.raises(TransactionReverted, match="sender identity not verified"):
        await transact(token.functions.transfer(bob, 1), alice)
