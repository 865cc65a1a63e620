"""Wallet linking by a signed Sign-In with Ethereum (EIP-4361) message, personal_sign (EIP-191).

`challenge` stores the exact message under (user, address) in Redis with a TTL; `link` takes it back with
GETDEL, so each nonce is usable once whatever the outcome, parses it and checks its fields (domain, address, chain
id, nonce, expiry: resolvers/identity/siwe.py), then the signer: an externally owned account by recovering the
signature, a contract wallet (Safe and other EIP-1271 accounts) by asking its `isValidSignature` on the message's
chain. The Redis TTL outlives the message expiry by a grace period so a late answer reads "expired", not "unknown".
"""

from __future__ import annotations

import json
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from eth_utils import is_address, is_checksum_address, to_checksum_address
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from chains.errors import RpcError, UnknownChain
from chains.registry import get_chain
from chains.rpc import RpcClient
from core.errors import BadUserInput, Conflict, NotFound
from core.rate_limit import hit
from models.identity import Wallet
from resolvers import unit_of_work
from resolvers.audit import record
from resolvers.context import Context
from resolvers.identity import eip1271, siwe
from resolvers.identity.registry_sync import sync_wallets

CHALLENGE_TTL = timedelta(minutes=10)
_REDIS_GRACE_S = 300
CHALLENGES_PER_MINUTE = 30
MAX_SIGNATURE_BYTES = 65 * 32  # a Safe with many owners concatenates 65 bytes per owner


class ChallengeNotFound(BadUserInput):
    """No pending challenge for this address: never issued, already used, or long gone."""

    def __init__(self) -> None:
        super().__init__(
            "no pending challenge for this address; request a new one", field="address", reason="CHALLENGE_NOT_FOUND"
        )


class ChallengeExpired(BadUserInput):
    def __init__(self) -> None:
        super().__init__("the challenge expired; request a new one", field="signature", reason="CHALLENGE_EXPIRED")


class ChallengeForAnotherDomain(BadUserInput):
    """The challenge names a domain other than SIWE_DOMAIN (issued before it was set or changed): no pending
    challenge is valid here, so the code is CHALLENGE_NOT_FOUND."""

    def __init__(self) -> None:
        super().__init__(
            "the challenge was issued for another domain; request a new one",
            field="address",
            reason="CHALLENGE_NOT_FOUND",
        )


class SignatureInvalid(BadUserInput):
    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message, field="signature", reason=reason)


@dataclass(frozen=True)
class WalletChallenge:
    domain: str
    address: str
    nonce: str
    issued_at: datetime
    expires_at: datetime
    message: str
    chain_id: int
    uri: str


def utcnow() -> datetime:
    return datetime.now(UTC)


def checksum(address: str) -> str:
    """EIP-55 form of a 0x address; BAD_USER_INPUT for anything else (including a wrong mixed-case checksum)."""
    address = address.strip()
    body = address[2:]
    mixed_case = body != body.lower() and body != body.upper()
    if not (len(address) == 42 and address[:2] == "0x" and is_address(address)) or (
        mixed_case and not is_checksum_address(address)
    ):
        raise BadUserInput("address must be a 0x-prefixed 20-byte hex address (EIP-55 if mixed case)", field="address")
    return to_checksum_address(address)


def render_message(
    domain: str,
    address: str,
    nonce: str,
    issued_at: datetime,
    expires_at: datetime,
    chain_id: int = 1,
    uri: str | None = None,
) -> str:
    return siwe.SiweMessage(
        domain=domain,
        address=address,
        statement=siwe.STATEMENT,
        uri=uri or f"https://{domain}",
        chain_id=chain_id,
        nonce=nonce,
        issued_at=issued_at,
        expiration_time=expires_at,
    ).render()


def _key(ctx: Context, user_id: uuid.UUID, address: str) -> str:
    return ctx.services.keys("wallet-challenge", user_id, address)


_HOST = re.compile(r"^[A-Za-z0-9.\-]{1,253}(?::\d{1,5})?$")
_LOOPBACK = ("localhost", "127.0.0.1")


