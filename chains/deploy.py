"""Deploy and drive the StableRWA contracts with web3 (AsyncWeb3).

A ``Sender`` is either an address unlocked on the node (anvil's dev accounts; the node signs) or an
eth-account ``LocalAccount`` (we sign locally and send the raw transaction). Used by the tests,
``rwa dev`` (seeding local chains) and the API's tokenization flow.

    w3 = connect(node.url)
    deployer = (await w3.eth.accounts)[0]
    stack = await deploy_rwa_stack(w3, deployer)
    await transact(stack.registry.functions.registerIdentity(user, onchain_id, 250), deployer)
    await transact(stack.token.functions.mint(user, 10**18), deployer)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address
from web3 import AsyncHTTPProvider, AsyncWeb3
from web3.contract.async_contract import AsyncContract, AsyncContractConstructor, AsyncContractFunction
from web3.exceptions import ContractLogicError
from web3.logs import DISCARD
from web3.types import Hash32, TxParams, TxReceipt  # Hash32: eth_typing's, which web3 depends on

from chains.contracts import load_artifact

Sender = str | LocalAccount
Transactable = AsyncContractFunction | AsyncContractConstructor


class TransactionReverted(RuntimeError):
    """A transaction was rejected by the EVM (at gas estimation or in the mined receipt)."""

    def __init__(self, description: str, reason: str | None, receipt: TxReceipt | None = None) -> None:
        super().__init__(f"{description} reverted: {reason or 'no reason given'}")
        self.reason = reason
        self.receipt = receipt


@dataclass(frozen=True)
class RwaStack:
    """An identity registry, a security token wired to it, and a stablecoin, on one chain."""

    registry: AsyncContract
    token: AsyncContract
    stablecoin: AsyncContract


def connect(url: str, timeout: float = 60.0) -> AsyncWeb3:
    return AsyncWeb3(AsyncHTTPProvider(url, request_kwargs={"timeout": timeout}))


def sender_address(sender: Sender) -> str:
    return sender.address if isinstance(sender, LocalAccount) else to_checksum_address(sender)


def _describe(fn: Transactable) -> str:
    name = getattr(fn, "fn_name", None)
    return f"{name}()" if name else "contract deployment"


def _revert_reason(exc: ContractLogicError) -> str:
    text = str(exc.message or exc)
    return text.removeprefix("execution reverted: ").removeprefix("execution reverted")


async def send(w3: AsyncWeb3, fn: Transactable, sender: Sender, tx: dict[str, Any] | None = None) -> bytes:
    """Send without waiting: returns the tx hash. Raises TransactionReverted if gas estimation reverts."""
    params = cast(TxParams, {"from": sender_address(sender), **(tx or {})})  # tx: TxParams keys (gas, nonce, value)
    try:
        if isinstance(sender, LocalAccount):
            if "nonce" not in params:
                params["nonce"] = await w3.eth.get_transaction_count(sender.address, "pending")
            built = await fn.build_transaction(params)
            # eth-account annotates a plain dict, web3 returns the TxParams TypedDict of the same keys
            signed = sender.sign_transaction(built)  # type: ignore[arg-type]  # TypedDict where a dict is annotated
            return bytes(await w3.eth.send_raw_transaction(signed.raw_transaction))
        return bytes(await fn.transact(params))
    except ContractLogicError as exc:
        raise TransactionReverted(_describe(fn), _revert_reason(exc)) from exc


async def transact(
    fn: Transactable, sender: Sender, tx: dict[str, Any] | None = None, timeout: float = 60.0
) -> TxReceipt:
    """Send ``fn`` from ``sender``, wait for the receipt and raise TransactionReverted on failure."""
    w3: AsyncWeb3 = fn.w3
    tx_hash = await send(w3, fn, sender, tx)
    receipt = await w3.eth.wait_for_transaction_receipt(Hash32(tx_hash), timeout=timeout, poll_latency=0.05)
    if receipt["status"] != 1:
        raise TransactionReverted(_describe(fn), f"status 0 in tx {tx_hash.hex()}", receipt)
    return receipt


async def deploy(w3: AsyncWeb3, name: str, deployer: Sender, *args: Any) -> AsyncContract:
    """Deploy artifact ``name`` with constructor ``args`` and return the bound contract."""
    artifact = load_artifact(name)
    factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    receipt = await transact(factory.constructor(*args), deployer)
    address = receipt["contractAddress"]
    if address is None:  # a successful creation transaction always has one
        raise RuntimeError(
            f"deploying {name}: the receipt of {receipt['transactionHash'].hex()} has no contractAddress"
        )
    return w3.eth.contract(address=address, abi=artifact["abi"])


def at(w3: AsyncWeb3, name: str, address: str) -> AsyncContract:
    """Bind an already deployed contract of artifact ``name``."""
    return w3.eth.contract(address=to_checksum_address(address), abi=load_artifact(name)["abi"])


async def deploy_identity_registry(w3: AsyncWeb3, deployer: Sender, agents: tuple[str, ...] = ()) -> AsyncContract:
    """Deploy an IdentityRegistry owned by ``deployer``; the deployer and ``agents`` become agents."""
    registry = await deploy(w3, "IdentityRegistry", deployer)
    for agent in (sender_address(deployer), *agents):
        await transact(registry.functions.addAgent(to_checksum_address(agent)), deployer)
    return registry


async def deploy_security_token(
    w3: AsyncWeb3,
    deployer: Sender,
    name: str,
    symbol: str,
    decimals: int,
    registry_address: str,
    agents: tuple[str, ...] = (),
) -> AsyncContract:
    """Deploy a SecurityToken bound to ``registry_address``; the deployer and ``agents`` become agents."""
    token = await deploy(w3, "SecurityToken", deployer, name, symbol, decimals, to_checksum_address(registry_address))
    for agent in (sender_address(deployer), *agents):
        await transact(token.functions.addAgent(to_checksum_address(agent)), deployer)
    return token


async def deploy_stablecoin(
    w3: AsyncWeb3, deployer: Sender, name: str = "USD Coin", symbol: str = "USDC"
) -> AsyncContract:
    """Deploy a 6-decimal Stablecoin owned (and mintable) by ``deployer``."""
    return await deploy(w3, "Stablecoin", deployer, name, symbol)


async def deploy_rwa_stack(
    w3: AsyncWeb3,
    deployer: Sender,
    token_name: str = "Tokenized Real Estate Fund",
    token_symbol: str = "TREF",
    token_decimals: int = 18,
) -> RwaStack:
    """Registry + token + stablecoin. The deployer is an agent of registry and token, and the token
    is an agent of the registry (recoveryAddress re-registers the recovered investor)."""
    registry = await deploy_identity_registry(w3, deployer)
    token = await deploy_security_token(w3, deployer, token_name, token_symbol, token_decimals, registry.address)
    await transact(registry.functions.addAgent(token.address), deployer)
    stablecoin = await deploy_stablecoin(w3, deployer)
    return RwaStack(registry=registry, token=token, stablecoin=stablecoin)


def receipt_events(contract: AsyncContract, event: str, receipt: TxReceipt) -> list[dict[str, Any]]:
    """The ``event`` logs of ``contract`` in ``receipt`` as plain arg dicts, in log order
    (logs of other events or contracts are skipped silently)."""
    processed = getattr(contract.events, event)().process_receipt(receipt, errors=DISCARD)
    return [dict(log["args"]) for log in processed if log["address"] == contract.address]
