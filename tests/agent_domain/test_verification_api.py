"""GraphQL reads of the on-chain identity side: Token.identityRegistry and Wallet.verifications (indexed state of
every registry of the platform's tokens, with `pending` while an identity operation is in flight); linking a wallet
with approved KYC queues its registration in the same transaction."""

from __future__ import annotations

from datetime import datetime, timezone

from eth_account import Account
from sqlalchemy import select

from models.identity import KycCase, KycStatus
from models.operations import ChainOperation
from models.tokens import IdentityEntry
from tests.identity.test_wallets import LINK, challenge, sign
from tests.trading.factories import make_market

WALLETS = "{ myWallets { address verifications { chainId registry verified identity country pending } } }"


async def test_token_identity_registry_and_wallet_verifications(gql, make_user, session_factory, session):  # type: ignore[no-untyped-def]
    m = await make_market(session_factory)
    user, account = await make_user(), Account.create()
    token = await gql("query($id: UUID!) { token(id: $id) { identityRegistry } }", {"id": str(m.token_id)},
                      token=user.token)
    assert token["data"]["token"]["identityRegistry"] == m.registry
    async with session_factory() as s:
        s.add(KycCase(user_id=user.id, status=KycStatus.APPROVED, country="IT",
                      expires_at=datetime(2100, 1, 1, tzinfo=timezone.utc)))
        await s.commit()
    issued = await challenge(gql, user, account.address)
    linked = await gql(LINK, {"a": account.address, "s": sign(account, issued["message"])}, token=user.token)
    assert "errors" not in linked, linked
    [op] = (await session.execute(select(ChainOperation).where(ChainOperation.kind == "identity.register"))).scalars()
    assert op.args[0] == account.address and op.args[2] == "380" and op.contract == m.registry

    [wallet] = (await gql(WALLETS, token=user.token))["data"]["myWallets"]
    assert wallet["verifications"] == [{"chainId": m.chain_id, "registry": m.registry, "verified": False,
                                        "identity": None, "country": None, "pending": True}]
    # the indexer stored IdentityRegistered
    async with session_factory() as s:
        s.add(IdentityEntry(chain_id=m.chain_id, registry_address=m.registry, investor=account.address,
                            identity=op.args[1], country=380, registered=True, updated_block=7))
        await s.commit()
    [wallet] = (await gql(WALLETS, token=user.token))["data"]["myWallets"]
    assert wallet["verifications"][0] | {"pending": False} == {
        "chainId": m.chain_id, "registry": m.registry, "verified": True, "identity": op.args[1], "country": 380,
        "pending": False}
