"""HTTP plumbing of the GraphQL view, below GraphQL: the request body's size limit and reading it, the caller's
credentials and content type from raw headers, the CSRF preflight check's refusal, and typed JSON error answers."""

from __future__ import annotations

import json

from cross_web import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Message, Receive


def error_response(message: str, code: str, status: int, **extensions: object) -> Response:
    body = {"data": None, "errors": [{"message": message, "extensions": {"code": code, **extensions}}]}
    return Response(json.dumps(body), status_code=status, media_type="application/json")


def is_json_media_type(content_type: bytes | None) -> bool:
    """`application/json`, parameters (charset) aside: what strawberry reads as a JSON body (it also accepts any
    media type containing that string, and refuses other spellings such as `Application/JSON`: those keep going
    through strawberry's run)."""
    return content_type is not None and content_type.partition(b";")[0].strip() == b"application/json"


def content_encoding_refused(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The request's Content-Encoding when it names a coding other than identity (every Content-Encoding header, each
    a comma-separated list), else None. Nothing here decodes a compressed body: it was read as plain JSON (a gzip body
    failed as malformed JSON at best), so it is refused with 415 instead, the same on every path of the view."""
    for name, value in headers:
        if name == b"content-encoding":
            codings = [c.strip().lower() for c in value.split(b",")]
            if any(c not in (b"", b"identity") for c in codings):
                return value.decode("latin-1")
    return None


def credentials_of(headers: list[tuple[bytes, bytes]]) -> tuple[str | None, str | None]:
    """The first Authorization and X-API-Key header values (as Starlette's Headers.get reads them), in one pass."""
    authorization = api_key = None
    for name, value in headers:
        if name == b"authorization":
            if authorization is None:
                authorization = value.decode("latin-1")
        elif name == b"x-api-key" and api_key is None:
            api_key = value.decode("latin-1")
    return authorization, api_key


async def read_body(request: Request) -> bytes:
    """Starlette's Request.body() without its async generator and aclosing wrapper: the same messages read, the
    same ClientDisconnect, the body kept on the request (strawberry's run reads it again for what it answers)."""
    if hasattr(request, "_body") or request._stream_consumed:
        return await request.body()
    receive = request.receive
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.request":
            chunk = message.get("body", b"")
            if chunk:
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        elif message["type"] == "http.disconnect":
            request._is_disconnected = True
            raise ClientDisconnect()
    request._stream_consumed = True
    body = request._body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    return body


class BodyTooLarge(Exception):
    pass


# headers a plain cross-site form cannot send (they force a CORS preflight): see GraphQLView.parse_multipart
PREFLIGHT_HEADERS = ("apollo-require-preflight", "x-apollo-operation-name")


class PreflightRequired(HTTPException):
    """A multipart request without a CSRF preflight header."""


def limit_body(receive: Receive, max_bytes: int) -> Receive:
    """`receive` that refuses a body (chunked or not) larger than max_bytes."""
    seen = 0

    async def limited() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > max_bytes:
                raise BodyTooLarge
        return message

    return limited
