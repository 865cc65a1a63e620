"""SecurityToken behaviour the indexer and API rely on (real anvil, fresh contracts per test)."""

from __future__ import annotations

import pytest
from eth_utils import keccak, to_checksum_address

from chains.contracts import load_artifact
from chains.deploy import RwaStack, TransactionReverted, receipt_events, transact

ZERO = "0x0000000000000000000000000000000000000000"
TRANSFER_TOPIC = "0x" + keccak(text="Transfer(address,address,uint256)").hex()


def addr(i: int) -> str:
    """A fresh wallet address (not an anvil account) for recipients."""
    return to_checksum_address(f"0x{0xABC0000 + i:040x}")


def onchain_id_of(wallet: str) -> str:
    """Stands in for the wallet's ONCHAINID contract: any distinct non-zero address will do."""
    return to_checksum_address(keccak(hexstr=wallet)[-20:])


async def verify(stack: RwaStack, agent: str, *wallets: str, country: int = 250) -> None:
    for wallet in wallets:
        await transact(stack.registry.functions.registerIdentity(wallet, onchain_id_of(wallet), country), agent)


@pytest.fixture
def agent(anvil_accounts: list[str]) -> str:
    return anvil_accounts[0]


@pytest.fixture
def alice(anvil_accounts: list[str]) -> str:
    return anvil_accounts[1]


@pytest.fixture
def bob(anvil_accounts: list[str]) -> str:
    return anvil_accounts[2]


@pytest.fixture
async def funded(rwa_stack: RwaStack, agent: str, alice: str, bob: str) -> RwaStack:
    """alice and bob verified; alice holds 100 tokens."""
    await verify(rwa_stack, agent, alice, bob)
    await transact(rwa_stack.token.functions.mint(alice, 100), agent)
    return rwa_stack


async def balances(stack: RwaStack, *wallets: str) -> list[int]:
    return [await stack.token.functions.balanceOf(w).call() for w in wallets]


def test_event_signatures_are_erc3643() -> None:
    expected = {
        "Transfer": [("from", "address", True), ("to", "address", True), ("value", "uint256", False)],
        "Approval": [("owner", "address", True), ("spender", "address", True), ("value", "uint256", False)],
        "Paused": [("userAddress", "address", False)],
        "Unpaused": [("userAddress", "address", False)],
        "AddressFrozen": [("userAddress", "address", True), ("isFrozen", "bool", True), ("owner", "address", True)],
        "TokensFrozen": [("userAddress", "address", True), ("amount", "uint256", False)],
        "TokensUnfrozen": [("userAddress", "address", True), ("amount", "uint256", False)],
        "RecoverySuccess": [
            ("lostWallet", "address", True),
            ("newWallet", "address", True),
            ("investorOnchainID", "address", True),
        ],
    }
    events = {e["name"]: e for e in load_artifact("SecurityToken")["abi"] if e["type"] == "event"}
    for name, inputs in expected.items():
        assert [(i["name"], i["type"], i["indexed"]) for i in events[name]["inputs"]] == inputs, name


async def test_mint_emits_transfer_from_zero(rwa_stack: RwaStack, agent: str, alice: str) -> None:
    await verify(rwa_stack, agent, alice)
    receipt = await transact(rwa_stack.token.functions.mint(alice, 10**18), agent)
    assert receipt_events(rwa_stack.token, "Transfer", receipt) == [{"from": ZERO, "to": alice, "value": 10**18}]
    (log,) = receipt["logs"]
    assert "0x" + log["topics"][0].hex().removeprefix("0x") == TRANSFER_TOPIC
    assert await rwa_stack.token.functions.totalSupply().call() == 10**18
    assert await balances(rwa_stack, alice) == [10**18]


async def test_token_metadata_and_agent_only_operations(rwa_stack: RwaStack, agent: str, alice: str) -> None:
    token = rwa_stack.token
    assert await token.functions.decimals().call() == 18
    assert await token.functions.identityRegistry().call() == rwa_stack.registry.address
    assert await token.functions.isAgent(agent).call()
    await verify(rwa_stack, agent, alice)
    for fn in (token.functions.mint(alice, 1), token.functions.pause(), token.functions.setAddressFrozen(alice, True)):
        with pytest.raises(TransactionReverted, match="not an agent"):
            await transact(fn, alice)


