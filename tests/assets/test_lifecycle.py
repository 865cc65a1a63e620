"""Every lifecycle step: the allowed callers succeed from each source state, other callers get FORBIDDEN,
other states get INVALID_STATE (a payload error), and each success leaves a history row and an audit row."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from models.assets import AssetStatus as S
from models.identity import AuditLog

ACTORS = ("owner", "other_issuer", "INVESTOR", "COMPLIANCE", "ADMIN")
# action -> (mutation document, sources, target, allowed actors); written out here, independent of lifecycle.py
STEPS = {
    "submit": ("submitAsset(id: $id)", {S.DRAFT}, S.UNDER_REVIEW, {"owner"}),
    "approve": ("approveAsset(id: $id)", {S.UNDER_REVIEW}, S.APPROVED, {"COMPLIANCE"}),
    "reject": ('rejectAsset(id: $id, input: {reason: "incomplete"})', {S.UNDER_REVIEW}, S.REJECTED, {"COMPLIANCE"}),
    "revise": ("reviseAsset(id: $id)", {S.REJECTED}, S.DRAFT, {"owner"}),
    "suspend": (
        'suspendAsset(id: $id, input: {reason: "court order"})',
        {S.ACTIVE},
        S.SUSPENDED,
        {"COMPLIANCE", "ADMIN"},
    ),
    "resume": ("resumeAsset(id: $id)", {S.SUSPENDED}, S.ACTIVE, {"COMPLIANCE", "ADMIN"}),
    "redeem": ("startAssetRedemption(id: $id)", {S.ACTIVE, S.SUSPENDED}, S.REDEEMING, {"owner", "ADMIN"}),
    "retire": ("retireAsset(id: $id)", {S.REDEEMING}, S.RETIRED, {"ADMIN"}),
}


def doc(call: str) -> str:
    name = call.split("(")[0]
    return (
        f"mutation($id: UUID!) {{ {call} {{ asset {{ id status reviewReason }} errors {{ code field message }} }} }}",
        name,
    )


@pytest.fixture
async def actors(make_user):  # type: ignore[no-untyped-def]
    owner = await make_user(roles=["ISSUER"])
    return {
        "owner": owner,
        "other_issuer": await make_user(roles=["ISSUER"]),
        "INVESTOR": await make_user(roles=["INVESTOR"]),
        "COMPLIANCE": await make_user(roles=["COMPLIANCE"]),
        "ADMIN": await make_user(roles=["ADMIN"]),
    }


async def status_of(gql, admin, asset_id) -> str:  # type: ignore[no-untyped-def]
    r = await gql("query($id: UUID!) { asset(id: $id) { status } }", {"id": str(asset_id)}, token=admin.token)
    return r["data"]["asset"]["status"]


@pytest.mark.parametrize("action", list(STEPS))
async def test_allowed_callers_move_the_asset(action, actors, make_asset, gql, session: AsyncSession) -> None:
    call, sources, target, allowed = STEPS[action]
    query, name = doc(call)
    for actor in sorted(allowed):
        for source in sorted(sources, key=lambda s: s.value):
            asset_id = await make_asset(actors["owner"].id, status=source)
            before = await session.scalar(select(func.count()).select_from(AuditLog))
            r = await gql(query, {"id": str(asset_id)}, token=actors[actor].token)
            assert "errors" not in r, (action, actor, source, r)
            assert gql.payload(r, name, "asset")["status"] == target.value
            hist = await gql(
                "query($id: UUID!) { asset(id: $id) { transitions(last: 1) { edges { node "
                "{ fromStatus toStatus action actorId reason } } } } }",
                {"id": str(asset_id)},
                token=actors["ADMIN"].token,
            )
            node = hist["data"]["asset"]["transitions"]["edges"][-1]["node"]
            assert (node["fromStatus"], node["toStatus"], node["action"]) == (source.value, target.value, action)
            assert node["actorId"] == str(actors[actor].id)
            after = await session.scalar(select(func.count()).select_from(AuditLog))
            assert after == before + 1


@pytest.mark.parametrize("action", list(STEPS))
async def test_other_callers_are_forbidden(action, actors, make_asset, gql) -> None:
    call, sources, _, allowed = STEPS[action]
    query, _ = doc(call)
    source = sorted(sources, key=lambda s: s.value)[0]
    for actor in ACTORS:
        if actor in allowed:
            continue
        asset_id = await make_asset(actors["owner"].id, status=source)
        r = await gql(query, {"id": str(asset_id)}, token=actors[actor].token)
        assert gql.error_code(r) in ("FORBIDDEN", "NOT_FOUND"), (action, actor, r)
        private = source in (S.DRAFT, S.UNDER_REVIEW, S.REJECTED, S.APPROVED)
        if actor == "other_issuer" and "owner" in allowed and private:
            assert gql.error_code(r) == "NOT_FOUND"  # another issuer's private asset does not exist for them
        else:
            assert gql.error_code(r) == "FORBIDDEN"
        assert await status_of(gql, actors["ADMIN"], asset_id) == source.value


@pytest.mark.parametrize("action", list(STEPS))
async def test_wrong_state_is_invalid_state(action, actors, make_asset, gql) -> None:
    call, sources, target, allowed = STEPS[action]
    query, _ = doc(call)
    actor = sorted(allowed)[0]
    for state in S:
        if state in sources:
            continue
        asset_id = await make_asset(actors["owner"].id, status=state)
        r = await gql(query, {"id": str(asset_id)}, token=actors[actor].token)
        assert gql.error_code(r) == "INVALID_STATE", (action, state, r)
        (payload,) = r["data"].values()
        assert payload["asset"] is None
        assert payload["errors"][0]["message"] == f"asset cannot go from {state.value} to {target.value}"
        assert await status_of(gql, actors["ADMIN"], asset_id) == state.value


async def test_reject_needs_a_reason_and_records_it(actors, make_asset, gql) -> None:
    asset_id = await make_asset(actors["owner"].id, status=S.UNDER_REVIEW)
    r = await gql(
        'mutation($id: UUID!) { rejectAsset(id: $id, input: {reason: "  "}) { asset { status } errors { code field } } }',
        {"id": str(asset_id)},
        token=actors["COMPLIANCE"].token,
    )
    assert gql.error_code(r) == "BAD_USER_INPUT" and r["data"]["rejectAsset"]["errors"][0]["field"] == [
        "input",
        "reason",
    ]
    r = await gql(
        'mutation($id: UUID!) { rejectAsset(id: $id, input: {reason: "missing appraisal"}) '
        "{ asset { status reviewReason } errors { code } } }",
        {"id": str(asset_id)},
        token=actors["COMPLIANCE"].token,
    )
    assert gql.payload(r, "rejectAsset", "asset") == {"status": "REJECTED", "reviewReason": "missing appraisal"}


async def test_full_lifecycle_through_the_api(actors, gql) -> None:
    owner, compliance = actors["owner"], actors["COMPLIANCE"]
    r = await gql(
        'mutation { createAsset(input: {name: "Harbour Loft", type: REAL_ESTATE, jurisdiction: "nl", '
        'currency: "EUR", metadata: {address: "Kade 1, Amsterdam", areaSqm: "120.5", '
        'propertyType: "residential"}}) { asset { id status jurisdiction } errors { code } } }',
        token=owner.token,
    )
    asset = gql.payload(r, "createAsset", "asset")
    assert asset["status"] == "DRAFT" and asset["jurisdiction"] == "NL"
    v = {"id": asset["id"]}
    r = await gql(
        'mutation($id: UUID!) { updateAsset(id: $id, input: {description: "canal view"}) '
        "{ asset { description name } errors { code } } }",
        v,
        token=owner.token,
    )
    assert gql.payload(r, "updateAsset", "asset") == {"description": "canal view", "name": "Harbour Loft"}
    for call, token in (
        ("submitAsset(id: $id)", owner),
        ('rejectAsset(id: $id, input: {reason: "no deed"})', compliance),
        ("reviseAsset(id: $id)", owner),
        ("submitAsset(id: $id)", owner),
        ("approveAsset(id: $id)", compliance),
    ):
        r = await gql(
            f"mutation($id: UUID!) {{ {call} {{ asset {{ status }} errors {{ code }} }} }}", v, token=token.token
        )
        assert gql.payload(r, call.split("(")[0], "asset"), r
    r = await gql(
        'mutation($id: UUID!) { updateAsset(id: $id, input: {name: "late edit"}) { asset { name } errors { code } } }',
        v,
        token=owner.token,
    )
    assert gql.error_code(r) == "INVALID_STATE"  # only drafts are editable
    r = await gql(
        "query($id: UUID!) { asset(id: $id) { status transitions { edges { node { action toStatus } } } } }",
        v,
        token=owner.token,
    )
    steps = [(e["node"]["action"], e["node"]["toStatus"]) for e in r["data"]["asset"]["transitions"]["edges"]]
    assert steps == [
        ("create", "DRAFT"),
        ("submit", "UNDER_REVIEW"),
        ("reject", "REJECTED"),
        ("revise", "DRAFT"),
        ("submit", "UNDER_REVIEW"),
        ("approve", "APPROVED"),
    ]


@pytest.mark.parametrize(
    "metadata", [{"address": "x"}, {"address": "Main St 1", "areaSqm": "-1", "propertyType": "office"}, {"unknown": 1}]
)
async def test_metadata_is_validated_per_type(metadata, actors, gql) -> None:
    r = await gql(
        'mutation($m: JSON) { createAsset(input: {name: "A", type: REAL_ESTATE, jurisdiction: "DE", '
        'currency: "EUR", metadata: $m}) { asset { id } errors { code field } } }',
        {"m": metadata},
        token=actors["owner"].token,
    )
    assert gql.error_code(r) == "BAD_USER_INPUT"
    assert r["data"]["createAsset"]["errors"][0]["field"] == ["input", "metadata"]


async def test_bad_codes_are_rejected(actors, gql) -> None:
    for juris, cur, field in (("DEU", "EUR", "jurisdiction"), ("DE", "EURO", "currency"), ("DE", "XYZ", "currency")):
        r = await gql(
            f'mutation {{ createAsset(input: {{name: "A", type: OTHER, jurisdiction: "{juris}", '
            f'currency: "{cur}"}}) {{ asset {{ id }} errors {{ code field }} }} }}',
            token=actors["owner"].token,
        )
        assert gql.error_code(r) == "BAD_USER_INPUT"
        assert r["data"]["createAsset"]["errors"][0]["field"] == ["input", field]


async def test_issuer_cannot_edit_someone_elses_draft(actors, make_asset, gql) -> None:
    asset_id = await make_asset(actors["owner"].id, status=S.DRAFT)
    r = await gql(
        'mutation($id: UUID!) { updateAsset(id: $id, input: {name: "mine now"}) { asset { name } errors { code } } }',
        {"id": str(asset_id)},
        token=actors["other_issuer"].token,
    )
    assert gql.error_code(r) == "NOT_FOUND"


def test_every_lifecycle_action_is_an_asset_action_value() -> None:
    """AssetTransition.action is the AssetAction enum: each step lifecycle.py can record has a value."""
    from models.assets import AssetAction
    from resolvers.assets.lifecycle import STEPS

    assert set(STEPS) | {"create"} == {a.value for a in AssetAction}