def _domain(ctx: Context) -> str:
    """The host wallets show the user: SIWE_DOMAIN (required in production). Unset (development, tests): the host the
    user is talking to, from the Host header, which whoever sends the request chooses; anything odd there falls back
    to a constant."""
    if ctx.settings.siwe_domain:
        return ctx.settings.siwe_domain
    host = (ctx.request.headers.get("host") or "") if ctx.request is not None else ""
    return host if _HOST.match(host) else "stablerwa"


def _uri(ctx: Context, domain: str) -> str:
    if ctx.settings.siwe_domain:
        return f"{'http' if domain.rsplit(':', 1)[0] in _LOOPBACK else 'https'}://{domain}"
    scheme = ctx.request.url.scheme if ctx.request is not None else "https"
    return f"{'https' if scheme in ('https', 'wss') else 'http'}://{domain}"


def _chain(chain_id: int) -> int:
    try:
        return get_chain(chain_id).chain_id
    except (UnknownChain, ValueError, TypeError):
        raise BadUserInput(f"unsupported chain {chain_id}", field="chainId") from None


async def challenge(ctx: Context, address: str, chain_id: int = 1) -> WalletChallenge:
    user_id = ctx.viewer.require_user()
    address = checksum(address)
    chain_id = _chain(chain_id)
    await hit(
        ctx.services.redis,
        ctx.services.keys("rl", "wallet-challenge", user_id),
        CHALLENGES_PER_MINUTE,
        60,
        "wallet challenges",
    )
    now = utcnow().replace(microsecond=0)
    domain, nonce, expires_at = _domain(ctx), secrets.token_hex(16), now + CHALLENGE_TTL
    uri = _uri(ctx, domain)
    message = render_message(domain, address, nonce, now, expires_at, chain_id, uri)
    stored = {
        "message": message,
        "nonce": nonce,
        "expires_at": expires_at.isoformat(),
        "domain": domain,
        "chain_id": chain_id,
    }
    # a newer challenge for the same address replaces the older one
    await ctx.services.redis.set(
        _key(ctx, user_id, address), json.dumps(stored), ex=int(CHALLENGE_TTL.total_seconds()) + _REDIS_GRACE_S
    )
    session = await ctx.session()
    record(
        session,
        actor_id=user_id,
        action="wallet.challenge",
        target_type="wallet",
        target_id=address,
        request_id=ctx.request_id,
        details={"chainId": chain_id},
    )
    await unit_of_work.commit(session)
    return WalletChallenge(domain, address, nonce, now, expires_at, message, chain_id, uri)


def signature_bytes(signature: str) -> bytes:
    sig = signature.strip()
    try:
        raw = bytes.fromhex(sig[2:] if sig[:2] in ("0x", "0X") else sig)
    except ValueError as exc:
        raise SignatureInvalid("signature must be hex", "SIGNATURE_MALFORMED") from exc
    if not 0 < len(raw) <= MAX_SIGNATURE_BYTES:
        raise SignatureInvalid(f"signature must have 1 to {MAX_SIGNATURE_BYTES} bytes", "SIGNATURE_MALFORMED")
    return raw


def recover_signer(message: str, raw: bytes) -> str | None:
    """The externally owned account that made a 65-byte (r, s, v) signature; None when it is not one."""
    if len(raw) != 65:
        return None
    try:
        from eth_account import Account  # heavy (py_ecc): imported on first use, not at API start
        from eth_account.messages import encode_defunct

        return str(Account.recover_message(encode_defunct(text=message), signature=raw))
    except Exception:  # noqa: BLE001  (eth-keys raises several types for out-of-range r/s/v)
        return None


async def contract_signed(ctx: Context, chain_id: int, address: str, message: str, raw: bytes) -> bool | None:
    """EIP-1271: True/False when `address` is a contract on `chain_id` that accepts/refuses the signature; None
    when it is no contract there, or no RPC endpoint is configured for that chain (nothing to ask)."""
    urls = ctx.settings.rpc_urls(chain_id)
    if not urls:
        return None
    try:
        async with RpcClient(urls, chain_id=chain_id) as rpc:
            if not await eip1271.has_code(rpc, address):
                return None
            return await eip1271.is_valid_signature(rpc, address, message, raw)
    except RpcError as exc:
        raise Conflict(
            f"chain {chain_id} could not be asked whether the contract wallet signed: {type(exc).__name__}; try again",
            field="signature",
            reason="CHAIN_UNAVAILABLE",
        ) from exc


