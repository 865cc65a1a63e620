"""The Strawberry ASGI view: builds the per-request context, serves only graphql-transport-ws, and answers
malformed HTTP requests with typed JSON errors instead of plain-text 400s. Below it: server/http_requests.py (body
limits, credentials, error answers) and server/json_bodies.py (what a body may hold, how answers are encoded)."""

from __future__ import annotations

import contextvars
import json
from datetime import timedelta
from typing import Any

from cross_web import HTTPException
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError, MissingQueryError
from strawberry.http import GraphQLRequestData
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType
from strawberry.types.unset import UNSET

from core.errors import AppError
from core.metrics import WEBSOCKETS_CLOSED_BY_SERVER
from core.services import Services
from resolvers.viewer import Viewer, viewer_from_headers
from schema.extensions import classify_all, operation_refusal
from server.context import Context
from server.graphiql import PAGE_HEADERS
from server.http_requests import (
    PREFLIGHT_HEADERS,
    BodyTooLarge,
    PreflightRequired,
    content_encoding_refused,
    credentials_of,
    error_response,
    is_json_media_type,
    limit_body,
    read_body,
)
from server.json_bodies import decode_checked, encode_http_json, well_formed_ws_message
from server.persisted_queries import NOT_FOUND_MESSAGE, PersistedQueries, PersistedQueryNotFound, etag_matches, etag_of
from server.response_cache import CachedAnswer, Plan, RecordingViewer, ResponseCache
from server.shared_subscriptions import SharedBytesWebSocketAdapter, SharedDeliveryHandler

# set by parse_http_body when the request named a persisted query (run in __call__'s task, read after it)
_persisted: contextvars.ContextVar[bool] = contextvars.ContextVar("rwa_persisted_query", default=False)
# the response-cache plan of the running HTTP request, and the versions read before it executed
_cache_plan: contextvars.ContextVar[tuple[Plan, tuple[int, ...]] | None] = contextvars.ContextVar(
    "rwa_response_cache_plan", default=None
)

# what strawberry allows over POST (OperationType.from_http); RwaSchema.execute refuses subscriptions over HTTP
_POST_OPERATIONS = frozenset(OperationType.from_http("POST"))
# methods whose requests carry no body: a Content-Encoding on them encodes nothing the view reads
_BODILESS = frozenset({"GET", "HEAD", "OPTIONS"})


def _with_credentials(request: Request) -> bool:
    """Whether the request may have been answered for someone: the caller it was executed for is signed in, or
    it carries any Authorization / X-API-Key header at all. `public` was decided from the last such header (a dict
    of them) while the caller is the first one's (credentials_of): a signed-in `me` sent with a second, empty
    Authorization header went out as `public, max-age`, for any shared cache to keep."""
    context = request.scope.get("rwa.context")
    viewer = getattr(context, "viewer", None)
    if viewer is not None and viewer.authenticated:
        return True
    return any(name in (b"authorization", b"x-api-key") for name, _ in request.scope.get("headers") or ())


