"""Wallet linking with a Sign-In with Ethereum (EIP-4361) message, and contract wallets (EIP-1271): a minimal
contract wallet deployed on anvil links when its owner key signs, and is refused when another key does."""

from __future__ import annotations

import re
from datetime import UTC
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from sqlalchemy import select

from models.identity import AuditLog, Wallet
from resolvers.identity import siwe

CHALLENGE = """mutation($a: String!, $c: Int!) { walletChallenge(input: {address: $a, chainId: $c}) {
  challenge { domain address chainId uri nonce issuedAt expiresAt message } errors { code field message } } }"""
LINK = """mutation($a: String!, $s: String!) { linkWallet(input: {address: $a, signature: $s}) {
  wallet { address } errors { code field message } } }"""
WALLET_SOURCE = Path(__file__).with_name("contracts") / "Eip1271Wallet.vy"

# EIP-4361's ABNF, for the fields this message uses (the spec's own layout, line by line)
EIP4361 = re.compile(
    r"^(?P<domain>\S+) wants you to sign in with your Ethereum account:\n(?P<address>0x[0-9a-fA-F]{40})\n\n"
    r"(?P<statement>[^\n]+)\n\nURI: (?P<uri>\S+)\nVersion: 1\nChain ID: (?P<chain>\d+)\nNonce: (?P<nonce>[A-Za-z0-9]{8,})\n"
    r"Issued At: (?P<issued>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)\nExpiration Time: (?P<exp>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)$"
)


def sign(account, message: str) -> str:  # type: ignore[no-untyped-def]
    return "0x" + account.sign_message(encode_defunct(text=message)).signature.hex().removeprefix("0x")


