"""Report downloads over HTTP, authorized like /graphql (Authorization: Bearer <access token or API key>, or
X-API-Key), with the same rules as the GraphQL fields (resolvers/reports/):

    GET /reports/cap-table.csv?chainId=1&token=0x...[&atBlock=N | &atTime=2026-06-30T00:00:00Z]   every holder
    GET /reports/statement.csv?from=...&to=...[&userId=...]
    GET /reports/statement.pdf?from=...&to=...[&userId=...]

Errors answer with the GraphQL error shape and the code's HTTP status (400 BAD_USER_INPUT, 401 UNAUTHENTICATED,
403 FORBIDDEN, 404 NOT_FOUND, 405 for a method other than GET); OAuth client tokens are refused (no scope opens
reports: FORBIDDEN, reason INSUFFICIENT_SCOPE); anything unexpected is logged and answers 500 INTERNAL without details. Each
download writes an audit row (`report.cap_table.download`, `report.statement.download`): the files carry
personal data.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Literal, overload

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from core.errors import AppError, BadUserInput, ErrorCode, Forbidden
from core.logging import request_id_var
from core.services import Services
from resolvers.audit import record
from resolvers.reports import cap_table as caps
from resolvers.reports import exports, statements
from resolvers.viewer import Viewer, viewer_from_headers
from server.graphql_view import error_response

log = logging.getLogger("rwa.reports")

STATUS = {
    ErrorCode.BAD_USER_INPUT: 400,
    ErrorCode.UNAUTHENTICATED: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.CONFLICT: 409,
    ErrorCode.RATE_LIMITED: 429,
}


def _int(request: Request, name: str, required: bool = False) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        if required:
            raise BadUserInput(f"{name} is required", field=name)
        return None
    # ASCII digits only: int() also took " 7", "1_0" and Unicode digits ("٣" was block 3)
    if not (raw.isascii() and raw.removeprefix("-").isdigit() and len(raw) <= 40):
        raise BadUserInput(f"{name} must be an integer", field=name)
    return int(raw)


def _text(request: Request, name: str) -> str:
    raw = request.query_params.get(name)
    if not raw:
        raise BadUserInput(f"{name} is required", field=name)
    return raw


@overload
def _instant(request: Request, name: str, required: Literal[True]) -> datetime: ...
@overload
def _instant(request: Request, name: str, required: bool = False) -> datetime | None: ...
def _instant(request: Request, name: str, required: bool = False) -> datetime | None:
    raw = request.query_params.get(name)
    if not raw:
        if required:
            raise BadUserInput(f"{name} is required", field=name)
        return None
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise BadUserInput(f"{name} must be an ISO 8601 instant with an offset", field=name) from None
    if value.tzinfo is None:
        raise BadUserInput(f"{name} needs a time zone offset", field=name)
    return value


def _uuid(request: Request, name: str) -> uuid.UUID | None:
    raw = request.query_params.get(name)
    if not raw:
        return None
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise BadUserInput(f"{name} must be a UUID", field=name) from None


def _file(body: bytes | str, media_type: str, filename: str) -> Response:
    return Response(
        body,
        media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"},
    )


async def _audit(
    services: Services, viewer: Viewer, action: str, target_type: str, target_id: object, details: dict[str, object]
) -> None:
    async with services.session_factory() as session:
        record(
            session,
            actor_id=viewer.user_id,
            action=action,
            target_type=target_type,
            target_id=target_id,
            request_id=request_id_var.get(),
            details={**details, "apiKey": viewer.read_only},
        )
        await session.commit()


async def cap_table_csv(services: Services, viewer: Viewer, request: Request) -> Response:
    async with (services.read_session_factory or services.session_factory)() as session:
        table = await caps.cap_table(
            session,
            viewer,
            chain_id=_int(request, "chainId", required=True) or 0,
            token=_text(request, "token"),
            at_block=_int(request, "atBlock"),
            at_time=_instant(request, "atTime"),
            cipher=services.cipher,
        )
    await _audit(
        services,
        viewer,
        "report.cap_table.download",
        "token",
        table.token.id,
        {
            "chainId": table.token.chain_id,
            "token": table.token.address,
            "block": table.at_block,
            "holders": table.holder_count,
        },
    )
    response = _file(exports.cap_table_csv(table), "text/csv; charset=utf-8", exports.cap_table_filename(table))
    response.headers["X-Cap-Table-Block"] = str(table.at_block)
    response.headers["X-Cap-Table-Final"] = "true" if table.final else "false"
    return response


async def _statement(services: Services, viewer: Viewer, request: Request) -> statements.Statement:
    async with (services.read_session_factory or services.session_factory)() as session:
        s = await statements.statement(
            session,
            viewer,
            period_from=_instant(request, "from", required=True),
            period_to=_instant(request, "to", required=True),
            user_id=_uuid(request, "userId"),
            cipher=services.cipher,
        )
    await _audit(
        services,
        viewer,
        "report.statement.download",
        "user",
        s.user_id,
        {
            "from": s.period_from.isoformat(),
            "to": s.period_to.isoformat(),
            "format": request.url.path.rsplit(".", 1)[-1],
        },
    )
    return s


async def statement_csv(services: Services, viewer: Viewer, request: Request) -> Response:
    s = await _statement(services, viewer, request)
    return _file(exports.statement_csv(s), "text/csv; charset=utf-8", exports.statement_filename(s, "csv"))


async def statement_pdf(services: Services, viewer: Viewer, request: Request) -> Response:
    s = await _statement(services, viewer, request)
    return _file(exports.statement_pdf(s), "application/pdf", exports.statement_filename(s, "pdf"))


Handler = Callable[[Services, Viewer, Request], Awaitable[Response]]
# every method reaches the endpoint, which answers all but GET with a typed JSON 405 (as /graphql does)
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]


def _endpoint(services: Services, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        if request.method not in ("GET", "HEAD"):
            response = error_response("reports are downloaded with GET", ErrorCode.BAD_USER_INPUT.value, 405)
            response.headers["Allow"] = "GET"
            return response
        try:
            client_ip = request.client.host if request.client else "unknown"
            viewer = await viewer_from_headers(
                services, request.headers.get("authorization"), request.headers.get("x-api-key"), client_ip
            )
            if getattr(viewer, "scopes", None) is not None:  # an OAuth partner client: no scope opens reports
                raise Forbidden("reports are not open to OAuth client tokens", reason="INSUFFICIENT_SCOPE")
            return await handler(services, viewer, request)
        except AppError as exc:
            return error_response(exc.message, exc.code.value, STATUS.get(exc.code, 400), **exc.extensions)
        except Exception:
            log.exception("report download failed")
            return error_response("internal error", ErrorCode.INTERNAL.value, 500)

    return endpoint


def report_routes(services: Services) -> list[Route]:
    return [
        Route(path, _endpoint(services, handler), methods=METHODS)
        for path, handler in (
            ("/reports/cap-table.csv", cap_table_csv),
            ("/reports/statement.csv", statement_csv),
            ("/reports/statement.pdf", statement_pdf),
        )
    ]
