"""Wallets linked by a signed challenge. Types and fields only; the work is in resolvers/identity/wallets."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

import strawberry
from strawberry.dataloader import DataLoader
from strawberry.types import Info

from models.identity import Wallet as WalletModel
from resolvers.assets.loaders import db_lock
from resolvers.identity import verifications, wallets
from schema.mutations import mutation
from schema.node import Node, register_node
from schema.permissions import authenticated


@strawberry.type(
    description=(
        "The wallet's standing in one identity registry of the platform's security tokens, as indexed from the chain."
    )
)
class WalletVerification:
    chain_id: int
    registry: str = strawberry.field(description="The identity registry contract (EIP-55).")
    verified: bool = strawberry.field(description="Listed in the registry (transfers to/from it are allowed).")
    identity: str | None = strawberry.field(description="The on-chain identity it is registered with.")
    country: int | None = strawberry.field(description="ISO 3166-1 numeric country code stored on chain.")
    updated_block: int | None
    pending: bool = strawberry.field(description="A register/delete operation for it is on its way to the chain.")


def _verifications_loader(ctx: Any) -> DataLoader[str, list[verifications.Verification]]:
    """Every wallet of the response in one statement, on the request's session held exclusively (sibling fields
    resolve concurrently on one connection)."""

    async def batch(addresses: list[str]) -> list[list[verifications.Verification]]:
        async with db_lock(ctx) as session:
            found = await verifications.verifications_of(session, list(addresses))
        return [found[a] for a in addresses]

    return DataLoader(load_fn=batch, max_batch_size=500)


@strawberry.type(description="An EVM address linked to the caller; the same address on every chain.")
class Wallet(Node):
    address: str = strawberry.field(description="EIP-55 checksummed")
    linked_at: datetime

    @strawberry.field(
        description=(
            "One entry per identity registry of the platform's security tokens (each chain, each registry): KYC "
            "APPROVED wallets are registered there by the platform's agent, others deleted."
        )
    )
    async def verifications(self, info: Info) -> list[WalletVerification]:
        rows = await info.context.loader("WalletVerificationsLoader", _verifications_loader).load(self.address)
        return [
            WalletVerification(
                chain_id=v.chain_id,
                registry=v.registry,
                verified=v.verified,
                identity=v.identity,
                country=v.country,
                updated_block=v.updated_block,
                pending=v.pending,
            )
            for v in rows
        ]

    @classmethod
    def from_model(cls, w: WalletModel) -> Wallet:
        return cls(id=w.id, address=w.address, linked_at=w.linked_at)


@strawberry.type(
    description=(
        "A Sign-In with Ethereum (EIP-4361) message linking the wallet: sign `message` with it (personal_sign / "
        "EIP-191), then call linkWallet. Contract wallets (Safe and other EIP-1271 accounts) sign it as they sign any "
        "message; the API asks their isValidSignature on `chainId`."
    )
)
class WalletChallenge:
    domain: str = strawberry.field(description="The host the message was issued for (EIP-4361 domain).")
    address: str = strawberry.field(description="The wallet, EIP-55 checksummed.")
    chain_id: int = strawberry.field(description="EIP-4361 Chain ID: where a contract wallet's signature is checked.")
    uri: str = strawberry.field(description="EIP-4361 URI: the API the wallet is linked to.")
    nonce: str = strawberry.field(description="Single use; a new challenge for the address replaces it.")
    issued_at: datetime
    expires_at: datetime
    message: str = strawberry.field(description="The exact EIP-4361 text to sign.")


@strawberry.type
class Query:
    @strawberry.field(extensions=authenticated(), description="The caller's linked wallets.")
    async def my_wallets(self, info: Info) -> list[Wallet]:
        rows = await wallets.wallets_of(await info.context.session(), info.context.viewer.require_user())
        return [Wallet.from_model(w) for w in rows]


@strawberry.type
class Mutation:
    @mutation(
        extensions=authenticated(),
        description=(
            "Start linking `address`: returns the EIP-4361 message to sign. A malformed address or an unsupported "
            "chain is a BAD_USER_INPUT payload error."
        ),
        result="challenge",
    )
    async def wallet_challenge(
        self,
        info: Info,
        address: str,
        chain_id: Annotated[
            int,
            strawberry.argument(
                description=(
                    "The chain of a contract wallet (EIP-1271), whose isValidSignature is asked; any supported chain for "
                    "an account."
                )
            ),
        ] = 1,
    ) -> WalletChallenge:
        c = await wallets.challenge(info.context, address, chain_id)
        return WalletChallenge(
            domain=c.domain,
            address=c.address,
            chain_id=c.chain_id,
            uri=c.uri,
            nonce=c.nonce,
            issued_at=c.issued_at,
            expires_at=c.expires_at,
            message=c.message,
        )

    @mutation(
        extensions=authenticated(),
        description=(
            "Finish linking: the signature of the challenge message by `address` (65 bytes r, s, v from an account, or "
            "whatever the contract wallet's EIP-1271 isValidSignature accepts). Expected failures are payload errors "
            "with code CHALLENGE_NOT_FOUND, CHALLENGE_EXPIRED, SIGNATURE_MALFORMED, SIGNER_MISMATCH, "
            "WALLET_LINKED_ELSEWHERE, WALLET_ALREADY_LINKED, CHAIN_UNAVAILABLE or BAD_USER_INPUT (a malformed address)."
        ),
    )
    async def link_wallet(self, info: Info, address: str, signature: str) -> Wallet:
        return Wallet.from_model(await wallets.link(info.context, address, signature))

    @mutation(
        extensions=authenticated(),
        description="Remove one of the caller's wallets (NOT_FOUND when it is not linked to your account).",
    )
    async def unlink_wallet(self, info: Info, address: str) -> bool:
        return await wallets.unlink(info.context, address)


async def load_wallet(info: Info, id: uuid.UUID) -> Wallet | None:
    """`node(id)` for a Wallet: only the user it is linked to sees it (like `myWallets`)."""
    user_id = info.context.viewer.user_id
    if user_id is None:
        return None
    wallet = await (await info.context.session()).get(WalletModel, id)
    return Wallet.from_model(wallet) if wallet is not None and wallet.user_id == user_id else None


register_node("Wallet", "wallets", load_wallet)