@pytest.fixture
def chain_env(anvil, monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("RPC_URLS_1", anvil.url)
    return anvil


async def deploy_wallet(w3, deployer: str, owner: str) -> str:  # type: ignore[no-untyped-def]
    import vyper  # dev dependency (contracts are compiled with it: chains/contracts/compile.py)

    out = vyper.compile_code(WALLET_SOURCE.read_text(), output_formats=["abi", "bytecode"])
    factory = w3.eth.contract(abi=out["abi"], bytecode=out["bytecode"])
    tx = await factory.constructor(owner).transact({"from": deployer})
    receipt = await w3.eth.wait_for_transaction_receipt(tx)
    return str(receipt["contractAddress"])


async def test_the_challenge_is_an_eip4361_message(gql, make_user) -> None:  # type: ignore[no-untyped-def]
    user, account = await make_user(), Account.create()
    result = await gql(CHALLENGE, {"a": account.address.lower(), "c": 137}, token=user.token)
    issued = gql.payload(result, "walletChallenge", "challenge")
    match = EIP4361.match(issued["message"])
    assert match, issued["message"]
    assert match["domain"] == issued["domain"] == "testserver"
    assert match["address"] == issued["address"] == account.address
    assert match["chain"] == "137" and issued["chainId"] == 137
    assert match["uri"] == issued["uri"] == "http://testserver"
    assert match["nonce"] == issued["nonce"]
    parsed = siwe.parse(issued["message"])
    assert parsed.render() == issued["message"]
    assert parsed.expiration_time is not None and parsed.expiration_time.isoformat() == issued["expiresAt"]
    # an account's signature links it whatever the chain named
    linked = await gql(LINK, {"a": account.address, "s": sign(account, issued["message"])}, token=user.token)
    assert gql.payload(linked, "linkWallet", "wallet")["address"] == account.address


@pytest.mark.parametrize("chain", [5, 0, -1])
async def test_an_unsupported_chain_is_refused(gql, make_user, chain: int) -> None:  # type: ignore[no-untyped-def]
    user = await make_user()
    result = await gql(CHALLENGE, {"a": Account.create().address, "c": chain}, token=user.token)
    assert gql.error_code(result) == "BAD_USER_INPUT"
    assert result["data"]["walletChallenge"]["errors"][0]["field"] == ["input", "chainId"]


def test_messages_are_checked_field_by_field() -> None:
    from datetime import datetime, timedelta

    now = datetime(2026, 1, 31, 9, 30, tzinfo=UTC)
    address = Account.create().address
    message = siwe.SiweMessage(
        domain="api.example",
        address=address,
        statement=siwe.STATEMENT,
        uri="https://api.example",
        chain_id=1,
        nonce="a1b2c3d4e5",
        issued_at=now,
        expiration_time=now + timedelta(minutes=10),
    )
    expected = dict(domain="api.example", address=address, chain_id=1, nonce="a1b2c3d4e5")
    assert siwe.check(siwe.parse(message.render()), **expected, now=now) is None  # type: ignore[arg-type]
    for change, problem in (
        (dict(domain="evil.example"), "domain"),
        (dict(chain_id=137), "chain id"),
        (dict(nonce="zzzzzzzzzz"), "nonce"),
        (dict(address=Account.create().address), "address"),
    ):
        assert siwe.check(message, **{**expected, **change}, now=now) == problem  # type: ignore[arg-type]
    assert siwe.check(message, **expected, now=now + timedelta(minutes=11)) == "expired"  # type: ignore[arg-type]
    with pytest.raises(siwe.MalformedMessage):
        siwe.parse(message.render().replace("Version: 1", "Version: 2"))


async def test_a_contract_wallet_links_by_eip1271(chain_env, anvil_w3, anvil_accounts, gql, make_user, session) -> None:  # type: ignore[no-untyped-def]
    owner, stranger = Account.create(), Account.create()
    wallet = await deploy_wallet(anvil_w3, anvil_accounts[0], owner.address)
    user = await make_user()

    # a key that does not own the contract: refused, nothing linked
    issued = gql.payload(await gql(CHALLENGE, {"a": wallet, "c": 1}, token=user.token), "walletChallenge", "challenge")
    refused = await gql(LINK, {"a": wallet, "s": sign(stranger, issued["message"])}, token=user.token)
    assert gql.error_code(refused) == "SIGNER_MISMATCH"
    assert (await session.execute(select(Wallet).where(Wallet.address == wallet))).first() is None

    # the owner's signature: the contract says valid, the wallet is linked
    issued = gql.payload(await gql(CHALLENGE, {"a": wallet, "c": 1}, token=user.token), "walletChallenge", "challenge")
    linked = await gql(LINK, {"a": wallet, "s": sign(owner, issued["message"])}, token=user.token)
    assert gql.payload(linked, "linkWallet", "wallet")["address"] == wallet
    audit = (
        await session.execute(
            select(AuditLog.details).where(AuditLog.action == "wallet.link", AuditLog.target_id == wallet)
        )
    ).scalar_one()
    assert audit["signer"] == "EIP1271" and audit["chainId"] == 1

    # a malformed signature for a contract wallet: the contract refuses (its call reverts), no error leaks
    other = await make_user()
    await gql(CHALLENGE, {"a": wallet, "c": 1}, token=other.token)
    garbage = await gql(LINK, {"a": wallet, "s": "0x" + "ab" * 130}, token=other.token)
    assert gql.error_code(garbage) == "SIGNER_MISMATCH", garbage


async def test_a_configured_domain_ignores_the_host_header(gql, make_user, settings, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A phishing site proxying to the API sets its own Host: with SIWE_DOMAIN the message still names ours, so the
    victim's wallet warns that the page asking is not the domain in the message."""
    monkeypatch.setattr(settings, "siwe_domain", "app.stablerwa.test")
    user, account = await make_user(), Account.create()
    result = await gql(CHALLENGE, {"a": account.address, "c": 1}, token=user.token, headers={"Host": "evil.example"})
    issued = gql.payload(result, "walletChallenge", "challenge")
    match = EIP4361.match(issued["message"])
    assert match, issued["message"]
    assert match["domain"] == issued["domain"] == "app.stablerwa.test"
    assert match["uri"] == issued["uri"] == "https://app.stablerwa.test"
    assert "evil.example" not in issued["message"]
    linked = await gql(LINK, {"a": account.address, "s": sign(account, issued["message"])}, token=user.token)
    assert gql.payload(linked, "linkWallet", "wallet")["address"] == account.address


async def test_link_refuses_a_message_for_another_domain(gql, make_user, settings, monkeypatch, session) -> None:  # type: ignore[no-untyped-def]
    """A challenge issued under the Host header (SIWE_DOMAIN unset) no longer links once SIWE_DOMAIN names another
    domain: the domain the wallet showed must be the configured one."""
    user, account = await make_user(), Account.create()
    result = await gql(CHALLENGE, {"a": account.address, "c": 1}, token=user.token, headers={"Host": "evil.example"})
    issued = gql.payload(result, "walletChallenge", "challenge")
    assert issued["domain"] == "evil.example"  # development fallback: the Host header
    monkeypatch.setattr(settings, "siwe_domain", "app.stablerwa.test")
    refused = await gql(LINK, {"a": account.address, "s": sign(account, issued["message"])}, token=user.token)
    assert gql.error_code(refused) == "CHALLENGE_NOT_FOUND"
    assert "another domain" in refused["data"]["linkWallet"]["errors"][0]["message"]
    assert (await session.execute(select(Wallet).where(Wallet.address == account.address))).first() is None