async def link(ctx: Context, address: str, signature: str) -> Wallet:
    user_id = ctx.viewer.require_user()
    address = checksum(address)
    raw = await ctx.services.redis.getdel(_key(ctx, user_id, address))
    if raw is None:
        raise ChallengeNotFound()
    stored = json.loads(raw)
    if datetime.fromisoformat(stored["expires_at"]) <= utcnow():
        raise ChallengeExpired()
    message = siwe.parse(stored["message"])
    chain_id = int(stored.get("chain_id", message.chain_id))
    # the domain the user's wallet showed must be ours: the configured one when set, else the one issued
    domain = ctx.settings.siwe_domain or stored.get("domain", message.domain)
    if message.domain != domain:
        raise ChallengeForAnotherDomain()
    problem = siwe.check(
        message,
        domain=domain,
        address=address,
        chain_id=chain_id,
        nonce=stored["nonce"],
        now=utcnow(),
    )
    if problem is not None:  # the stored message is ours: a mismatch is a bug, never the caller's input
        raise ChallengeNotFound()
    sig = signature_bytes(signature)
    signer = recover_signer(stored["message"], sig)
    if signer != address:
        by_contract = await contract_signed(ctx, chain_id, address, stored["message"], sig)
        if by_contract is None and signer is None:
            raise SignatureInvalid(
                "signature does not verify (65 bytes r, s, v from an account, or what the "
                "contract wallet's isValidSignature accepts)",
                "SIGNATURE_MALFORMED",
            )
        if not by_contract:
            raise SignatureInvalid("the signature was not made by this address", "SIGNER_MISMATCH")
    session = await ctx.session()
    owner = (await session.execute(select(Wallet.user_id).where(Wallet.address == address))).scalar_one_or_none()
    if owner is not None:
        raise _linked_conflict(owner == user_id)
    wallet = Wallet(id=uuid.uuid4(), user_id=user_id, address=address, linked_at=utcnow())
    session.add(wallet)
    try:
        await session.flush()
    except IntegrityError as exc:  # linked concurrently
        await session.rollback()
        raise _linked_conflict(False) from exc
    record(
        session,
        actor_id=user_id,
        action="wallet.link",
        target_type="wallet",
        target_id=address,
        request_id=ctx.request_id,
        details={"nonce": stored["nonce"], "chainId": chain_id, "signer": "EOA" if signer == address else "EIP1271"},
    )
    await sync_wallets(session, [address], actor_id=user_id)  # KYC APPROVED: registered on chain (registry_sync)
    await unit_of_work.commit(session)
    return wallet


def _linked_conflict(mine: bool) -> Conflict:
    if mine:
        return Conflict(
            "this wallet is already linked to your account", field="address", reason="WALLET_ALREADY_LINKED"
        )
    return Conflict("this wallet is linked to another account", field="address", reason="WALLET_LINKED_ELSEWHERE")


async def unlink(ctx: Context, address: str) -> bool:
    user_id = ctx.viewer.require_user()
    address = checksum(address)
    session = await ctx.session()
    deleted = (
        await session.execute(
            delete(Wallet).where(Wallet.address == address, Wallet.user_id == user_id).returning(Wallet.id)
        )
    ).scalar_one_or_none()
    if deleted is None:
        raise NotFound("no such wallet on your account", field="address")
    record(
        session,
        actor_id=user_id,
        action="wallet.unlink",
        target_type="wallet",
        target_id=address,
        request_id=ctx.request_id,
    )
    await sync_wallets(session, [address], actor_id=user_id)  # deleted from the identity registries
    await unit_of_work.commit(session)
    return True


async def wallets_of(session: AsyncSession, user_id: uuid.UUID) -> list[Wallet]:
    return list(
        (
            await session.execute(select(Wallet).where(Wallet.user_id == user_id).order_by(Wallet.linked_at, Wallet.id))
        ).scalars()
    )