async def test_mint_and_transfer_to_unverified_identity_revert(funded: RwaStack, agent: str, alice: str) -> None:
    stranger = addr(1)
    with pytest.raises(TransactionReverted, match="identity is not verified"):
        await transact(funded.token.functions.mint(stranger, 5), agent)
    with pytest.raises(TransactionReverted, match="identity is not verified"):
        await transact(funded.token.functions.transfer(stranger, 5), alice)
    assert await balances(funded, alice, stranger) == [100, 0]


async def test_transfer_and_transfer_from_between_verified(funded: RwaStack, agent: str, alice: str, bob: str) -> None:
    receipt = await transact(funded.token.functions.transfer(bob, 30), alice)
    assert receipt_events(funded.token, "Transfer", receipt) == [{"from": alice, "to": bob, "value": 30}]
    await transact(funded.token.functions.approve(agent, 20), alice)
    with pytest.raises(TransactionReverted, match="insufficient allowance"):
        await transact(funded.token.functions.transferFrom(alice, bob, 21), agent)
    await transact(funded.token.functions.transferFrom(alice, bob, 20), agent)
    assert await funded.token.functions.allowance(alice, agent).call() == 0
    assert await balances(funded, alice, bob) == [50, 50]


async def test_pause_blocks_transfers(funded: RwaStack, agent: str, alice: str, bob: str) -> None:
    receipt = await transact(funded.token.functions.pause(), agent)
    assert receipt_events(funded.token, "Paused", receipt) == [{"userAddress": agent}]
    assert await funded.token.functions.paused().call()
    with pytest.raises(TransactionReverted, match="paused"):
        await transact(funded.token.functions.transfer(bob, 1), alice)
    receipt = await transact(funded.token.functions.unpause(), agent)
    assert receipt_events(funded.token, "Unpaused", receipt) == [{"userAddress": agent}]
    await transact(funded.token.functions.transfer(bob, 1), alice)
    assert await balances(funded, alice, bob) == [99, 1]


async def test_frozen_address_can_neither_send_nor_receive(funded: RwaStack, agent: str, alice: str, bob: str) -> None:
    receipt = await transact(funded.token.functions.setAddressFrozen(bob, True), agent)
    assert receipt_events(funded.token, "AddressFrozen", receipt) == [
        {"userAddress": bob, "isFrozen": True, "owner": agent}
    ]
    assert await funded.token.functions.isFrozen(bob).call()
    with pytest.raises(TransactionReverted, match="frozen"):
        await transact(funded.token.functions.transfer(bob, 1), alice)
    await transact(funded.token.functions.setAddressFrozen(alice, True), agent)
    with pytest.raises(TransactionReverted, match="frozen"):
        await transact(funded.token.functions.transfer(agent, 1), alice)
    await transact(funded.token.functions.setAddressFrozen(alice, False), agent)
    await transact(funded.token.functions.setAddressFrozen(bob, False), agent)
    await transact(funded.token.functions.transfer(bob, 1), alice)
    assert await balances(funded, alice, bob) == [99, 1]


async def test_partial_freeze_limits_spendable_balance(funded: RwaStack, agent: str, alice: str, bob: str) -> None:
    token = funded.token
    receipt = await transact(token.functions.freezePartialTokens(alice, 60), agent)
    assert receipt_events(token, "TokensFrozen", receipt) == [{"userAddress": alice, "amount": 60}]
    assert await token.functions.getFrozenTokens(alice).call() == 60
    with pytest.raises(TransactionReverted, match="unfrozen balance"):
        await transact(token.functions.transfer(bob, 41), alice)
    await transact(token.functions.transfer(bob, 40), alice)
    with pytest.raises(TransactionReverted, match="exceeds balance"):
        await transact(token.functions.freezePartialTokens(alice, 1), agent)
    receipt = await transact(token.functions.unfreezePartialTokens(alice, 10), agent)
    assert receipt_events(token, "TokensUnfrozen", receipt) == [{"userAddress": alice, "amount": 10}]
    await transact(token.functions.transfer(bob, 10), alice)
    assert await balances(funded, alice, bob) == [50, 50]
    assert await token.functions.getFrozenTokens(alice).call() == 50


