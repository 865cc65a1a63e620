"""Asset documents. Upload with the GraphQL multipart request spec:

    curl http://host/graphql -H "Authorization: Bearer $T" -H "Apollo-Require-Preflight: true" \
      -F operations='{"query":"mutation($input: UploadAssetDocumentInput!){ uploadAssetDocument(input: $input){ document { id sha256 } errors { code field message } } }","variables":{"input":{"assetId":"...","kind":"PROSPECTUS","file":null}}}' \
      -F map='{"0":["variables.input.file"]}' -F 0=@prospectus.pdf

Strawberry 0.341 itself has no CSRF check for multipart requests (checked: the view parses any
multipart/form-data body), so the upload mutation requires a non-empty `Apollo-Require-Preflight` or
`X-Apollo-Operation-Name` header (BAD_USER_INPUT otherwise): a plain cross-site HTML form cannot set one.
"""

from __future__ import annotations

import base64
import uuid
from datetime import datetime
from typing import TypeAlias

import strawberry
from strawberry.file_uploads import Upload
from strawberry.types import Info

from models.assets import DocumentKind as DocumentKindModel
from models.identity import Role
from resolvers.assets import documents
from resolvers.assets.documents import DocumentRow
from resolvers.assets.loaders import db_lock
from schema.lookups import found
from schema.mutations import mutation
from schema.node import Node, register_node
from schema.permissions import authenticated, requires

strawberry.enum(DocumentKindModel)
DocumentKind: TypeAlias = DocumentKindModel


@strawberry.type(description="A stored file; sha256 is recorded at upload and checked again on every download.")
class AssetDocument(Node):
    asset_id: uuid.UUID
    kind: DocumentKind
    filename: str
    content_type: str
    size: int
    sha256: str
    created_at: datetime

    @classmethod
    def from_row(cls, r: DocumentRow) -> AssetDocument:
        return cls(
            id=r.id,
            asset_id=r.asset_id,
            kind=r.kind,
            filename=r.filename,
            content_type=r.content_type,
            size=r.size,
            sha256=r.sha256,
            created_at=r.created_at,
        )


@strawberry.type(description="A document's bytes (base64), after its sha256 was verified.")
class DocumentContent:
    document: AssetDocument
    content_base64: str


@strawberry.type
class Query:
    @strawberry.field(
        extensions=authenticated(),
        description=(
            "Download a document; null when missing or not visible. Fails with CONFLICT if "
            "the stored bytes no longer match."
        ),
    )
    async def document_content(self, info: Info, id: uuid.UUID) -> DocumentContent | None:
        got = await found(documents.download(info.context, id))
        if got is None:
            return None
        row, data = got
        return DocumentContent(document=AssetDocument.from_row(row), content_base64=base64.b64encode(data).decode())


@strawberry.type
class Mutation:
    @mutation(
        extensions=requires(Role.ISSUER, Role.COMPLIANCE, Role.ADMIN),
        result="document",
        description=f"Attach a file (max {documents.MAX_BYTES} bytes; PDF, PNG, JPEG, text, CSV).",
    )
    async def upload_asset_document(
        self, info: Info, asset_id: uuid.UUID, kind: DocumentKind, file: Upload
    ) -> AssetDocument:
        return AssetDocument.from_row(await documents.upload_document(info.context, asset_id, kind, file))


async def load_document(info: Info, id: uuid.UUID) -> AssetDocument | None:
    """`node(id)` for an AssetDocument: who may download it (`documentContent`) may see it."""
    if not info.context.viewer.authenticated:
        return None
    async with db_lock(info.context):
        row = await documents.readable_document(info.context, id)
    return None if row is None else AssetDocument.from_row(row)


register_node("AssetDocument", "asset_documents", load_document)
