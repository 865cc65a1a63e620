"""Tokenize an APPROVED asset on one chain: register an existing token contract (checked with eth_call) or
deploy the project's SecurityToken with the deployer key. Synchronous: the mutation waits for the receipt.

    APPROVED -(commit)-> TOKENIZING -(chain work)-> ACTIVE + tokens row   (or back to APPROVED on failure)

The TOKENIZING state is committed before any chain work so a second concurrent call gets CONFLICT. The
tokens row carries start_block = the deployment block, so the indexer starts following it from there.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from eth_abi import decode
from eth_utils import is_address, to_checksum_address
from redis.exceptions import LockError
from sqlalchemy.exc import IntegrityError

from chains.contracts import load_artifact
from chains.errors import RpcError, UnknownChain
from chains.registry import get_chain
from chains.rpc import RpcClient
from core.errors import AppError, BadUserInput, Conflict
from core.settings import Environment, Settings
from models.assets import AssetStatus
from models.tokens import Token, TokenKind
from resolvers import unit_of_work
from resolvers.assets import lifecycle
from resolvers.assets.assets import AssetRow, lock_asset, row_of
from resolvers.audit import record
from resolvers.context import Context

log = logging.getLogger("rwa.tokenization")

# anvil's first dev account: the default deployer outside production
ANVIL_DEV_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
SELECTORS = {
    "name": "0x06fdde03",
    "symbol": "0x95d89b41",
    "decimals": "0x313ce567",
    "totalSupply": "0x18160ddd",
    "paused": "0x5c975abb",
    "identityRegistry": "0x134e18f4",
}


@dataclass(frozen=True)
class TokenFacts:
    address: str
    name: str
    symbol: str
    decimals: int
    total_supply: int
    paused: bool
    identity_registry: str | None
    start_block: int


@dataclass(frozen=True)
class DeployRequest:
    name: str
    symbol: str
    decimals: int = 18
    identity_registry: str | None = None  # None: deploy a fresh IdentityRegistry too


class ChainWorkFailed(Conflict):
    """The chain refused or could not be reached; the asset went back to APPROVED."""


def deployer_key(settings: Settings) -> str:
    if settings.deployer_private_key is not None:
        return settings.deployer_private_key.get_secret_value()
    if settings.env is Environment.PRODUCTION:
        raise Conflict("DEPLOYER_PRIVATE_KEY is not configured")
    return ANVIL_DEV_KEY


def agent_addresses(settings: Settings, chain_id: int) -> list[str]:
    """The on-chain agent's signer address on `chain_id` (AGENT_SIGNER_ADDRESS, or the address of AGENT_PRIVATE_KEY):
    made an agent of what a tokenization deploys, so the platform's agent can mint, settle and register
    identities there. Empty when no agent is configured (the deployer is then the only agent)."""
    address = settings.chain_value("AGENT_SIGNER_ADDRESS", chain_id)
    if address is None and (key := settings.chain_value("AGENT_PRIVATE_KEY", chain_id)) is not None:
        from eth_account import Account

        try:
            address = Account.from_key(key).address
        except Exception:  # noqa: BLE001  (never echo a key; the agent itself reports a bad one)
            return []
    return [to_checksum_address(address)] if address and is_address(address) else []


def rpc_urls(settings: Settings, chain_id: int) -> list[str]:
    try:
        get_chain(chain_id)
    except UnknownChain as exc:
        raise BadUserInput(f"unsupported chain {chain_id}", field="chainId") from exc
    urls = settings.rpc_urls(chain_id)
    if not urls:
        raise Conflict(f"no RPC endpoint configured for chain {chain_id} (RPC_URLS_{chain_id})", chainId=chain_id)
    return urls


def _string(raw: str) -> str:
    data = bytes.fromhex(raw.removeprefix("0x"))
    if len(data) == 32:  # some old tokens return bytes32
        return data.rstrip(b"\0").decode("utf-8", "replace")
    return str(decode(["string"], data)[0])


def _uint(raw: str) -> int:
    data = bytes.fromhex(raw.removeprefix("0x"))
    if len(data) < 32:
        raise ValueError("short return data")
    return int.from_bytes(data[:32], "big")


async def _optional(rpc: RpcClient, address: str, fn: str) -> str | None:
    try:
        out = await rpc.eth_call(address, SELECTORS[fn])
    except RpcError:
        return None
    return out if out and out != "0x" else None


async def _deployment_block(rpc: RpcClient, address: str, head: int) -> int:
    """First block with code at `address` (binary search over eth_getCode; log2(head) calls)."""
    lo, hi = 0, head
    while lo < hi:
        mid = (lo + hi) // 2
        code = await rpc.call("eth_getCode", [address, hex(mid)])
        if code and code != "0x":
            hi = mid
        else:
            lo = mid + 1
    return lo


async def inspect_contract(rpc: RpcClient, address: str) -> TokenFacts:
    """Check an existing contract: code present; decimals, symbol and totalSupply readable."""
    if not is_address(address):
        raise BadUserInput("not an EVM address", field="address")
    address = to_checksum_address(address)
    head = await rpc.block_number()
    code = await rpc.call("eth_getCode", [address, "latest"])
    if not code or code == "0x":
        raise BadUserInput("no contract code at this address on the chain", field="address")
    try:
        symbol = _string(await rpc.eth_call(address, SELECTORS["symbol"]))
        decimals = _uint(await rpc.eth_call(address, SELECTORS["decimals"]))
        supply = _uint(await rpc.eth_call(address, SELECTORS["totalSupply"]))
    except (RpcError, ValueError, Exception) as exc:  # revert, empty or malformed return data
        if isinstance(exc, AppError):
            raise
        raise BadUserInput(f"contract does not answer decimals/symbol/totalSupply: {exc}", field="address") from exc
    if decimals > 36:
        raise BadUserInput("contract reports more than 36 decimals", field="address")
    name_raw = await _optional(rpc, address, "name")
    paused_raw = await _optional(rpc, address, "paused")
    registry_raw = await _optional(rpc, address, "identityRegistry")
    registry = to_checksum_address("0x" + registry_raw[-40:]) if registry_raw and len(registry_raw) >= 42 else None
    return TokenFacts(
        address=address,
        name=_string(name_raw)[:100] if name_raw else "",
        symbol=symbol[:32],
        decimals=decimals,
        total_supply=supply,
        paused=bool(paused_raw and _uint(paused_raw)),
        identity_registry=registry,
        start_block=await _deployment_block(rpc, address, head),
    )


# A TOKENIZING asset whose request ended without an outcome (the API process was killed during the deployment)
# stayed TOKENIZING: tokenizeAsset refused it (INVALID_STATE) and nothing else moved it. After this long (well past
# a deployment's receipt waits) a new tokenizeAsset gives the old attempt up and starts again.
STALE_TOKENIZING = timedelta(minutes=30)

# A deployment sends several transactions from the deployer key, each with the account's next nonce read from the
# node: two at once (two issuers, or API processes) read the same nonce and one failed with "nonce too low" or
# "replacement transaction underpriced" (CONFLICT, the asset back to APPROVED). One deployment per key and chain at a
# time, in every API process. The lock lives DEPLOY_LOCK_TTL_S and its holder renews it while it deploys: a process
# that dies holding it delays the next deployment by that much at most.
DEPLOY_LOCK_TTL_S = 30
DEPLOY_LOCK_WAIT_S = 600


@asynccontextmanager
async def deployer_turn(ctx: Context, chain_id: int, key: str) -> AsyncIterator[None]:
    from eth_account import Account  # heavy (py_ecc): loaded on the first deployment, not at API start

    address = Account.from_key(key).address
    name = ctx.services.keys("lock", "deployer", chain_id, address)
    lock = ctx.services.redis.lock(name, timeout=DEPLOY_LOCK_TTL_S, blocking_timeout=DEPLOY_LOCK_WAIT_S)
    if not await lock.acquire():
        raise Conflict(f"other deployments on chain {chain_id} have held the deployer for {DEPLOY_LOCK_WAIT_S} s")

    async def renew() -> None:
        try:
            while True:
                await asyncio.sleep(DEPLOY_LOCK_TTL_S / 3)
                await lock.reacquire()
        except (LockError, ConnectionError, OSError) as exc:  # the finally below reports a lost lock
            log.warning("deployer lock on chain %s not renewed: %r", chain_id, exc)

    renewing = asyncio.create_task(renew())
    try:
        yield
    finally:
        renewing.cancel()
        try:
            await lock.release()
        except LockError:  # lost meanwhile (Redis unreachable while renewing): nothing left to release
            log.warning("deployer lock on chain %s was lost before the deployment ended", chain_id)


async def deploy_token(url: str, key: str, req: DeployRequest, agents: list[str] | None = None) -> TokenFacts:
    """Deploy (registry +) SecurityToken from the deployer key and wait for the receipts; `agents` (the platform's
    agent signer) become agents of the token and of the registry it deployed."""
    from eth_account import Account  # heavy (py_ecc): loaded on the first deployment, not at API start

    from chains.deploy import connect

    account = Account.from_key(key)
    w3 = connect(url)
    try:  # the provider's aiohttp session must be closed, else "Unclosed client session" is logged later
        return await _deploy(w3, account, req, agents)
    finally:
        await w3.provider.disconnect()


async def _deploy(w3: Any, account: Any, req: DeployRequest, agents: list[str] | None) -> TokenFacts:
    from chains.deploy import at, deploy_identity_registry, transact

    registry = req.identity_registry
    if registry is None:
        registry = (await deploy_identity_registry(w3, account)).address
    artifact = load_artifact("SecurityToken")
    factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    receipt = await transact(
        factory.constructor(req.name, req.symbol, req.decimals, to_checksum_address(registry)), account
    )
    token = w3.eth.contract(address=receipt["contractAddress"], abi=artifact["abi"])
    await transact(token.functions.addAgent(account.address), account)
    extra = [a for a in (agents or []) if a != account.address]
    for agent in extra:
        await transact(token.functions.addAgent(agent), account)
    if req.identity_registry is None:  # the token must be an agent of its own registry (recovery re-registers)
        fresh = at(w3, "IdentityRegistry", registry)
        await transact(fresh.functions.addAgent(token.address), account)
        for agent in extra:
            await transact(fresh.functions.addAgent(agent), account)
    return TokenFacts(
        address=to_checksum_address(token.address),
        name=req.name,
        symbol=req.symbol,
        decimals=req.decimals,
        total_supply=0,
        paused=False,
        identity_registry=to_checksum_address(registry),
        start_block=int(receipt["blockNumber"]),
    )


def _check_deploy(req: DeployRequest) -> DeployRequest:
    if not 1 <= len(req.name.strip()) <= 64:
        raise BadUserInput("token name must have 1 to 64 characters", field="name")
    if not 1 <= len(req.symbol.strip()) <= 32:
        raise BadUserInput("token symbol must have 1 to 32 characters", field="symbol")
    if not 0 <= req.decimals <= 18:
        raise BadUserInput("decimals must be between 0 and 18", field="decimals")
    if req.identity_registry is not None and not is_address(req.identity_registry):
        raise BadUserInput("identityRegistry is not an EVM address", field="identityRegistry")
    return req


async def tokenize_asset(
    ctx: Context, asset_id: uuid.UUID, chain_id: int, *, address: str | None = None, deploy: DeployRequest | None = None
) -> tuple[AssetRow, uuid.UUID]:
    """Returns the ACTIVE asset and the new token's id."""
    if (address is None) == (deploy is None):
        raise BadUserInput("pass either an existing contract address or deployment parameters", field="address")
    if deploy is not None:
        deploy = _check_deploy(deploy)
    urls = rpc_urls(ctx.settings, chain_id)
    user_id, roles = ctx.viewer.require_user(), ctx.viewer.roles
    session = await ctx.session()
    asset = await lock_asset(session, asset_id, user_id, roles)
    if asset.status is AssetStatus.TOKENIZING and asset.updated_at < datetime.now(UTC) - STALE_TOKENIZING:
        # the request that started it never finished (its API process died mid-deployment) and no other call
        # could move the asset on: given up as a failed tokenization would be, then tried again
        await lifecycle.apply(
            session, asset, "abandon_tokens", user_id, roles, reason="stale: the tokenizing request never finished"
        )
    await lifecycle.apply(session, asset, "tokenize", user_id, roles)
    record(
        session,
        actor_id=user_id,
        action="asset.tokenize",
        target_type="asset",
        target_id=asset.id,
        request_id=ctx.request_id,
        details={"chainId": chain_id, "mode": "register" if address else "deploy"},
    )
    # durable before the RPC calls: releases the asset's row lock during the deploy; TOKENIZING is the record
    await session.commit()

    try:
        if address is not None:
            async with RpcClient(urls, chain_id=chain_id) as rpc:
                await rpc.verify_chain_id()
                facts = await inspect_contract(rpc, address)
        else:
            assert deploy is not None
            key = deployer_key(ctx.settings)
            async with deployer_turn(ctx, chain_id, key):
                facts = await deploy_token(urls[0], key, deploy, agent_addresses(ctx.settings, chain_id))
        token_id = await _confirm(ctx, asset_id, chain_id, facts)
    except Exception as exc:
        await session.rollback()
        await _abandon(ctx, asset_id, str(exc) if isinstance(exc, AppError) else type(exc).__name__)
        if isinstance(exc, AppError):
            raise
        log.warning("tokenization of %s on chain %s failed: %r", asset_id, chain_id, exc)
        raise ChainWorkFailed(
            f"chain {chain_id} refused or could not be reached: {type(exc).__name__}", chainId=chain_id
        ) from exc
    asset = await lock_asset(session, asset_id, user_id, roles)
    await unit_of_work.commit(session)
    return row_of(asset), token_id


