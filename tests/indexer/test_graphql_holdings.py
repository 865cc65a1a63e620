"""GraphQL read side of the indexer over rows inserted directly: holdings, transfers, holderBalance, indexerStatus."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from eth_utils import to_checksum_address
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models.chain import Block, ChainEvent, FetchedInterval, IndexerCursor
from models.identity import Wallet
from models.tokens import Holding, TokenTransfer

# the API's settings, not tests/indexer/conftest.py's indexer settings (same name, closer scope wins otherwise)
from tests.fixtures.app import settings  # noqa: F401

TOKEN = to_checksum_address("0x" + "ab" * 20)
OTHER_TOKEN = to_checksum_address("0x" + "cd" * 20)
ZERO = "0x" + "0" * 40
ALICE, BOB, CAROL = (to_checksum_address(f"0x{n:040x}") for n in (0xA11CE, 0xB0B, 0xCA201))
T0 = datetime(2026, 1, 1, tzinfo=UTC)

HOLDINGS_Q = """query($chainId: Int!, $token: String!, $holder: String, $first: Int, $after: String,
                      $includeZero: Boolean! = false) {
  tokenHoldings(chainId: $chainId, token: $token, holder: $holder, first: $first, after: $after,
                includeZero: $includeZero) {
    edges { cursor node { chainId token holder balance frozenAmount frozen updatedBlock } }
    pageInfo { hasNextPage endCursor }
  }
}"""
TRANSFERS_Q = """query($token: String!, $holder: String, $fromBlock: Int, $toBlock: Int, $first: Int, $after: String,
                       $newestFirst: Boolean! = true) {
  tokenTransfers(chainId: 1, token: $token, holder: $holder, fromBlock: $fromBlock, toBlock: $toBlock,
                 first: $first, after: $after, newestFirst: $newestFirst) {
    edges { node { blockNumber logIndex fromAddress toAddress value txHash } }
    pageInfo { hasNextPage endCursor }
  }
}"""
BALANCE_Q = (
    """query($holder: String!, $atBlock: Int, $chainId: Int! = 1) {
  holderBalance(chainId: $chainId, token: "%s", holder: $holder, atBlock: $atBlock) {
    balance atBlock indexedBlock holder
  }
}"""
    % TOKEN
)

# (block, log index, from, to, value): mint 10^30 to Alice (beyond 64 bits on purpose), then moves.
BIG = 10**30
TRANSFERS = [
    (10, 0, ZERO, ALICE, BIG),
    (11, 0, ALICE, BOB, 400),
    (11, 1, ALICE, CAROL, 100),
    (12, 3, BOB, ALICE, 50),
    (14, 0, CAROL, ZERO, 100),  # burn
]


async def seed(session_factory: async_sessionmaker[AsyncSession], indexed: int = 14) -> None:
    balances: dict[str, int] = {}
    async with session_factory() as s:
        for block, log, src, dst, value in TRANSFERS:
            s.add(
                TokenTransfer(
                    chain_id=1,
                    block_hash=f"0x{block:064x}",
                    log_index=log,
                    block_number=block,
                    block_time=T0 + timedelta(seconds=12 * block),
                    tx_hash=f"0x{block * 100 + log:064x}",
                    token_address=TOKEN,
                    from_address=src,
                    to_address=dst,
                    value=value,
                )
            )
            balances[src] = balances.get(src, 0) - value
            balances[dst] = balances.get(dst, 0) + value
        for holder, balance in balances.items():
            if holder != ZERO:
                s.add(
                    Holding(
                        chain_id=1,
                        token_address=TOKEN,
                        holder=holder,
                        balance=balance,
                        frozen_amount=7 if holder == BOB else 0,
                        frozen=holder == CAROL,
                        updated_block=14,
                    )
                )
        # same holder on another token and another chain: must never leak into TOKEN's lists
        s.add(Holding(chain_id=1, token_address=OTHER_TOKEN, holder=ALICE, balance=999, updated_block=3))
        s.add(Holding(chain_id=137, token_address=TOKEN, holder=ALICE, balance=888, updated_block=3))
        s.add(IndexerCursor(chain_id=1, indexed_block=indexed, head_block=20, safe_block=16, finalized_block=12))
        await s.commit()


@pytest.fixture
async def staff(make_user):  # type: ignore[no-untyped-def]
    return await make_user(roles=["COMPLIANCE"])


async def test_holdings_largest_first_with_keyset_pages(gql, session_factory, staff) -> None:
    await seed(session_factory)
    first = await gql(HOLDINGS_Q, {"chainId": 1, "token": TOKEN, "first": 2}, token=staff.token)
    assert "errors" not in first, first
    page = first["data"]["tokenHoldings"]
    assert [e["node"]["holder"] for e in page["edges"]] == [ALICE, BOB]
    assert page["edges"][0]["node"]["balance"] == str(BIG - 500 + 50)  # BigInt: exact, as a string
    assert page["edges"][1]["node"] == {
        "chainId": 1,
        "token": TOKEN,
        "holder": BOB,
        "balance": "350",
        "frozenAmount": "7",
        "frozen": False,
        "updatedBlock": 14,
    }
    assert page["pageInfo"]["hasNextPage"] is False  # Carol burnt everything: zero balances are hidden
    with_zero = await gql(
        HOLDINGS_Q,
        {"chainId": 1, "token": TOKEN, "first": 2, "after": page["pageInfo"]["endCursor"], "includeZero": True},
        token=staff.token,
    )
    rest = with_zero["data"]["tokenHoldings"]
    assert [(e["node"]["holder"], e["node"]["balance"], e["node"]["frozen"]) for e in rest["edges"]] == [
        (CAROL, "0", True)
    ]
    one = await gql(HOLDINGS_Q, {"chainId": 1, "token": TOKEN, "holder": BOB.lower()}, token=staff.token)
    assert [e["node"]["holder"] for e in one["data"]["tokenHoldings"]["edges"]] == [BOB]


async def test_transfers_by_block_and_log_index_with_filters(gql, session_factory, staff) -> None:
    await seed(session_factory)
    newest = await gql(TRANSFERS_Q, {"token": TOKEN, "first": 3}, token=staff.token)
    assert "errors" not in newest, newest
    edges = newest["data"]["tokenTransfers"]["edges"]
    assert [(e["node"]["blockNumber"], e["node"]["logIndex"]) for e in edges] == [(14, 0), (12, 3), (11, 1)]
    after = newest["data"]["tokenTransfers"]["pageInfo"]["endCursor"]
    older = await gql(TRANSFERS_Q, {"token": TOKEN, "first": 3, "after": after}, token=staff.token)
    assert [(e["node"]["blockNumber"], e["node"]["logIndex"]) for e in older["data"]["tokenTransfers"]["edges"]] == [
        (11, 0),
        (10, 0),
    ]
    assert older["data"]["tokenTransfers"]["pageInfo"]["hasNextPage"] is False

    bob = await gql(TRANSFERS_Q, {"token": TOKEN, "holder": BOB, "newestFirst": False}, token=staff.token)
    assert [
        (e["node"]["fromAddress"], e["node"]["toAddress"], e["node"]["value"])
        for e in bob["data"]["tokenTransfers"]["edges"]
    ] == [(ALICE, BOB, "400"), (BOB, ALICE, "50")]
    ranged = await gql(
        TRANSFERS_Q, {"token": TOKEN, "fromBlock": 11, "toBlock": 12, "newestFirst": False}, token=staff.token
    )
    assert [e["node"]["blockNumber"] for e in ranged["data"]["tokenTransfers"]["edges"]] == [11, 11, 12]


async def test_holder_balance_at_past_blocks(gql, session_factory, staff) -> None:  # type: ignore[no-untyped-def]
    await seed(session_factory)
    expected = {9: 0, 10: BIG, 11: BIG - 500, 12: BIG - 450, 14: BIG - 450}
    for block, balance in expected.items():
        result = await gql(BALANCE_Q, {"holder": ALICE, "atBlock": block}, token=staff.token)
        assert result["data"]["holderBalance"] == {
            "balance": str(balance),
            "atBlock": block,
            "indexedBlock": 14,
            "holder": ALICE,
        }, block
    carol = await gql(BALANCE_Q, {"holder": CAROL.lower(), "atBlock": 13}, token=staff.token)
    assert carol["data"]["holderBalance"]["balance"] == "100"
    latest = await gql(BALANCE_Q, {"holder": CAROL}, token=staff.token)
    assert latest["data"]["holderBalance"]["balance"] == "0"
    assert latest["data"]["holderBalance"]["atBlock"] == 14

    above = await gql(BALANCE_Q, {"holder": ALICE, "atBlock": 15}, token=staff.token)
    assert gql.error_code(above) == "BAD_USER_INPUT"
    assert "above the indexed block 14" in above["errors"][0]["message"]
    assert above["errors"][0]["extensions"]["indexedBlock"] == 14
    negative = await gql(BALANCE_Q, {"holder": ALICE, "atBlock": -1}, token=staff.token)
    assert gql.error_code(negative) == "BAD_USER_INPUT"


async def test_holder_balance_bound_is_the_tokens_fetched_history(gql, session_factory, staff) -> None:
    """A token backfilled on its own (cursor behind) is indexed up to the end of its first fetched interval."""
    await seed(session_factory, indexed=3)
    async with session_factory() as s:
        s.add_all(
            [
                FetchedInterval(chain_id=1, address=TOKEN, from_block=10, to_block=13),
                FetchedInterval(chain_id=1, address=TOKEN, from_block=20, to_block=30),
            ]
        )
        await s.commit()
    ok = await gql(BALANCE_Q, {"holder": ALICE}, token=staff.token)
    assert ok["data"]["holderBalance"] == {
        "balance": str(BIG - 450),
        "atBlock": 13,
        "indexedBlock": 13,
        "holder": ALICE,
    }
    above = await gql(BALANCE_Q, {"holder": ALICE, "atBlock": 14}, token=staff.token)
    assert gql.error_code(above) == "BAD_USER_INPUT"


async def test_holder_balance_before_any_indexing_is_bad_input(gql, staff) -> None:  # type: ignore[no-untyped-def]
    result = await gql(BALANCE_Q, {"holder": ALICE, "chainId": 56}, token=staff.token)
    assert gql.error_code(result) == "BAD_USER_INPUT"
    assert "not been indexed" in result["errors"][0]["message"]


@pytest.mark.parametrize(
    ("variables", "field"),
    [
        ({"chainId": 1, "token": "0x1234"}, "token"),
        ({"chainId": 1, "token": "ab" * 20}, "token"),  # no 0x
        ({"chainId": 1, "token": "0x" + "zz" * 20}, "token"),
        ({"chainId": 1, "token": TOKEN[:-1] + ("a" if TOKEN[-1] != "a" else "b")}, "token"),  # checksum broken
        ({"chainId": 1, "token": TOKEN, "holder": "0xAb5801a7D398351b8bE11C439e05C5B3259aeC9b"}, "holder"),
        ({"chainId": 5, "token": TOKEN}, "chainId"),
        ({"chainId": 1, "token": TOKEN, "first": 1000}, "first"),
        ({"chainId": 1, "token": TOKEN, "after": "not-a-cursor"}, "cursor"),
    ],
)
async def test_bad_input_is_a_typed_error(gql, staff, variables, field) -> None:  # type: ignore[no-untyped-def]
    result = await gql(HOLDINGS_Q, variables, token=staff.token)
    assert gql.error_code(result) == "BAD_USER_INPUT", result
    assert result["errors"][0]["extensions"].get("field") == field
    assert result["data"] is None


async def test_transfers_reject_inverted_block_range(gql, staff) -> None:  # type: ignore[no-untyped-def]
    result = await gql(TRANSFERS_Q, {"token": TOKEN, "fromBlock": 5, "toBlock": 4}, token=staff.token)
    assert gql.error_code(result) == "BAD_USER_INPUT"


async def test_investor_sees_only_linked_wallets(gql, session_factory, make_user) -> None:
    await seed(session_factory)
    investor = await make_user(roles=["INVESTOR"])
    async with session_factory() as s:
        s.add(Wallet(id=uuid.uuid4(), user_id=investor.id, address=BOB))
        await s.commit()
    everyone = await gql(HOLDINGS_Q, {"chainId": 1, "token": TOKEN}, token=investor.token)
    assert gql.error_code(everyone) == "FORBIDDEN"
    mine = await gql(HOLDINGS_Q, {"chainId": 1, "token": TOKEN, "holder": BOB.lower()}, token=investor.token)
    assert [e["node"]["balance"] for e in mine["data"]["tokenHoldings"]["edges"]] == ["350"]
    theirs = await gql(HOLDINGS_Q, {"chainId": 1, "token": TOKEN, "holder": ALICE}, token=investor.token)
    assert gql.error_code(theirs) == "FORBIDDEN"
    my_moves = await gql(TRANSFERS_Q, {"token": TOKEN, "holder": BOB}, token=investor.token)
    assert len(my_moves["data"]["tokenTransfers"]["edges"]) == 2
    assert gql.error_code(await gql(TRANSFERS_Q, {"token": TOKEN}, token=investor.token)) == "FORBIDDEN"
    assert gql.error_code(await gql(BALANCE_Q, {"holder": CAROL}, token=investor.token)) == "FORBIDDEN"
    own = await gql(BALANCE_Q, {"holder": BOB, "atBlock": 11}, token=investor.token)
    assert own["data"]["holderBalance"]["balance"] == "400"
    anonymous = await gql(HOLDINGS_Q, {"chainId": 1, "token": TOKEN, "holder": BOB})
    assert gql.error_code(anonymous) == "UNAUTHENTICATED"


STATUS_Q = (
    "{ indexerStatus { chainId chain headBlock safeBlock finalizedBlock indexedBlock lag recentEvents "
    "windowBlocks eventsPerSecond updatedAt } }"
)


async def test_indexer_status_per_chain(gql, session_factory, make_user) -> None:  # type: ignore[no-untyped-def]
    user = await make_user(roles=["INVESTOR"])
    async with session_factory() as s:
        s.add(IndexerCursor(chain_id=137, indexed_block=300, head_block=310, safe_block=306, finalized_block=302))
        # blocks 250..300, 2 s apart; 30 events in blocks 201..300 (the 100-block window), 5 before it
        for n in range(250, 301):
            s.add(
                Block(
                    chain_id=137,
                    number=n,
                    hash=f"0x{n:064x}",
                    parent_hash=f"0x{n - 1:064x}",
                    timestamp=T0 + timedelta(seconds=2 * n),
                )
            )
        for i, n in enumerate([150] * 5 + list(range(271, 301))):
            s.add(
                ChainEvent(
                    chain_id=137,
                    block_hash=f"0x{n:064x}",
                    log_index=i,
                    block_number=n,
                    tx_hash="0x" + "1" * 64,
                    tx_index=0,
                    address=TOKEN,
                    event="Transfer",
                    topics=[],
                    data="0x",
                    args={},
                )
            )
        await s.commit()
    result = await gql(STATUS_Q, token=user.token)
    assert "errors" not in result, result
    rows = {r["chainId"]: r for r in result["data"]["indexerStatus"]}
    assert set(rows) == {1, 137, 56}
    polygon = rows[137]
    assert polygon["chain"] == "polygon"
    assert (
        polygon["headBlock"],
        polygon["safeBlock"],
        polygon["finalizedBlock"],
        polygon["indexedBlock"],
        polygon["lag"],
    ) == (310, 306, 302, 300, 10)
    assert polygon["recentEvents"] == 30 and polygon["windowBlocks"] == 100
    assert polygon["eventsPerSecond"] == pytest.approx(30 / 100)  # blocks 250..300 span 100 s
    assert polygon["updatedAt"] is not None
    assert rows[56] == {
        "chainId": 56,
        "chain": "bsc",
        "headBlock": None,
        "safeBlock": None,
        "finalizedBlock": None,
        "indexedBlock": None,
        "lag": None,
        "recentEvents": 0,
        "windowBlocks": 100,
        "eventsPerSecond": None,
        "updatedAt": None,
    }
    one = await gql("{ indexerStatus(chainId: 137) { chainId } }", token=user.token)
    assert one["data"]["indexerStatus"] == [{"chainId": 137}]
    bad = await gql("{ indexerStatus(chainId: 2) { chainId } }", token=user.token)
    assert gql.error_code(bad) == "BAD_USER_INPUT"
