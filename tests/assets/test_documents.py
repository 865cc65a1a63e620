"""Document uploads over the GraphQL multipart spec: limits, sha256, tamper detection, download access."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest

from core.storage import LocalStorage, ObjectMissing
from models.assets import AssetStatus as S
from resolvers.assets.documents import MAX_BYTES

UPLOAD = (
    "mutation($input: UploadAssetDocumentInput!) { uploadAssetDocument(input: $input) "
    "{ document { id kind filename contentType size sha256 } errors { code field message } } }"
)
DOWNLOAD = "query($id: UUID!) { documentContent(id: $id) { contentBase64 document { sha256 filename } } }"
PDF = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer\n%%EOF\n"


async def upload(
    client,
    token,
    asset_id,
    data,
    *,
    kind="PROSPECTUS",
    filename="prospectus.pdf",  # type: ignore[no-untyped-def]
    content_type="application/pdf",
    preflight=True,
):
    ops = {"query": UPLOAD, "variables": {"input": {"assetId": str(asset_id), "kind": kind, "file": None}}}
    headers = {"Authorization": f"Bearer {token}"}
    if preflight:
        headers["Apollo-Require-Preflight"] = "true"
    resp = await client.post(
        "/graphql",
        data={"operations": json.dumps(ops), "map": json.dumps({"0": ["variables.input.file"]})},
        files={"0": (filename, data, content_type)},
        headers=headers,
    )
    return resp


def uploaded(resp) -> dict:  # type: ignore[no-untyped-def]
    """The document of an upload that must have succeeded."""
    body = resp.json()
    assert "errors" not in body and body["data"]["uploadAssetDocument"]["errors"] == [], body
    return body["data"]["uploadAssetDocument"]["document"]  # type: ignore[no-any-return]


def upload_error(resp) -> dict:  # type: ignore[no-untyped-def]
    """The payload error of an upload refused as bad input."""
    body = resp.json()
    assert "errors" not in body and body["data"]["uploadAssetDocument"]["document"] is None, body
    return body["data"]["uploadAssetDocument"]["errors"][0]  # type: ignore[no-any-return]


async def test_upload_records_sha256_and_download_verifies_it(client, gql, make_user, make_asset) -> None:
    issuer = await make_user(roles=["ISSUER"])
    asset_id = await make_asset(issuer.id, status=S.DRAFT)
    resp = await upload(client, issuer.token, asset_id, PDF, filename="../../etc/Prospectus 2026.pdf")
    doc = uploaded(resp)
    assert doc["sha256"] == hashlib.sha256(PDF).hexdigest() and doc["size"] == len(PDF)
    assert doc["filename"] == "Prospectus 2026.pdf" and doc["contentType"] == "application/pdf"
    r = await gql(DOWNLOAD, {"id": doc["id"]}, token=issuer.token)
    assert base64.b64decode(r["data"]["documentContent"]["contentBase64"]) == PDF
    r = await gql(
        "query($id: UUID!) { asset(id: $id) { documents { edges { node { id kind } } } } }",
        {"id": str(asset_id)},
        token=issuer.token,
    )
    assert [e["node"]["id"] for e in r["data"]["asset"]["documents"]["edges"]] == [doc["id"]]


async def test_multipart_without_the_preflight_header_is_refused(client, gql, make_user, make_asset) -> None:
    """CSRF guard: a plain cross-site form cannot set Apollo-Require-Preflight."""
    issuer = await make_user(roles=["ISSUER"])
    asset_id = await make_asset(issuer.id)
    resp = await upload(client, issuer.token, asset_id, PDF, preflight=False)
    error = resp.json()["errors"][0]  # refused by the HTTP layer, before the mutation runs
    assert error["extensions"]["code"] == "BAD_USER_INPUT" and "Preflight" in error["message"]
    r = await gql(
        "query($id: UUID!) { asset(id: $id) { documents { edges { node { id } } } } }",
        {"id": str(asset_id)},
        token=issuer.token,
    )
    assert r["data"]["asset"]["documents"]["edges"] == []


async def test_too_large_is_rejected(client, make_user, make_asset, settings) -> None:
    issuer = await make_user(roles=["ISSUER"])
    asset_id = await make_asset(issuer.id)
    resp = await upload(client, issuer.token, asset_id, PDF + b"0" * (MAX_BYTES - len(PDF) + 1))
    error = upload_error(resp)
    assert error["code"] == "BAD_USER_INPUT" and error["field"] == ["input", "file"]
    assert str(MAX_BYTES) in error["message"]
    assert not (settings.data_path() / "documents").exists() or not any((settings.data_path() / "documents").rglob("*"))


@pytest.mark.parametrize(
    "data,ctype",
    [
        (PDF, "application/x-msdownload"),
        (b"MZ\x90\x00binary", "application/pdf"),
        (b"\xff\xfe\x00bad", "text/plain"),
        (PDF, ""),
    ],
)
async def test_wrong_type_is_rejected(data, ctype, client, make_user, make_asset) -> None:
    issuer = await make_user(roles=["ISSUER"])
    asset_id = await make_asset(issuer.id)
    resp = await upload(client, issuer.token, asset_id, data, content_type=ctype or "application/octet-stream")
    assert upload_error(resp)["code"] == "BAD_USER_INPUT"


async def test_tampered_file_is_detected_at_download(client, gql, make_user, make_asset, settings) -> None:
    issuer = await make_user(roles=["ISSUER"])
    asset_id = await make_asset(issuer.id)
    doc = uploaded(await upload(client, issuer.token, asset_id, PDF))
    stored = settings.data_path() / "documents" / "assets" / str(asset_id) / doc["id"]
    assert stored.read_bytes() == PDF
    stored.write_bytes(PDF.replace(b"Catalog", b"Catalag"))  # same size, different bytes
    r = await gql(DOWNLOAD, {"id": doc["id"]}, token=issuer.token)
    assert gql.error_code(r) == "CONFLICT" and r["errors"][0]["extensions"]["integrity"] == "MISMATCH"
    stored.unlink()
    r = await gql(DOWNLOAD, {"id": doc["id"]}, token=issuer.token)
    assert gql.error_code(r) == "CONFLICT" and r["errors"][0]["extensions"]["integrity"] == "MISSING"


async def test_download_is_authorized(client, gql, make_user, make_asset) -> None:
    issuer, investor = await make_user(roles=["ISSUER"]), await make_user(roles=["INVESTOR"])
    compliance, other = await make_user(roles=["COMPLIANCE"]), await make_user(roles=["ISSUER"])
    draft = await make_asset(issuer.id, status=S.DRAFT)
    active = await make_asset(issuer.id, status=S.ACTIVE)
    draft_doc = uploaded(await upload(client, issuer.token, draft, PDF))["id"]
    legal = uploaded(await upload(client, issuer.token, active, PDF, kind="LEGAL"))["id"]
    prospectus = uploaded(await upload(client, issuer.token, active, PDF))["id"]
    expectations = [
        (draft_doc, investor, "NOT_FOUND"),
        (draft_doc, other, "NOT_FOUND"),
        (draft_doc, compliance, None),
        (legal, investor, "NOT_FOUND"),
        (legal, compliance, None),
        (legal, issuer, None),
        (prospectus, investor, None),
        (prospectus, other, None),
    ]
    for doc_id, who, code in expectations:  # NOT_FOUND: a document the caller may not see is null, like a missing one
        r = await gql(DOWNLOAD, {"id": doc_id}, token=who.token)
        if code == "NOT_FOUND":
            assert "errors" not in r and r["data"]["documentContent"] is None, (doc_id, who.roles, r)
        else:
            assert gql.error_code(r) == code, (doc_id, who.roles, r)
    r = await gql(DOWNLOAD, {"id": prospectus})
    assert gql.error_code(r) == "UNAUTHENTICATED"
    # uploads: not by investors, not by another issuer
    resp = await upload(client, investor.token, active, PDF)
    assert resp.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    resp = await upload(client, other.token, active, PDF)
    assert resp.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_local_storage_round_trip_and_key_checks(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path)
    await store.put("assets/a/b", b"hello")
    assert await store.get("assets/a/b") == b"hello"
    await store.put("assets/a/b", b"again")  # atomic replace
    assert await store.get("assets/a/b") == b"again"
    assert [p.name for p in (tmp_path / "assets" / "a").iterdir()] == ["b"]  # no temp files left
    await store.delete("assets/a/b")
    with pytest.raises(ObjectMissing):
        await store.get("assets/a/b")
    for bad in ("../escape", "/abs", "a//b", "a/../../b", ""):
        with pytest.raises(ValueError):
            await store.put(bad, b"x")
