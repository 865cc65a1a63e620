"""Tokenization against anvil: deploy the project's SecurityToken, or register an existing contract checked
through eth_call; the asset goes APPROVED -> TOKENIZING -> ACTIVE, or back to APPROVED on failure."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from eth_utils import to_checksum_address
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from chains.deploy import transact
from core.services import build_services
from models.assets import Asset, AssetType
from models.assets import AssetStatus as S
from models.identity import Role, User
from models.tokens import Holding, Token, TokenKind
from resolvers.assets.tokenization import STALE_TOKENIZING
from server.app import create_app
from tests.fixtures.app import make_settings

TOKENIZE = (
    "mutation($a: UUID!, $addr: String, $d: DeployTokenInput) { tokenizeAsset(input: {assetId: $a, chainId: 1, "
    "address: $addr, deploy: $d}) { tokenization { asset { status tokens { address } } token { id chainId chainName "
    "address symbol decimals totalSupply paused startBlock holderCount kind } } errors { code field message } } }"
)
HISTORY = "query($id: UUID!) { asset(id: $id) { status transitions { edges { node { action toStatus reason } } } } }"


@pytest.fixture
def chain_env(anvil, monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("RPC_URLS_1", anvil.url)
    return anvil


async def first_code_block(w3, address: str) -> int:  # type: ignore[no-untyped-def]
    head = await w3.eth.block_number
    for n in range(head + 1):  # linear on purpose: independent of the binary search under test
        if await w3.eth.get_code(address, n):
            return n
    raise AssertionError("no code")


async def test_deploy_path(chain_env, anvil_w3, make_user, make_asset, gql, session: AsyncSession) -> None:
    issuer = await make_user(roles=["ISSUER"])
    asset_id = await make_asset(issuer.id, status=S.APPROVED)
    r = await gql(
        TOKENIZE,
        {"a": str(asset_id), "d": {"name": "Harbour Loft Shares", "symbol": "HLS", "decimals": 6}},
        token=issuer.token,
    )
    result = gql.payload(r, "tokenizeAsset", "tokenization")
    token = result["token"]
    assert result["asset"]["status"] == "ACTIVE" and result["asset"]["tokens"] == [{"address": token["address"]}]
    assert token["address"] == to_checksum_address(token["address"])
    assert (token["symbol"], token["decimals"], token["totalSupply"], token["paused"], token["kind"]) == (
        "HLS",
        6,
        "0",
        False,
        "SECURITY",
    )
    assert token["chainName"].lower() == "ethereum"
    assert await anvil_w3.eth.get_code(token["address"])  # really deployed
    assert token["startBlock"] == await first_code_block(anvil_w3, token["address"])
    row = (await session.execute(select(Token).where(Token.address == token["address"]))).scalar_one()
    assert (row.chain_id, row.kind, row.asset_id, row.start_block) == (
        1,
        TokenKind.SECURITY,
        asset_id,
        token["startBlock"],
    )
    assert row.identity_registry is not None and await anvil_w3.eth.get_code(row.identity_registry)
    r = await gql(HISTORY, {"id": str(asset_id)}, token=issuer.token)
    steps = [e["node"]["action"] for e in r["data"]["asset"]["transitions"]["edges"]]
    assert steps[-2:] == ["tokenize", "confirm_tokens"]


async def test_concurrent_deployments_each_get_their_token(
    chain_env, anvil_w3, module_database_url: str, redis_url: str, redis_prefix: str, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    """Two issuers tokenizing at once (found with two `rwa demo` runs side by side): both deployments read the
    deployer's next nonce from the node, one failed with "nonce too low" and its asset went back to APPROVED
    (CONFLICT "chain 1 refused or could not be reached"). Deployments now take turns on the deployer key. Served
    as `rwa serve` builds it (own engine, a database of the module's own): the test-transaction fixtures bind every
    request to one connection, on which concurrent mutations cannot run."""
    settings = make_settings(module_database_url, redis_url, redis_prefix, tmp_path / "data")
    services = build_services(settings)
    try:
        requests = []
        async with services.session_factory() as s:
            for n in range(3):
                issuer = User(id=uuid.uuid4(), email=f"iss-{uuid.uuid4().hex[:8]}@example.com", password_hash="x")
                issuer.roles = [Role.INVESTOR.value, Role.ISSUER.value]
                asset = Asset(
                    id=uuid.uuid4(),
                    issuer_id=issuer.id,
                    name=f"Side by side {n}",
                    type=AssetType.OTHER,
                    status=S.APPROVED,
                    jurisdiction="DE",
                    currency="EUR",
                    attributes={},
                )
                s.add(issuer)
                await s.flush()
                s.add(asset)
                token, _ = services.keyring.issue(issuer.id, issuer.roles)
                deploy = {"name": f"Side {n}", "symbol": f"SD{n}", "decimals": 0}
                requests.append(({"a": str(asset.id), "d": deploy}, token))
            await s.commit()
        app = create_app(settings, services)
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=120) as client:

            async def tokenize(variables: dict, token: str) -> dict:  # type: ignore[type-arg]
                resp = await client.post(
                    "/graphql",
                    json={"query": TOKENIZE, "variables": variables},
                    headers={"Authorization": f"Bearer {token}"},
                )
                return resp.json()

            replies = await asyncio.gather(*(tokenize(v, t) for v, t in requests))
    finally:
        await services.aclose()
    assert [r.get("errors") for r in replies] == [None] * 3, replies
    assert [r["data"]["tokenizeAsset"]["errors"] for r in replies] == [[]] * 3, replies
    tokens = [r["data"]["tokenizeAsset"]["tokenization"]["token"] for r in replies]
    assert len({t["address"] for t in tokens}) == 3
    for n, t in enumerate(tokens):
        assert t["symbol"] == f"SD{n}" and await anvil_w3.eth.get_code(t["address"])


async def test_a_tokenization_whose_request_died_can_be_started_again(
    chain_env, make_user, make_asset, gql, session: AsyncSession
) -> None:
    """kill -9 of the API worker during a deployment (found on rwa dev) left the asset TOKENIZING for good: a new
    tokenizeAsset was INVALID_STATE and no mutation moved it. A TOKENIZING state older than any deployment takes is
    given up (abandon_tokens, with the reason) by the next tokenizeAsset, which then deploys; a recent one is still
    refused, so two live calls never deploy twice."""
    issuer = await make_user(roles=["ISSUER"])
    deploy = {"name": "Phoenix", "symbol": "PHX", "decimals": 0}
    fresh = await make_asset(issuer.id, status=S.TOKENIZING)
    stale = await make_asset(issuer.id, status=S.TOKENIZING)
    await session.execute(
        update(Asset)
        .where(Asset.id == stale)
        .values(updated_at=datetime.now(UTC) - STALE_TOKENIZING - timedelta(minutes=1))
    )
    await session.commit()
    refused = await gql(TOKENIZE, {"a": str(fresh), "d": deploy}, token=issuer.token)
    assert [e["code"] for e in refused["data"]["tokenizeAsset"]["errors"]] == ["INVALID_STATE"]
    r = await gql(TOKENIZE, {"a": str(stale), "d": deploy}, token=issuer.token)
    assert gql.payload(r, "tokenizeAsset", "tokenization")["asset"]["status"] == "ACTIVE"
    r = await gql(HISTORY, {"id": str(stale)}, token=issuer.token)
    steps = [e["node"] for e in r["data"]["asset"]["transitions"]["edges"]]
    assert [s["action"] for s in steps[-3:]] == ["abandon_tokens", "tokenize", "confirm_tokens"]
    assert steps[-3]["reason"].startswith("stale")


async def test_register_path_validates_on_chain(
    chain_env, anvil_w3, rwa_stack, anvil_accounts, make_user, make_asset, gql, session: AsyncSession
) -> None:
    admin = await make_user(roles=["ADMIN"])
    issuer = await make_user(roles=["ISSUER"])
    asset_id = await make_asset(issuer.id, status=S.APPROVED)
    token_contract = rwa_stack.token
    holder = anvil_accounts[3]
    await transact(rwa_stack.registry.functions.registerIdentity(holder, holder, 276), anvil_accounts[0])
    await transact(token_contract.functions.mint(holder, 5 * 10**18), anvil_accounts[0])
    r = await gql(TOKENIZE, {"a": str(asset_id), "addr": token_contract.address.lower()}, token=admin.token)
    result = gql.payload(r, "tokenizeAsset", "tokenization")
    token = result["token"]
    assert result["asset"]["status"] == "ACTIVE"
    assert token["address"] == token_contract.address  # stored checksummed
    assert (token["symbol"], token["decimals"], token["totalSupply"]) == ("TREF", 18, str(5 * 10**18))
    assert token["startBlock"] == await first_code_block(anvil_w3, token_contract.address)
    row = (await session.execute(select(Token).where(Token.address == token_contract.address))).scalar_one()
    assert row.identity_registry == rwa_stack.registry.address
    # holder count and holdings come from the indexer's tables
    session.add(
        Holding(
            chain_id=1,
            token_address=token_contract.address,
            holder=holder,
            balance=5 * 10**18,
            updated_block=token["startBlock"],
        )
    )
    await session.commit()
    r = await gql(
        "query($a: String!) { token(chainId: 1, address: $a) { holderCount holdings { edges { node "
        "{ holder balance } } } transfers { edges { node { txHash } } } } }",
        {"a": token_contract.address},
        token=admin.token,
    )
    assert r["data"]["token"]["holderCount"] == 1
    assert r["data"]["token"]["holdings"]["edges"] == [{"node": {"holder": holder, "balance": str(5 * 10**18)}}]

    # the same contract cannot back a second asset
    second = await make_asset(issuer.id, status=S.APPROVED)
    r = await gql(TOKENIZE, {"a": str(second), "addr": token_contract.address}, token=issuer.token)
    assert gql.error_code(r) == "CONFLICT"
    r = await gql(HISTORY, {"id": str(second)}, token=issuer.token)
    assert r["data"]["asset"]["status"] == "APPROVED"


@pytest.mark.parametrize("target", ["eoa", "stablecoin_registry"])
async def test_register_refuses_what_is_not_a_token(
    target, chain_env, rwa_stack, anvil_accounts, make_user, make_asset, gql
) -> None:
    issuer = await make_user(roles=["ISSUER"])
    asset_id = await make_asset(issuer.id, status=S.APPROVED)
    # an account without code; a contract without decimals/symbol/totalSupply (the identity registry)
    address = anvil_accounts[5] if target == "eoa" else rwa_stack.registry.address
    r = await gql(TOKENIZE, {"a": str(asset_id), "addr": address}, token=issuer.token)
    assert gql.error_code(r) == "BAD_USER_INPUT"
    assert r["data"]["tokenizeAsset"]["errors"][0]["field"] == ["input", "address"]
    r = await gql(HISTORY, {"id": str(asset_id)}, token=issuer.token)
    asset = r["data"]["asset"]
    assert asset["status"] == "APPROVED"
    last = asset["transitions"]["edges"][-1]["node"]
    assert (last["action"], last["toStatus"]) == ("abandon_tokens", "APPROVED") and last["reason"]


async def test_unreachable_chain_returns_the_asset_to_approved(monkeypatch, make_user, make_asset, gql) -> None:
    from tests.fixtures.app import free_port

    monkeypatch.setenv("RPC_URLS_1", f"http://127.0.0.1:{free_port()}")
    issuer = await make_user(roles=["ISSUER"])
    asset_id = await make_asset(issuer.id, status=S.APPROVED)
    r = await gql(TOKENIZE, {"a": str(asset_id), "d": {"name": "X", "symbol": "X"}}, token=issuer.token)
    assert gql.error_code(r) == "CONFLICT"
    r = await gql(HISTORY, {"id": str(asset_id)}, token=issuer.token)
    assert r["data"]["asset"]["status"] == "APPROVED"


async def test_tokenize_checks_state_role_and_input(chain_env, make_user, make_asset, gql) -> None:
    issuer, other = await make_user(roles=["ISSUER"]), await make_user(roles=["ISSUER"])
    compliance = await make_user(roles=["COMPLIANCE"])
    draft = await make_asset(issuer.id, status=S.DRAFT)
    approved = await make_asset(issuer.id, status=S.APPROVED)
    deploy = {"name": "X", "symbol": "X"}
    r = await gql(TOKENIZE, {"a": str(draft), "d": deploy}, token=issuer.token)
    assert gql.error_code(r) == "INVALID_STATE"
    r = await gql(TOKENIZE, {"a": str(approved), "d": deploy}, token=compliance.token)
    assert gql.error_code(r) == "FORBIDDEN"
    r = await gql(TOKENIZE, {"a": str(approved), "d": deploy}, token=other.token)
    assert gql.error_code(r) == "NOT_FOUND"
    for variables in (
        {"a": str(approved)},
        {"a": str(approved), "d": deploy, "addr": "0x1"},
        {"a": str(approved), "d": {"name": "X", "symbol": "X", "decimals": 40}},
    ):
        r = await gql(TOKENIZE, variables, token=issuer.token)
        assert gql.error_code(r) == "BAD_USER_INPUT", variables
    r = await gql(
        'mutation($a: UUID!) { tokenizeAsset(input: {assetId: $a, chainId: 10, deploy: {name: "X", '
        'symbol: "X"}}) { tokenization { token { id } } errors { code field } } }',
        {"a": str(approved)},
        token=issuer.token,
    )
    assert gql.error_code(r) == "BAD_USER_INPUT"
    r = await gql(HISTORY, {"id": str(approved)}, token=issuer.token)
    assert r["data"]["asset"]["status"] == "APPROVED"


async def test_a_deployment_leaves_no_open_http_session(anvil) -> None:  # type: ignore[no-untyped-def]
    """web3's provider keeps an aiohttp session; left open, it was reported later ("Unclosed client session") as an
    ERROR tagged with whichever request was running when it was collected."""
    import gc

    import aiohttp

    from resolvers.assets.tokenization import DeployRequest, deploy_token

    def open_sessions() -> set[int]:
        gc.collect()
        return {id(o) for o in gc.get_objects() if isinstance(o, aiohttp.ClientSession) and not o.closed}

    before = open_sessions()
    key = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"  # anvil account 0
    facts = await deploy_token(anvil.url, key, DeployRequest(name="Leak check", symbol="LEAK", decimals=0))
    assert facts.address.startswith("0x")
    assert open_sessions() - before == set()
