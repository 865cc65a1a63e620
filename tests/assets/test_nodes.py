"""Assets, their valuations, documents and tokens are Relay nodes: `node(id)` shows each exactly as its own lookup
does (`asset(id)`, `Asset.valuations`, `documentContent`, `token(id)`), null for a caller who may not see it."""

from __future__ import annotations

from decimal import Decimal

from models.assets import AssetStatus as S
from tests.assets.test_documents import PDF, upload, uploaded

NODES = "query($ids: [ID!]!) { nodes(ids: $ids) { __typename id } }"
IDS = "query($id: UUID!) { asset(id: $id) { latestValuation { id } tokens { id } } }"


def types(result) -> list[str | None]:  # type: ignore[no-untyped-def]
    assert "errors" not in result, result
    return [n and n["__typename"] for n in result["data"]["nodes"]]


async def test_asset_graph_nodes_follow_the_assets_visibility(client, gql, make_user, make_asset) -> None:
    owner, other = await make_user(roles=["ISSUER"]), await make_user(roles=["ISSUER"])
    investor, compliance = await make_user(roles=["INVESTOR"]), await make_user(roles=["COMPLIANCE"])
    draft = await make_asset(owner.id, status=S.DRAFT, valuation=Decimal("10"), tokens=1)
    active = await make_asset(owner.id, status=S.ACTIVE)
    legal = uploaded(await upload(client, owner.token, active, PDF, kind="LEGAL"))["id"]
    prospectus = uploaded(await upload(client, owner.token, active, PDF))["id"]
    r = await gql(IDS, {"id": str(draft)}, token=owner.token)
    valuation, token = r["data"]["asset"]["latestValuation"]["id"], r["data"]["asset"]["tokens"][0]["id"]

    ids = [str(draft), valuation, token, str(active), legal, prospectus]
    all_six = ["Asset", "Valuation", "Token", "Asset", "AssetDocument", "AssetDocument"]
    assert types(await gql(NODES, {"ids": ids}, token=owner.token)) == all_six
    assert types(await gql(NODES, {"ids": ids}, token=compliance.token)) == all_six
    # a DRAFT asset and its valuation are hidden from others; tokens are public to signed-in callers; a LEGAL
    # document only for its issuer and staff
    hidden = [None, None, "Token", "Asset", None, "AssetDocument"]
    assert types(await gql(NODES, {"ids": ids}, token=investor.token)) == hidden
    assert types(await gql(NODES, {"ids": ids}, token=other.token)) == hidden
    assert types(await gql(NODES, {"ids": ids})) == [None] * 6  # the lookups need a login
    one = await gql(
        "query($id: ID!) { node(id: $id) { id ... on Asset { status issuerId } } }",
        {"id": str(active)},
        token=investor.token,
    )
    assert one["data"]["node"] == {"id": str(active), "status": "ACTIVE", "issuerId": str(owner.id)}
