"""Wallet linking: the challenge message, EIP-191 signatures, single-use nonces, expiry, ownership."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from sqlalchemy import select, text

from models.identity import AuditLog, Wallet
from resolvers.identity import wallets as wallet_rules

CHALLENGE = """mutation($a: String!) { walletChallenge(input: {address: $a}) {
  challenge { domain address nonce issuedAt expiresAt message } errors { code field message } } }"""
LINK = """mutation($a: String!, $s: String!) { linkWallet(input: {address: $a, signature: $s}) {
  wallet { id address linkedAt } errors { code field message } } }"""
UNLINK = "mutation($a: String!) { unlinkWallet(input: {address: $a}) { ok errors { code field message } } }"
MY_WALLETS = "{ myWallets { address } }"
NODE = "query($id: ID!) { node(id: $id) { __typename id ... on Wallet { address } } }"


def sign(account, message: str) -> str:  # type: ignore[no-untyped-def]
    return "0x" + account.sign_message(encode_defunct(text=message)).signature.hex().removeprefix("0x")


async def challenge(gql, user, address: str) -> dict:  # type: ignore[no-untyped-def,type-arg]
    result = await gql(CHALLENGE, {"a": address}, token=user.token)
    return gql.payload(result, "walletChallenge", "challenge")


async def test_link_with_signature_stores_checksummed(gql, make_user, session, services):
    user, account = await make_user(), Account.create()
    issued = await challenge(gql, user, account.address.lower())
    assert issued["address"] == account.address and account.address in issued["message"]
    assert issued["nonce"] in issued["message"] and issued["domain"] == "testserver"
    assert (
        datetime.fromisoformat(issued["expiresAt"]) - datetime.fromisoformat(issued["issuedAt"])
        == wallet_rules.CHALLENGE_TTL
    )
    ttl = await services.redis.ttl(services.keys("wallet-challenge", user.id, account.address))
    assert 0 < ttl <= wallet_rules.CHALLENGE_TTL.total_seconds() + 300

    linked = await gql(LINK, {"a": account.address.lower(), "s": sign(account, issued["message"])}, token=user.token)
    assert gql.payload(linked, "linkWallet", "wallet")["address"] == account.address
    stored = (await session.execute(text("SELECT address FROM wallets"))).scalar_one()
    assert stored == account.address  # EIP-55 in the database too
    assert (await gql(MY_WALLETS, token=user.token))["data"]["myWallets"] == [{"address": account.address}]
    rows = (
        await session.execute(select(AuditLog.action, AuditLog.target_id, AuditLog.request_id).order_by(AuditLog.id))
    ).all()
    assert [(r.action, r.target_id) for r in rows] == [
        ("wallet.challenge", account.address),
        ("wallet.link", account.address),
    ]
    assert all(r.request_id for r in rows)


async def test_replayed_nonce_is_refused(gql, make_user, session):
    user, account = await make_user(), Account.create()
    issued = await challenge(gql, user, account.address)
    sig = sign(account, issued["message"])
    gql.payload(await gql(LINK, {"a": account.address, "s": sig}, token=user.token), "linkWallet", "wallet")
    await gql(UNLINK, {"a": account.address}, token=user.token)
    replay = await gql(LINK, {"a": account.address, "s": sig}, token=user.token)
    assert gql.error_code(replay) == "CHALLENGE_NOT_FOUND"
    assert (await session.execute(select(Wallet))).first() is None


async def test_wrong_signer_burns_the_nonce(gql, make_user, session):
    user, account, impostor = await make_user(), Account.create(), Account.create()
    issued = await challenge(gql, user, account.address)
    wrong = await gql(LINK, {"a": account.address, "s": sign(impostor, issued["message"])}, token=user.token)
    assert gql.error_code(wrong) == "SIGNER_MISMATCH"
    # the nonce was single-use even though the attempt failed: the right signature is now too late
    right = await gql(LINK, {"a": account.address, "s": sign(account, issued["message"])}, token=user.token)
    assert gql.error_code(right) == "CHALLENGE_NOT_FOUND"
    assert (await session.execute(select(Wallet))).first() is None


async def test_signature_of_another_message_is_refused(gql, make_user):
    user, account = await make_user(), Account.create()
    issued = await challenge(gql, user, account.address)
    forged = sign(account, issued["message"].replace(issued["nonce"], "0" * 32))
    result = await gql(LINK, {"a": account.address, "s": forged}, token=user.token)
    assert gql.error_code(result) == "SIGNER_MISMATCH"


async def test_expired_challenge(gql, make_user, monkeypatch):
    user, account = await make_user(), Account.create()
    issued = await challenge(gql, user, account.address)
    later = datetime.now(UTC) + wallet_rules.CHALLENGE_TTL + timedelta(seconds=1)
    monkeypatch.setattr(wallet_rules, "utcnow", lambda: later)
    result = await gql(LINK, {"a": account.address, "s": sign(account, issued["message"])}, token=user.token)
    assert gql.error_code(result) == "CHALLENGE_EXPIRED"


async def test_challenge_of_one_user_cannot_be_used_by_another(gql, make_user):
    alice, mallory, account = await make_user(), await make_user(), Account.create()
    issued = await challenge(gql, alice, account.address)
    stolen = await gql(LINK, {"a": account.address, "s": sign(account, issued["message"])}, token=mallory.token)
    assert gql.error_code(stolen) == "CHALLENGE_NOT_FOUND"


async def test_one_wallet_belongs_to_one_user(gql, make_user, session):
    alice, bob, account = await make_user(), await make_user(), Account.create()
    issued = await challenge(gql, alice, account.address)
    await gql(LINK, {"a": account.address, "s": sign(account, issued["message"])}, token=alice.token)

    issued = await challenge(gql, bob, account.address)
    taken = await gql(LINK, {"a": account.address, "s": sign(account, issued["message"])}, token=bob.token)
    assert gql.error_code(taken) == "WALLET_LINKED_ELSEWHERE"
    issued = await challenge(gql, alice, account.address)
    again = await gql(LINK, {"a": account.address, "s": sign(account, issued["message"])}, token=alice.token)
    assert gql.error_code(again) == "WALLET_ALREADY_LINKED"
    owners = (await session.execute(select(Wallet.user_id))).scalars().all()
    assert owners == [alice.id]
    # bob cannot unlink alice's wallet either
    assert gql.error_code(await gql(UNLINK, {"a": account.address}, token=bob.token)) == "NOT_FOUND"


async def test_unlink(gql, make_user, session):
    user, account = await make_user(), Account.create()
    issued = await challenge(gql, user, account.address)
    await gql(LINK, {"a": account.address, "s": sign(account, issued["message"])}, token=user.token)
    assert gql.payload(await gql(UNLINK, {"a": account.address.lower()}, token=user.token), "unlinkWallet", "ok")
    assert (await gql(MY_WALLETS, token=user.token))["data"]["myWallets"] == []
    assert gql.error_code(await gql(UNLINK, {"a": account.address}, token=user.token)) == "NOT_FOUND"
    actions = (await session.execute(select(AuditLog.action).order_by(AuditLog.id))).scalars().all()
    assert actions == ["wallet.challenge", "wallet.link", "wallet.unlink"]


@pytest.mark.parametrize(
    "address",
    [
        "0x123",
        "not-an-address",
        "0xZZZZ00000000000000000000000000000000dEaD",
        "000000000000000000000000000000000000dEaD00",
        "0x000000000000000000000000000000000000DEAd",  # mixed case with a wrong EIP-55 checksum
    ],
)
async def test_bad_addresses(gql, make_user, address):
    user = await make_user()
    for doc, variables in ((CHALLENGE, {"a": address}), (LINK, {"a": address, "s": "0x00"}), (UNLINK, {"a": address})):
        result = await gql(doc, variables, token=user.token)
        assert gql.error_code(result) == "BAD_USER_INPUT", (doc, result)
        [payload] = result["data"].values()
        assert payload["errors"][0]["field"] == ["input", "address"]


@pytest.mark.parametrize("signature", ["0x00", "zz", "0x" + "00" * 65, "0x" + "ab" * 66])
async def test_malformed_signatures(gql, make_user, signature):
    user, account = await make_user(), Account.create()
    await challenge(gql, user, account.address)
    result = await gql(LINK, {"a": account.address, "s": signature}, token=user.token)
    assert gql.error_code(result) == "SIGNATURE_MALFORMED"


async def test_anonymous_callers_are_refused(gql):
    address = Account.create().address
    assert gql.error_code(await gql(CHALLENGE, {"a": address})) == "UNAUTHENTICATED"
    assert gql.error_code(await gql(MY_WALLETS)) == "UNAUTHENTICATED"


async def test_challenges_are_rate_limited_per_user(gql, make_user):
    user, address = await make_user(), Account.create().address
    codes = [
        gql.error_code(await gql(CHALLENGE, {"a": address}, token=user.token))
        for _ in range(wallet_rules.CHALLENGES_PER_MINUTE + 1)
    ]
    assert codes[:-1] == [None] * wallet_rules.CHALLENGES_PER_MINUTE and codes[-1] == "RATE_LIMITED"


async def test_node_returns_a_wallet_to_its_owner_only(gql, make_user):
    user, other, account = await make_user(), await make_user(), Account.create()
    issued = await challenge(gql, user, account.address)
    linked = await gql(LINK, {"a": account.address, "s": sign(account, issued["message"])}, token=user.token)
    wallet_id = gql.payload(linked, "linkWallet", "wallet")["id"]
    mine = (await gql(NODE, {"id": wallet_id}, token=user.token))["data"]["node"]
    assert mine == {"__typename": "Wallet", "id": wallet_id, "address": account.address}
    for token in (other.token, None):
        hidden = await gql(NODE, {"id": wallet_id}, token=token)
        assert "errors" not in hidden and hidden["data"]["node"] is None