async def test_forced_transfer_unfreezes_the_shortfall(funded: RwaStack, agent: str, alice: str, bob: str) -> None:
    token = funded.token
    await transact(token.functions.freezePartialTokens(alice, 80), agent)
    await transact(token.functions.setAddressFrozen(alice, True), agent)
    await transact(token.functions.pause(), agent)
    receipt = await transact(token.functions.forcedTransfer(alice, bob, 50), agent)
    # free balance was 20: 30 frozen tokens are released first, then the move is logged
    assert receipt_events(token, "TokensUnfrozen", receipt) == [{"userAddress": alice, "amount": 30}]
    assert receipt_events(token, "Transfer", receipt) == [{"from": alice, "to": bob, "value": 50}]
    assert await balances(funded, alice, bob) == [50, 50]
    assert await token.functions.getFrozenTokens(alice).call() == 50
    with pytest.raises(TransactionReverted, match="balance too low"):
        await transact(token.functions.forcedTransfer(alice, bob, 51), agent)
    with pytest.raises(TransactionReverted, match="not verified"):
        await transact(token.functions.forcedTransfer(alice, addr(2), 1), agent)


async def test_recovery_moves_balance_frozen_state_and_identity(funded: RwaStack, agent: str, alice: str) -> None:
    token, registry = funded.token, funded.registry
    onchain_id = await registry.functions.identity(alice).call()
    assert onchain_id == onchain_id_of(alice)
    new_wallet = addr(3)
    await transact(token.functions.freezePartialTokens(alice, 30), agent)
    await transact(token.functions.setAddressFrozen(alice, True), agent)
    with pytest.raises(TransactionReverted, match="identity mismatch"):
        await transact(token.functions.recoveryAddress(alice, new_wallet, addr(4)), agent)

    receipt = await transact(token.functions.recoveryAddress(alice, new_wallet, onchain_id), agent)
    assert receipt_events(token, "RecoverySuccess", receipt) == [
        {"lostWallet": alice, "newWallet": new_wallet, "investorOnchainID": onchain_id}
    ]
    assert receipt_events(token, "Transfer", receipt) == [{"from": alice, "to": new_wallet, "value": 100}]
    assert receipt_events(token, "TokensFrozen", receipt) == [{"userAddress": new_wallet, "amount": 30}]
    assert receipt_events(registry, "IdentityRegistered", receipt) == [
        {"investorAddress": new_wallet, "identity": onchain_id}
    ]
    assert receipt_events(registry, "IdentityRemoved", receipt) == [{"investorAddress": alice, "identity": onchain_id}]
    assert await balances(funded, alice, new_wallet) == [0, 100]
    assert await token.functions.getFrozenTokens(new_wallet).call() == 30
    assert await token.functions.getFrozenTokens(alice).call() == 0
    assert await token.functions.isFrozen(new_wallet).call()
    assert not await token.functions.isFrozen(alice).call()
    assert await registry.functions.investorCountry(new_wallet).call() == 250
    assert not await registry.functions.isVerified(alice).call()


async def test_burn_emits_transfer_to_zero(funded: RwaStack, agent: str, alice: str) -> None:
    receipt = await transact(funded.token.functions.burn(alice, 40), agent)
    assert receipt_events(funded.token, "Transfer", receipt) == [{"from": alice, "to": ZERO, "value": 40}]
    assert await funded.token.functions.totalSupply().call() == 60


async def test_batch_transfer_of_500_emits_500_transfers_in_one_tx(rwa_stack: RwaStack, agent: str) -> None:
    recipients = [addr(1000 + i) for i in range(500)]
    registry = rwa_stack.registry
    first = [agent, *recipients[:499]]  # a batch holds at most 500 entries
    await transact(registry.functions.batchRegisterIdentity(first, first, [840] * 500), agent)
    await transact(registry.functions.registerIdentity(recipients[499], recipients[499], 840), agent)
    await transact(rwa_stack.token.functions.batchMint([agent], [10**6]), agent)
    receipt = await transact(rwa_stack.token.functions.batchTransfer(recipients, list(range(1, 501))), agent)
    logs = receipt["logs"]
    assert len(logs) == 500
    assert {log["transactionHash"] for log in logs} == {receipt["transactionHash"]}
    transfers = receipt_events(rwa_stack.token, "Transfer", receipt)
    assert [(t["to"], t["value"]) for t in transfers] == list(zip(recipients, range(1, 501)))
    assert await rwa_stack.token.functions.balanceOf(agent).call() == 10**6 - sum(range(1, 501))
    with pytest.raises(TransactionReverted, match="length mismatch"):
        await transact(rwa_stack.token.functions.batchTransfer(recipients[:2], [1]), agent)
