"""Asset documents: multipart upload with size/type limits, sha256 recorded, verified again on download.

Who may read: staff and the asset's issuer, every kind; any other signed-in user, the PUBLIC_KINDS of
assets they can see. Uploads: the issuer (DRAFT..ACTIVE, not RETIRED) and staff.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import BadUserInput, Conflict, Forbidden, InvalidTransition, NotFound
from core.settings import Settings
from core.storage import ObjectMissing, Storage, storage_from_settings
from models.assets import Asset, AssetDocument, AssetStatus, DocumentKind
from models.identity import Role
from resolvers import unit_of_work
from resolvers.assets.assets import STAFF, can_see, lock_asset
from resolvers.audit import record
from resolvers.context import Context
from resolvers.pagination import Page, keyset_page

log = logging.getLogger("rwa.documents")

MAX_BYTES = 10 * 1024 * 1024
PUBLIC_KINDS = frozenset({DocumentKind.PROSPECTUS, DocumentKind.REPORT})
# declared type -> leading bytes the content must start with (None: text, checked for UTF-8)
ALLOWED_TYPES: dict[str, bytes | None] = {
    "application/pdf": b"%PDF-",
    "image/png": b"\x89PNG\r\n\x1a\n",
    "image/jpeg": b"\xff\xd8\xff",
    "text/plain": None,
    "text/csv": None,
}
_storages: dict[int, Storage] = {}


def storage_for(settings: Settings) -> Storage:
    store = _storages.get(id(settings))
    if store is None:
        store = _storages[id(settings)] = storage_from_settings(settings)
    return store


@dataclass(slots=True)
class DocumentRow:
    id: uuid.UUID
    asset_id: uuid.UUID
    kind: DocumentKind
    filename: str
    content_type: str
    size: int
    sha256: str
    created_at: datetime


COLUMNS = (
    AssetDocument.id,
    AssetDocument.asset_id,
    AssetDocument.kind,
    AssetDocument.filename,
    AssetDocument.content_type,
    AssetDocument.size,
    AssetDocument.sha256,
    AssetDocument.created_at,
)


def _filename(raw: str | None) -> str:
    name = (raw or "document").replace("\\", "/").rsplit("/", 1)[-1].strip()
    name = "".join(ch for ch in name if ch.isprintable())[:255]
    return name or "document"


def check_content(content_type: str, data: bytes) -> str:
    ctype = (content_type or "").split(";", 1)[0].strip().lower()
    if ctype not in ALLOWED_TYPES:
        raise BadUserInput(
            f"content type {ctype or 'unknown'!r} is not accepted", field="file", allowed=sorted(ALLOWED_TYPES)
        )
    magic = ALLOWED_TYPES[ctype]
    if magic is not None and not data.startswith(magic):
        raise BadUserInput(f"file content is not {ctype}", field="file")
    if magic is None:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadUserInput(f"file content is not UTF-8 {ctype}", field="file") from exc
    return ctype


async def read_upload(upload: Any, max_bytes: int = MAX_BYTES) -> tuple[bytes, str, str]:
    """(data, filename, declared content type) from a Starlette UploadFile, refusing more than max_bytes."""
    if not hasattr(upload, "read"):
        raise BadUserInput("file must be sent as a multipart upload", field="file")
    data = await upload.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise BadUserInput(f"file is larger than {max_bytes} bytes", field="file", maxBytes=max_bytes)
    if not data:
        raise BadUserInput("file is empty", field="file")
    return data, _filename(getattr(upload, "filename", None)), getattr(upload, "content_type", "") or ""


def check_preflight(ctx: Context) -> None:
    """CSRF guard for multipart requests (strawberry 0.341 has none): a plain cross-site HTML form cannot set a
    custom header, so require `Apollo-Require-Preflight` or `X-Apollo-Operation-Name` like Apollo Server does."""
    headers = getattr(ctx.request, "headers", {})
    if not (headers.get("apollo-require-preflight") or headers.get("x-apollo-operation-name")):
        raise BadUserInput("multipart uploads need the Apollo-Require-Preflight header", field="file")


async def upload_document(ctx: Context, asset_id: uuid.UUID, kind: DocumentKind, upload: Any) -> DocumentRow:
    user_id = ctx.viewer.require_user()
    check_preflight(ctx)
    roles = ctx.viewer.roles
    data, filename, declared = await read_upload(upload)
    ctype = check_content(declared, data)
    session = await ctx.session()
    asset = await lock_asset(session, asset_id, user_id, roles)
    if not (roles & STAFF or (asset.issuer_id == user_id and Role.ISSUER.value in roles)):
        raise Forbidden("only the asset's issuer or staff may upload documents")
    if asset.status is AssetStatus.RETIRED:
        raise InvalidTransition("asset", asset.status.value, asset.status.value)
    doc_id = uuid.uuid4()
    key = f"assets/{asset.id}/{doc_id}"
    digest = hashlib.sha256(data).hexdigest()
    await storage_for(ctx.settings).put(key, data, ctype)
    doc = AssetDocument(
        id=doc_id,
        asset_id=asset.id,
        kind=kind,
        filename=filename,
        content_type=ctype,
        size=len(data),
        sha256=digest,
        storage_key=key,
        uploaded_by=user_id,
    )
    session.add(doc)
    record(
        session,
        actor_id=user_id,
        action="asset.upload_document",
        target_type="asset",
        target_id=asset.id,
        request_id=ctx.request_id,
        details={"document": str(doc_id), "kind": kind.value, "sha256": digest, "size": len(data)},
    )
    try:
        # durable here, not at the unit's end: the blob is already stored and is deleted when this fails
        await session.commit()
    except Exception:
        await storage_for(ctx.settings).delete(key)  # no orphaned blob when the row did not land
        raise
    await session.refresh(doc)
    return DocumentRow(*(getattr(doc, c.key) for c in COLUMNS))


def may_read(asset: Asset, kind: DocumentKind, user_id: uuid.UUID | None, roles: frozenset[str]) -> bool:
    if roles & STAFF or (asset.issuer_id == user_id and Role.ISSUER.value in roles):
        return True
    return kind in PUBLIC_KINDS and can_see(asset, user_id, roles)


def readable_kinds(asset_issuer: uuid.UUID, user_id: uuid.UUID | None, roles: frozenset[str]) -> list[DocumentKind]:
    if roles & STAFF or (asset_issuer == user_id and Role.ISSUER.value in roles):
        return list(DocumentKind)
    return sorted(PUBLIC_KINDS, key=lambda k: k.value)


async def documents_page(
    session: AsyncSession,
    asset_id: uuid.UUID,
    kinds: list[DocumentKind],
    first: int | None,
    after: str | None,
    last: int | None,
    before: str | None,
) -> Page[DocumentRow]:
    stmt = select(*COLUMNS).where(AssetDocument.asset_id == asset_id, AssetDocument.kind.in_(kinds))
    page = await keyset_page(
        session,
        stmt,
        [AssetDocument.created_at, AssetDocument.id],
        descending=True,
        first=first,
        after=after,
        last=last,
        before=before,
        scalars=False,
    )
    return page.map(lambda r: DocumentRow(*r))


async def _readable(ctx: Context, document_id: uuid.UUID) -> AssetDocument:
    user_id, roles = ctx.viewer.require_user(), ctx.viewer.roles
    session = await ctx.session()
    found = (
        await session.execute(
            select(AssetDocument, Asset)
            .join(Asset, Asset.id == AssetDocument.asset_id)
            .where(AssetDocument.id == document_id)
        )
    ).first()
    if found is None or not may_read(found[1], found[0].kind, user_id, roles):
        raise NotFound("document not found")
    doc: AssetDocument = found[0]
    return doc


async def readable_document(ctx: Context, document_id: uuid.UUID) -> DocumentRow | None:
    """The document's row if the caller may read it (as `download` would allow), else None."""
    try:
        doc = await _readable(ctx, document_id)
    except NotFound:
        return None
    return DocumentRow(*(getattr(doc, c.key) for c in COLUMNS))


async def download(ctx: Context, document_id: uuid.UUID) -> tuple[DocumentRow, bytes]:
    """The document and its bytes, after checking access and that the bytes still hash to the recorded sha256."""
    user_id = ctx.viewer.require_user()
    session = await ctx.session()
    doc = await _readable(ctx, document_id)
    try:
        data = await storage_for(ctx.settings).get(doc.storage_key)
    except ObjectMissing as exc:
        log.error("document %s is missing from storage (%s)", doc.id, doc.storage_key)
        raise Conflict("document content is missing from storage", integrity="MISSING") from exc
    if hashlib.sha256(data).hexdigest() != doc.sha256 or len(data) != doc.size:
        log.error("document %s failed its sha256 check: stored content was altered", doc.id)
        raise Conflict("document content does not match its recorded sha256", integrity="MISMATCH")
    record(
        session,
        actor_id=user_id,
        action="asset.download_document",
        target_type="document",
        target_id=doc.id,
        request_id=ctx.request_id,
    )
    await unit_of_work.commit(session)
    return DocumentRow(*(getattr(doc, c.key) for c in COLUMNS)), data