async def _confirm(ctx: Context, asset_id: uuid.UUID, chain_id: int, facts: TokenFacts) -> uuid.UUID:
    user_id, roles = ctx.viewer.require_user(), ctx.viewer.roles
    session = await ctx.session()
    asset = await lock_asset(session, asset_id, user_id, roles)
    token = Token(
        id=uuid.uuid4(),
        chain_id=chain_id,
        address=facts.address,
        kind=TokenKind.SECURITY,
        asset_id=asset.id,
        name=facts.name,
        symbol=facts.symbol,
        decimals=facts.decimals,
        total_supply=facts.total_supply,
        paused=facts.paused,
        identity_registry=facts.identity_registry,
        start_block=facts.start_block,
    )
    session.add(token)
    await lifecycle.apply(session, asset, "confirm_tokens", user_id, roles)
    record(
        session,
        actor_id=user_id,
        action="asset.tokens_confirmed",
        target_type="asset",
        target_id=asset.id,
        request_id=ctx.request_id,
        details={"chainId": chain_id, "address": facts.address, "startBlock": facts.start_block},
    )
    try:
        # durable at once: the contract is on chain; a failure later in the unit must not lose its record
        await session.commit()
    except IntegrityError as exc:
        raise Conflict("this token contract is already registered", field="address") from exc
    return token.id


async def _abandon(ctx: Context, asset_id: uuid.UUID, reason: str) -> None:
    user_id, roles = ctx.viewer.require_user(), ctx.viewer.roles
    session = await ctx.session()
    asset = await lock_asset(session, asset_id, user_id, roles)
    await lifecycle.apply(session, asset, "abandon_tokens", user_id, roles, reason[:500])
    record(
        session,
        actor_id=user_id,
        action="asset.tokenize_failed",
        target_type="asset",
        target_id=asset.id,
        request_id=ctx.request_id,
        details={"reason": reason[:500]},
    )
    # durable even if the tokenization then fails (it raises next): the asset must leave TOKENIZING
    await session.commit()
