"""`POST /oauth/token`: the OAuth 2.0 client-credentials grant (RFC 6749 §4.4) for partners' clients.

Form-encoded (`application/x-www-form-urlencoded`) body with `grant_type=client_credentials` and an optional
`scope`; the client authenticates with HTTP Basic (`client_id:client_secret`, each form-urlencoded, §2.3.1) or with
`client_id` + `client_secret` in the body, never both. Answers are JSON with `Cache-Control: no-store` and
`Pragma: no-cache` (§5.1); errors are §5.2's (`invalid_request`, `invalid_client` with 401 and
`WWW-Authenticate: Basic`, `unsupported_grant_type`, `invalid_scope`). Failed client authentications are counted
per address: past the limit the endpoint answers 429 with `Retry-After` before looking at the credentials.
"""

from __future__ import annotations

import base64
import binascii
import logging
from typing import Any
from urllib.parse import parse_qsl, unquote_plus

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from core.logging import request_id_var
from core.services import Services
from resolvers.identity.oauth_clients import OAuthError, client_credentials

log = logging.getLogger("rwa.oauth")
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
MAX_BODY = 8192
FAILURE_WINDOW_S = 60


def _answer(body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers={**NO_STORE, **(headers or {})})


def _error(exc: OAuthError, basic: bool) -> JSONResponse:
    headers = {"WWW-Authenticate": 'Basic realm="stablerwa", charset="UTF-8"'} if exc.status == 401 else {}
    return _answer({"error": exc.error, "error_description": exc.description}, exc.status, headers)


def _basic(header: str) -> tuple[str, str]:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value.strip():
        raise OAuthError("invalid_client", "use HTTP Basic client authentication", 401)
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise OAuthError("invalid_client", "malformed Basic credentials", 401) from exc
    client_id, sep, secret = decoded.partition(":")
    if not sep or "\x00" in unquote_plus(decoded):
        raise OAuthError("invalid_client", "malformed Basic credentials", 401)
    return unquote_plus(client_id), unquote_plus(secret)


async def _form(request: Request) -> dict[str, str]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise OAuthError("invalid_request", "the body must be application/x-www-form-urlencoded")
    body = await request.body()
    if len(body) > MAX_BODY:
        raise OAuthError("invalid_request", "request body too large")
    try:
        pairs = parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError as exc:
        raise OAuthError("invalid_request", "the body is not UTF-8") from exc
    form: dict[str, str] = {}
    for key, value in pairs:
        if "\x00" in key or "\x00" in value:  # no column stores NUL: refused here, not as a database error
            raise OAuthError("invalid_request", "parameters must not contain NUL")
        if key in form:  # §3.2: parameters MUST NOT be included more than once
            raise OAuthError("invalid_request", f"parameter {key} repeated")
        form[key] = value
    return form


async def _over_failure_limit(services: Services, ip: str) -> int:
    """Seconds to wait when this address failed client authentication too often in the window, else 0."""
    key = services.keys("rl", "oauth-token", "ip", ip)
    pipe = services.redis.pipeline(transaction=False)
    pipe.get(key)
    pipe.ttl(key)
    count, ttl = await pipe.execute()
    limit = services.settings.login_rate_per_minute * 3
    return max(int(ttl), 1) if count is not None and int(count) >= limit else 0


async def _count_failure(services: Services, ip: str) -> None:
    key = services.keys("rl", "oauth-token", "ip", ip)
    if await services.redis.incr(key) == 1:
        await services.redis.expire(key, FAILURE_WINDOW_S)


def token_endpoint(services: Services):
    async def endpoint(request: Request) -> Response:
        if request.method != "POST":
            return _answer({"error": "invalid_request", "error_description": "use POST"}, 405, {"Allow": "POST"})
        ip = request.client.host if request.client else "unknown"
        authorization = request.headers.get("authorization")
        basic = authorization is not None
        try:
            retry_after = await _over_failure_limit(services, ip)
            if retry_after:
                return _answer(
                    {
                        "error": "invalid_request",
                        "error_description": "too many failed client authentications from this address; retry later",
                    },
                    429,
                    {"Retry-After": str(retry_after)},
                )
            form = await _form(request)
            grant_type = form.get("grant_type")
            if not grant_type:
                raise OAuthError("invalid_request", "grant_type is required")
            if basic:
                if "client_secret" in form:
                    raise OAuthError("invalid_request", "use one client authentication method, not two")
                client_id, secret = _basic(authorization or "")
                if form.get("client_id") not in (None, client_id):
                    raise OAuthError("invalid_request", "client_id differs from the authenticated client")
            else:
                client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
                if not client_id or not secret:
                    raise OAuthError(
                        "invalid_client",
                        "client authentication required (HTTP Basic or client_id and client_secret)",
                        401,
                    )
            if grant_type != "client_credentials":
                raise OAuthError("unsupported_grant_type", "only grant_type=client_credentials is supported")
            try:
                grant = await client_credentials(services, client_id, secret, form.get("scope"), request_id_var.get())
            except OAuthError as exc:
                if exc.error == "invalid_client":
                    await _count_failure(services, ip)
                    log.info("oauth client authentication failed", extra={"client_id": client_id[:64]})
                raise
        except OAuthError as exc:
            return _error(exc, basic)
        return _answer(
            {
                "access_token": grant.access_token,
                "token_type": "Bearer",
                "expires_in": grant.expires_in,
                "scope": grant.scope,
            }
        )

    return endpoint
