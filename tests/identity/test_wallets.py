"""Wallet linking: the challenge message, EIP-191 signatures, single-use nonces, expiry, ownership."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from sqlalchemy import select, text

from models.identity import AuditLog, Wallet
from resolvers.identity import wallets as wallet_rules

CHALLENGE = """mutation($a: String!) { walletChallenge(address: $a) {
  domain address nonce issuedAt expiresAt message } }"""
LINK = "mutation($a: String!, $s: String!) { linkWallet(address: $a, signature: $s) { id address linkedAt } }"
UNLINK = "mutation($a: String!) { unlinkWallet(address: $a) }"
MY_WALLETS = "{ myWallets { address } }"


def sign(account, message: str) -> str:  # type: ignore[no-untyped-def]
    return "0x" + account.sign_message(encode_defunct(text=message)).signature.hex().removeprefix("0x")


async def challenge(gql, user, address: str) -> dict:  # type: ignore[no-untyped-def,type-arg]
    result = await gql(CHALLENGE, {"a": address}, token=user.token)
    assert "errors" not in result, result
    return result["data"]["walletChallenge"]


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
    assert linked["data"]["linkWallet"]["address"] == account.address
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
    assert "errors" not in await gql(LINK, {"a": account.address, "s": sig}, token=user.token)
    await gql(UNLINK, {"a": account.address}, token=user.token)
    replay = await gql(LINK, {"a": account.address, "s": sig}, token=user.token)
    assert gql.error_code(replay) == "BAD_USER_INPUT"
    assert replay["errors"][0]["extensions"]["reason"] == "CHALLENGE_NOT_FOUND"
    assert (await session.execute(select(Wallet))).first() is None


async def test_wrong_signer_burns_the_nonce(gql, make_user, session):
    user, account, impostor = await make_user(), Account.create(), Account.create()
    issued = await challenge(gql, user, account.address)
    wrong = await gql(LINK, {"a": account.address, "s": sign(impostor, issued["message"])}, token=user.token)
    assert gql.error_code(wrong) == "BAD_USER_INPUT"
    assert wrong["errors"][0]["extensions"]["reason"] == "SIGNER_MISMATCH"
    # the nonce was single-use even though the attempt failed: the right signature is now too late
    right = await gql(LINK, {"a": account.address, "s": sign(account, issued["message"])}, token=user.token)
    assert right["errors"][0]["extensions"]["reason"] == "CHALLENGE_NOT_FOUND"
    assert (await session.execute(select(Wallet))).first() is None


async def test_signature_of_another_message_is_refused(gql, make_user):
    user, account = await make_user(), Account.create()
    issued = await challenge(gql, user, account.address)
    forged = sign(account, issued["message"].replace(issued["nonce"], "0" * 32))
    result = await gql(LINK, {"a": account.address, "s": forged}, token=user.token)
    assert result["errors"][0]["extensions"]["reason"] == "SIGNER_MISMATCH"


async def test_expired_challenge(gql, make_user, monkeypatch):
    user, account = await make_user(), Account.create()
    issued = await challenge(gql, user, account.address)
    later = datetime.now(UTC) + wallet_rules.CHALLENGE_TTL + timedelta(seconds=1)
    monkeypatch.setattr(wallet_rules, "utcnow", lambda: later)
    result = await gql(LINK, {"a": account.address, "s": sign(account, issued["message"])}, token=user.token)
    assert gql.error_code(result) == "BAD_USER_INPUT"
    assert result["errors"][0]["extensions"]["reason"] == "CHALLENGE_EXPIRED"


async def test_challenge_of_one_user_cannot_be_used_by_another(gql, make_user):
    alice, mallory, account = await make_user(), await make_user(), Account.create()
    issued = await challenge(gql, alice, account.address)
    stolen = await gql(LINK, {"a": account.address, "s": sign(account, issued["message"])}, token=mallory.token)
    assert stolen["errors"][0]["extensions"]["reason"] == "CHALLENGE_NOT_FOUND"


async def test_one_wallet_belongs_to_one_user(gql, make_user, session):
    alice, bob, account = await make_user(), await make_user(), Account.create()
    issued = await challenge(gql, alice, account.address)
    await gql(LINK, {"a": account.address, "s": sign(account, issued["message"])}, token=alice.token)

    issued = await challenge(gql, bob, account.address)
    taken = await gql(LINK, {"a": account.address, "s": sign(account, issued["message"])}, token=bob.token)
    assert gql.error_code(taken) == "CONFLICT"
    assert taken["errors"][0]["extensions"]["reason"] == "WALLET_LINKED_ELSEWHERE"
    issued = await challenge(gql, alice, account.address)
    again = await gql(LINK, {"a": account.address, "s": sign(account, issued["message"])}, token=alice.token)
    assert again["errors"][0]["extensions"]["reason"] == "WALLET_ALREADY_LINKED"
    owners = (await session.execute(select(Wallet.user_id))).scalars().all()
    assert owners == [alice.id]
    # bob cannot unlink alice's wallet either
    assert gql.error_code(await gql(UNLINK, {"a": account.address}, token=bob.token)) == "NOT_FOUND"


async def test_unlink(gql, make_user, session):
    user, account = await make_user(), Account.create()
    issued = await challenge(gql, user, account.address)
    await gql(LINK, {"a": account.address, "s": sign(account, issued["message"])}, token=user.token)
    assert (await gql(UNLINK, {"a": account.address.lower()}, token=user.token))["data"]["unlinkWallet"] is True
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
        assert result["errors"][0]["extensions"]["field"] == "address"


@pytest.mark.parametrize("signature", ["0x00", "zz", "0x" + "00" * 65, "0x" + "ab" * 66])
async def test_malformed_signatures(gql, make_user, signature):
    user, account = await make_user(), Account.create()
    await challenge(gql, user, account.address)
    result = await gql(LINK, {"a": account.address, "s": signature}, token=user.token)
    assert gql.error_code(result) == "BAD_USER_INPUT"
    assert result["errors"][0]["extensions"]["reason"] == "SIGNATURE_MALFORMED"


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
