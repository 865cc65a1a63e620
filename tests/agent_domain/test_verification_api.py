"""GraphQL reads of the on-chain identity side: Token.identityRegistry and Wallet.verifications (indexed state of
every registry of the platform's tokens, with `pending` while an identity operation is in flight); linking a wallet
with approved KYC queues its registration in the same transaction."""

from __future__ import annotations

from datetime import UTC, datetime

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
    token = await gql(
        "query($id: UUID!) { token(id: $id) { identityRegistry } }", {"id": str(m.token_id)}, token=user.token
    )
    assert token["data"]["token"]["identityRegistry"] == m.registry
    async with session_factory() as s:
        s.add(
            KycCase(
                user_id=user.id,
                status=KycStatus.APPROVED,
                country="IT",
                expires_at=datetime(2100, 1, 1, tzinfo=UTC),
            )
        )
        await s.commit()
    issued = await challenge(gql, user, account.address)
    linked = await gql(LINK, {"a": account.address, "s": sign(account, issued["message"])}, token=user.token)
    gql.payload(linked, "linkWallet", "wallet")
    [op] = (await session.execute(select(ChainOperation).where(ChainOperation.kind == "identity.register"))).scalars()
    assert op.args[0] == account.address and op.args[2] == "380" and op.contract == m.registry

    [wallet] = (await gql(WALLETS, token=user.token))["data"]["myWallets"]
    assert wallet["verifications"] == [
        {
            "chainId": m.chain_id,
            "registry": m.registry,
            "verified": False,
            "identity": None,
            "country": None,
            "pending": True,
        }
    ]
    # the indexer stored IdentityRegistered
    async with session_factory() as s:
        s.add(
            IdentityEntry(
                chain_id=m.chain_id,
                registry_address=m.registry,
                investor=account.address,
                identity=op.args[1],
                country=380,
                registered=True,
                updated_block=7,
            )
        )
        await s.commit()
    [wallet] = (await gql(WALLETS, token=user.token))["data"]["myWallets"]
    assert wallet["verifications"][0] | {"pending": False} == {
        "chainId": m.chain_id,
        "registry": m.registry,
        "verified": True,
        "identity": op.args[1],
        "country": 380,
        "pending": False,
    }


async def test_approve_suspend_reapprove_through_the_api(gql, make_user, session_factory, session):  # type: ignore[no-untyped-def]
    from sqlalchemy import update

    from tests.agent_domain.helpers import complete
    from tests.identity.test_kyc import PERSONAL, REVIEW, SUBMIT, SUSPEND

    m = await make_market(session_factory)
    user, officer, account = await make_user(), await make_user(roles=["COMPLIANCE"]), Account.create()
    case = gql.payload(await gql(SUBMIT, {"input": PERSONAL}, token=user.token), "submitKyc", "kycCase")["id"]
    issued = await challenge(gql, user, account.address)
    linked = await gql(LINK, {"a": account.address, "s": sign(account, issued["message"])}, token=user.token)
    gql.payload(linked, "linkWallet", "wallet")

    async def ops() -> list[ChainOperation]:
        return list(
            (
                await session.execute(
                    select(ChainOperation)
                    .where(ChainOperation.kind.like("identity.%"))
                    .order_by(ChainOperation.created_at)
                    .execution_options(populate_existing=True)
                )
            ).scalars()
        )

    assert await ops() == []  # linked, but not approved yet
    gql.payload(await gql(REVIEW, {"id": case, "d": "APPROVE"}, token=officer.token), "reviewKyc", "kycCase")
    [register] = await ops()
    assert register.args[2] == "276"  # PERSONAL's country DE
    gql.payload(await gql(SUSPEND, {"id": case, "r": "sanctions hit"}, token=officer.token), "suspendKyc", "kycCase")
    # lifted
    gql.payload(await gql(REVIEW, {"id": case, "d": "APPROVE"}, token=officer.token), "reviewKyc", "kycCase")
    assert len(await ops()) == 1  # one in flight per (registry, wallet): nothing new yet
    session.add(
        IdentityEntry(
            chain_id=m.chain_id,
            registry_address=m.registry,
            investor=account.address,
            identity=register.args[1],
            country=276,
            registered=True,
            updated_block=9,
        )
    )
    await complete(session, register, confirmed=True)
    assert len(await ops()) == 1  # approved and registered: nothing to do
    gql.payload(await gql(SUSPEND, {"id": case, "r": "again"}, token=officer.token), "suspendKyc", "kycCase")
    [_, delete] = await ops()
    assert delete.kind == "identity.delete" and delete.business_ref.endswith(":2")
    await session.execute(
        update(IdentityEntry).where(IdentityEntry.investor == account.address).values(registered=False)
    )
    gql.payload(await gql(REVIEW, {"id": case, "d": "APPROVE"}, token=officer.token), "reviewKyc", "kycCase")
    await complete(session, delete, confirmed=True)
    kinds = [(o.kind, o.business_ref.rsplit(":", 1)[1]) for o in await ops()]
    assert kinds == [("identity.register", "1"), ("identity.delete", "2"), ("identity.register", "3")]


async def test_verifications_of_several_wallets_in_one_response(gql, make_user, session_factory):  # type: ignore[no-untyped-def]
    """Sibling wallets resolve concurrently on one connection: one batched statement, no interleaved queries."""
    m = await make_market(session_factory)
    other = await make_market(session_factory)
    user = await make_user()
    linked = []
    for _ in range(4):
        account = Account.create()
        issued = await challenge(gql, user, account.address)
        linked_one = await gql(LINK, {"a": account.address, "s": sign(account, issued["message"])}, token=user.token)
        gql.payload(linked_one, "linkWallet", "wallet")
        linked.append(account.address)
    result = await gql(WALLETS, token=user.token)
    assert "errors" not in result, result
    wallets = result["data"]["myWallets"]
    assert sorted(w["address"] for w in wallets) == sorted(linked)
    assert all(
        sorted(v["registry"] for v in w["verifications"]) == sorted([m.registry, other.registry]) for w in wallets
    )