class GraphQLView(GraphQL[Context, None]):
    websocket_adapter_class = SharedBytesWebSocketAdapter
    graphql_transport_ws_handler_class = SharedDeliveryHandler

    def __init__(self, schema, services: Services, graphiql_html: str | None) -> None:
        super().__init__(
            schema,
            graphql_ide="graphiql" if graphiql_html is not None else None,
            # GET runs persisted queries only (parse_http_body refuses the others): cacheable reads
            allow_queries_via_get=True,
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
            connection_init_wait_timeout=timedelta(seconds=services.settings.ws_init_timeout_s),
            max_subscriptions_per_connection=50,
            multipart_uploads_enabled=True,
            # Browsers apply no CORS to WebSockets; strawberry refuses a cross-origin handshake (403) unless its
            # origin is listed: the CORS_ORIGINS front-ends may subscribe, other pages may not.
            allowed_origins=services.settings.allowed_origins,
        )
        self.services = services
        self._graphiql_html = graphiql_html
        settings = services.settings
        self.persisted = PersistedQueries(
            services.redis, services.keys, ttl_s=settings.apq_ttl_s, max_query_bytes=settings.apq_max_query_bytes
        )
        self.response_cache = ResponseCache(services) if settings.response_cache_enabled else None
        # POST application/json runs through _run_json_post unless strawberry would answer it some other way
        # (a streaming transport chosen by the Accept header, incremental delivery)
        self._json_post_fast = (
            not self._stream_transport_map and not schema.config.enable_experimental_incremental_execution
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        settings = self.services.settings
        headers = dict(scope.get("headers") or [])
        multipart = headers.get(b"content-type", b"").lower().startswith(b"multipart/")
        max_bytes = settings.max_upload_bytes if multipart else settings.max_request_bytes
        request = Request(scope=scope, receive=limit_body(receive, max_bytes))
        try:
            declared = int(headers.get(b"content-length", b"0") or 0)
        except ValueError:
            declared = 0
        try:
            if declared > max_bytes:
                raise BodyTooLarge
            if scope["method"] not in _BODILESS and (coding := content_encoding_refused(scope.get("headers") or [])):
                response = error_response(
                    f"Content-Encoding {coding!r} is not supported; send the body uncompressed",
                    "BAD_USER_INPUT",
                    415,
                    reason="UNSUPPORTED_CONTENT_ENCODING",
                )
                response.headers["Accept-Encoding"] = "identity"
                await response(scope, receive, send)
                return
            _persisted.set(False)
            _cache_plan.set(None)
            try:
                if (
                    self._json_post_fast
                    and scope["method"] == "POST"
                    and is_json_media_type(headers.get(b"content-type"))
                ):
                    response = await self._run_json_post(request)
                else:
                    response = await self.run(request)
                planned = _cache_plan.get()
                if planned is not None:
                    response.headers["X-Cache"] = "MISS"
                    body = bytes(response.body)
                    if response.status_code == 200 and b'"errors"' not in body and self.response_cache is not None:
                        context = request.scope.get("rwa.context")
                        viewer = context.viewer if context is not None else None
                        identity_read = not isinstance(viewer, RecordingViewer) or viewer.identity_read
                        self.response_cache.store(planned[0], planned[1], body, identity_read)
            except CachedAnswer as cached:
                response = Response(cached.body, media_type="application/json", headers={"X-Cache": "HIT"})
            if _persisted.get() and request.method == "GET" and response.status_code == 200:
                response = self._cacheable(response, headers, _with_credentials(request))
        except PersistedQueryNotFound:
            response = error_response(NOT_FOUND_MESSAGE, "PERSISTED_QUERY_NOT_FOUND", 200)
        except BodyTooLarge:
            response = error_response(
                f"request body larger than {max_bytes} bytes", "BAD_USER_INPUT", 413, maxBytes=max_bytes
            )
        except HTTPException as exc:
            if exc.status_code == 404 and request.method == "GET":
                response = error_response("GraphiQL is disabled; POST GraphQL requests", "NOT_FOUND", 404)
            elif exc.status_code == 405:
                response = error_response(exc.reason, "BAD_USER_INPUT", 405)
            elif isinstance(exc, PreflightRequired):
                response = error_response(exc.reason, "BAD_USER_INPUT", 400, reason="CSRF_PREFLIGHT_REQUIRED")
            else:
                response = error_response(exc.reason, "BAD_USER_INPUT", exc.status_code)
        except StarletteHTTPException as exc:  # request.form(): a multipart body without boundary or malformed
            response = error_response(exc.detail, "BAD_USER_INPUT", exc.status_code)
        except AppError as exc:  # raised while building the context (bad credentials, rate limits)
            response = error_response(exc.message, exc.code.value, 200, **exc.extensions)
        await response(scope, receive, send)

    def should_render_graphql_ide(self, request) -> bool:
        """A GET naming a persisted query (no `query` parameter) is a query, not a browser opening the page."""
        return "extensions" not in request.query_params and super().should_render_graphql_ide(request)

    async def _run_json_post(self, request: Request) -> Response:
        """strawberry's `run` for the usual request, a POST of one JSON operation, without its generic HTTP plumbing
        (request adapter, content-type parsing through email.message, IDE and streaming checks: ~15% of a small
        query's CPU). The same steps in the same order: the context (the caller: bad credentials answer before a bad
        body), the body, persisted queries and the response cache, execution, process_result, create_response.
        Anything else in the body (a batch, a field of the wrong type) goes to strawberry's `run`, which answers it
        as before."""
        root_value = None  # strawberry's get_root_value, not overridden here
        sub_response = await self.get_sub_response(request)
        context = await self.get_context(request, response=sub_response)
        data = self.parse_json(await read_body(request))
        query, variables, extensions = data.get("query"), data.get("variables"), data.get("extensions")
        if not (
            (query is None or isinstance(query, str))
            and (variables is None or isinstance(variables, dict))
            and (extensions is None or isinstance(extensions, dict))
        ):
            return await self.run(request, context=context, root_value=root_value)
        request_data = await self._resolve_request_data(
            request, GraphQLRequestData(query, variables, data.get("operationName"), extensions)
        )
        try:
            result = await self.schema.execute(
                request_data.query,
                root_value=root_value,
                variable_values=request_data.variables,
                context_value=context,
                operation_name=request_data.operation_name,
                allowed_operation_types=_POST_OPERATIONS,
                operation_extensions=request_data.extensions,
            )
        except CannotGetOperationTypeError as e:
            raise HTTPException(400, operation_refusal(e)) from e
        except InvalidOperationTypeError as e:
            raise HTTPException(400, e.as_http_error_reason("POST")) from e
        except MissingQueryError as e:
            raise HTTPException(400, "No GraphQL query found in the request") from e
        if not isinstance(result, ExecutionResult):  # not produced with the settings checked in __init__
            raise TypeError(f"unexpected result {type(result).__name__} of a POST operation")
        response_data = await self.process_result(request, result)
        if result.errors:
            self._handle_errors(result.errors, response_data)
        return self.create_response(response_data, sub_response)

    async def parse_http_body(self, request):
        """Automatic persisted queries (server/persisted_queries.py): a persistedQuery extension supplies or names
        the document. GET runs persisted queries only."""
        data = await super().parse_http_body(request)
        if isinstance(data, list):
            return data
        return await self._resolve_request_data(request, data)

    async def _resolve_request_data(self, request, data: GraphQLRequestData) -> GraphQLRequestData:
        """The document of a persisted query, and the response cache's answer (CachedAnswer) or plan."""
        digest = PersistedQueries.requested_hash(data.extensions)
        if digest is None:
            if request.method == "GET":
                raise HTTPException(
                    400,
                    "GET runs persisted queries only (extensions.persistedQuery, Apollo's "
                    "automatic persisted queries); POST other queries",
                )
            await self._from_cache(request, data)
            return data
        data.query = await self.persisted.resolve(digest, data.query)
        _persisted.set(True)
        await self._from_cache(request, data)
        return data

    async def _from_cache(self, request: Request, data) -> None:
        """A cacheable read (server/response_cache.py) answered from the cache raises CachedAnswer; a miss
        remembers its plan so the answer is stored. The caller is identified first (as get_context would, which
        then reuses it): who asks decides which cached answer applies."""
        cache = self.response_cache
        if cache is None:
            return
        # strawberry hands parse_http_body its request adapter (cross_web); the Starlette request is inside it
        request = getattr(request, "_request", request)
        context = request.scope.get("rwa.context")  # strawberry builds the context before it parses the body
        if context is None:
            return
        viewer = context.viewer
        plan = cache.plan(data.query, data.operation_name, data.variables, viewer)
        if plan is None:
            return
        body, versions = await cache.lookup(plan, viewer.client_ip)  # get_context's, from the same scope
        if body is not None:
            raise CachedAnswer(body)
        # executed with a viewer that notices whether the answer depends on who asks (stored accordingly)
        context.viewer = RecordingViewer.of(viewer)
        _cache_plan.set((plan, versions))

    def _cacheable(self, response: Response, headers: dict[bytes, bytes], with_credentials: bool) -> Response:
        """A GET persisted query's answer: public when no credentials came with it (public data only), private
        otherwise; an ETag, and 304 when the client already holds this body. Answers with errors stay no-store."""
        body = bytes(response.body)
        if b'"errors"' in body:
            return response
        anonymous = not with_credentials
        max_age = self.services.settings.apq_public_max_age_s
        cache_control = f"public, max-age={max_age}" if anonymous else "private, no-cache"
        etag = etag_of(body)
        if etag_matches(headers.get(b"if-none-match", b"").decode("latin-1"), etag):
            return Response(status_code=304, headers={"ETag": etag, "Cache-Control": cache_control})
        response.headers["ETag"] = etag
        response.headers["Cache-Control"] = cache_control
        response.headers["Vary"] = "Authorization, X-API-Key"
        return response

    def create_response(self, response_data, sub_response: Response) -> Response:
        """strawberry's, with the body encoded by orjson (~5x faster than json.dumps on a page of results).
        Websocket messages keep encode_json."""
        response = Response(encode_http_json(response_data), status_code=200, media_type="application/json")
        if sub_response.raw_headers:  # usually none (get_sub_response): no MutableHeaders built to merge nothing
            response.raw_headers.extend(sub_response.raw_headers)
        if sub_response.background:
            response.background = sub_response.background
        if sub_response.status_code:
            response.status_code = sub_response.status_code
        return response

    def decode_json(self, data: str | bytes) -> object:
        """graphql-transport-ws messages (strawberry's ASGI adapter decodes each with this; its handler closes the
        socket with 4400 on JSONDecodeError). A message of the wrong shape (an array, a subscribe payload that is
        not an object with a string query) crashed the handler instead: the socket dropped without a close code."""
        message = decode_checked(data)
        if not well_formed_ws_message(message):
            raise json.JSONDecodeError("not a graphql-transport-ws message", "", 0)
        return message

    def parse_json(self, data: str | bytes) -> dict[str, Any]:
        """HTTP bodies (and GET/multipart JSON parameters): a JSON object, else a typed 400."""
        try:
            decoded = decode_checked(data)
        except json.JSONDecodeError as exc:
            raise HTTPException(400, f"Unable to parse request body as JSON: {exc.msg}") from exc
        if not isinstance(decoded, dict):
            raise HTTPException(400, "the request body must be a JSON object")
        return decoded

    async def process_result(self, request: Request, result):
        # Last line of defence: an error that bypassed the schema's OperationLifecycle (raised from an extension hook,
        # say) still leaves with a code, and masked if it is not a domain error.
        if result.errors and any("code" not in (e.extensions or {}) for e in result.errors):
            uncoded = [e for e in result.errors if "code" not in (e.extensions or {})]
            fixed = iter(classify_all(uncoded))
            result.errors = [next(fixed) if "code" not in (e.extensions or {}) else e for e in result.errors]
        return await super().process_result(request, result)

    async def render_graphql_ide(self, request: Request) -> Response:
        return HTMLResponse(self._graphiql_html or "", headers=PAGE_HEADERS)

    async def parse_multipart(self, request):
        """CSRF: a cross-site HTML form can send a multipart POST without a CORS preflight, and it runs with the
        victim's cookies or ambient credentials. Strawberry 0.341 has no check, so every multipart request (any
        operation, not only uploads) must carry a header such a form cannot set, as Apollo Server requires.
        Checked where strawberry decides the body is multipart, before the form is read."""
        headers = request.headers
        if not any((headers.get(name) or "").strip() for name in PREFLIGHT_HEADERS):
            raise PreflightRequired(
                400, "multipart requests need a non-empty Apollo-Require-Preflight (or X-Apollo-Operation-Name) header"
            )
        try:
            return await super().parse_multipart(request)
        except (IndexError, TypeError, ValueError, AttributeError) as exc:
            # strawberry walks each `map` path into the operations unchecked (it catches only KeyError): a list
            # index past the end ("variables.files.5"), a path through a string or a number, a non-numeric list
            # index or a path that is not a string came back HTTP 500
            raise HTTPException(400, "the multipart map names a path the operations do not have") from exc

    async def get_sub_response(self, request: Request | WebSocket) -> Response:
        """strawberry's (a response whose headers, status and background task the answer takes over), without
        deleting its content-length through a MutableHeaders: no headers at all."""
        sub_response = Response.__new__(Response)  # Response() renders an empty body and its headers: unused
        sub_response.body = b""
        sub_response.background = None
        sub_response.status_code = None  # type: ignore[assignment]  # strawberry's "not set"
        sub_response.raw_headers = []
        return sub_response

    async def get_context(self, request: Request | WebSocket, response: Response | WebSocket) -> Context:
        client = request.scope.get("client")  # Starlette's request.client, without building an Address
        client_ip = client[0] if client else "unknown"
        if isinstance(request, WebSocket):
            # sockets authenticate through the connection_init payload (see on_ws_connect)
            return Context(self.services, request, response, Viewer(client_ip=client_ip))
        authorization, api_key = credentials_of(request.scope["headers"])
        viewer = await viewer_from_headers(self.services, authorization, api_key, client_ip)
        context = Context(self.services, request, response, viewer)
        request.scope["rwa.context"] = context  # the response cache (parse_http_body, after this) reads the caller
        return context

    async def on_ws_connect(self, context: Context):
        params = context.connection_params or {}
        auth = params.get("authorization") or params.get("Authorization")
        if auth:
            try:
                context.viewer = await viewer_from_headers(self.services, str(auth), None, context.viewer.client_ip)
            except AppError as exc:
                raise ConnectionRejectionError({"code": exc.code.value, "message": exc.message}) from exc
            _end_with_session(self.services, context)
        # a socket lives for many operations: its DB session is opened per use, not kept per operation
        return UNSET


def _end_with_session(services: Services, context: Context) -> None:
    """A socket authenticated by an access token closes (4403) when its session or user is revoked, on whichever
    process that happens: it would otherwise keep delivering private events until the token expires."""
    viewer, socket = context.viewer, context.request
    if viewer.session_family is None or viewer.issued_at is None or not isinstance(socket, WebSocket):
        return

    async def end() -> None:
        WEBSOCKETS_CLOSED_BY_SERVER.labels("4403").inc()
        try:
            await socket.close(code=4403, reason="session revoked")
        except Exception:  # noqa: BLE001 - already closing: nothing left to end
            pass

    context.revocation_watch = services.revocations.watch(
        str(viewer.user_id), viewer.session_family, viewer.issued_at, end
    )
