"""Cap table checkpoints: written every N transfers at finalized blocks only, idempotent, a crash's leftovers
replaced; a cap table from a checkpoint equals one summed from the start at every block."""

from __future__ import annotations

import uuid

from sqlalchemy import text

from models.chain import IndexerCursor
from resolvers.reports.cap_table import Strategy, cap_table
from resolvers.reports.checkpoints import write_checkpoints, write_token_checkpoints
from resolvers.viewer import Viewer
from tests.reports.seed import ALICE, BIG, BOB, CAROL, TOKEN, seed_token


async def checkpoints(session) -> dict[int, dict[str, int]]:  # type: ignore[no-untyped-def]
    rows = (
        await session.execute(
            text(
                "SELECT c.block_number, b.holder, b.balance FROM cap_table_checkpoints c JOIN cap_table_checkpoint_balances b "
                "USING (chain_id, token_address, block_number) ORDER BY 1, 2"
            )
        )
    ).all()
    out: dict[int, dict[str, int]] = {}
    for block, holder, balance in rows:
        out.setdefault(block, {})[holder] = int(balance)
    return out


async def test_checkpoints_at_finalized_blocks_every_n_transfers(session, session_factory, services, make_user) -> None:  # type: ignore[no-untyped-def]
    issuer, alice, bob = await make_user(roles=["ISSUER"]), await make_user(), await make_user()
    await seed_token(session_factory, services.cipher, issuer.id, alice.id, bob.id)  # finalized: block 12
    # a crashed run's balances at block 11 without their checkpoint row: replaced, not added to
    await session.execute(
        text("INSERT INTO cap_table_checkpoint_balances VALUES (1, :t, 11, :h, 999)"), {"t": TOKEN, "h": CAROL}
    )
    written = await write_checkpoints(session, every=2)
    # transfers: (10), (11, 11), (12), (14): the 2nd is in block 11; the 4th would be block 14, not final yet
    assert [(w.block, w.holders) for w in written] == [(11, 3)]
    assert await checkpoints(session) == {11: {ALICE: BIG - 500, BOB: 400, CAROL: 100}}
    assert await write_token_checkpoints(session, 1, TOKEN, every=2) == []  # nothing new: idempotent
    cursor = await session.get(IndexerCursor, 1)
    cursor.finalized_block = 14
    await session.commit()
    assert [(w.block, w.holders) for w in await write_checkpoints(session, every=2)] == [(14, 2)]
    assert (await checkpoints(session))[14] == {ALICE: BIG - 450, BOB: 350}

    viewer = Viewer(user_id=uuid.uuid4(), roles=frozenset({"COMPLIANCE"}))
    for block in range(9, 15):
        forward = await cap_table(session, viewer, chain_id=1, token=TOKEN, at_block=block, strategy=Strategy.FORWARD)
        from_checkpoint = await cap_table(
            session, viewer, chain_id=1, token=TOKEN, at_block=block, strategy=Strategy.CHECKPOINT
        )
        assert [(r.holder, r.balance) for r in from_checkpoint.rows] == [(r.holder, r.balance) for r in forward.rows]
        assert from_checkpoint.strategy is (Strategy.CHECKPOINT if block >= 11 else Strategy.FORWARD), block
