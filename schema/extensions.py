"""The schema extension: cached parse/validation, limits, stable error codes with masking, per-operation metrics.

Every error leaving the API has `extensions.code`. Domain errors (`core.errors.AppError`) keep their message;
anything unexpected is logged with its traceback and replaced by "Internal server error" (code INTERNAL).
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from graphql import ExecutionResult as GraphQLExecutionResult
from graphql import GraphQLError
from strawberry.extensions import SchemaExtension
from strawberry.schema.exceptions import CannotGetOperationTypeError
from strawberry.types.execution import ExecutionResult as StrawberryExecutionResult
from strawberry.types.graphql import OperationType

from core.errors import AppError, ErrorCode, Forbidden, bounded
from core.metrics import GRAPHQL_ERRORS, GRAPHQL_LATENCY, GRAPHQL_REQUESTS
from core.transactions import transient_conflict, transient_sqlstate
from schema.cost import cached_cost, over_budget
from schema.document_cache import CachedDocument, DocumentCache
from schema.scopes import scope_refusal

log = logging.getLogger("rwa.graphql")

# The exact messages of strawberry's QueryDepthLimiter / MaxAliasesLimiter and graphql-core's token/size limits
# (MaxTokensLimiter). Anchored, so that a field named e.g. `tokens` in an ordinary validation error cannot match;
# tests/platform/test_graphql_limits.py fails if a library upgrade changes them.
_TOO_COMPLEX = re.compile(
    r"^(?:'[^']*' exceeds maximum operation depth of \d+"
    r"|\d+ aliases found\. Allowed: \d+"
    r"|Syntax Error: Document contains more than \d+ tokens\..*"
    r"|Syntax Error: Document is nested too deeply\..*"
    r"|Syntax Error: Source contains more than \d+ code points\..*)$",
    re.DOTALL,
)


class OperationNotChosen(CannotGetOperationTypeError):
    """No operationName while the document holds no operation or several (GraphQL spec, GetOperation: then
    operationName is required; schema/__init__.py). strawberry's HTTP view answers 400 with this reason."""

    def __init__(self) -> None:
        super().__init__(None)

    def as_http_error_reason(self) -> str:
        return "the document must hold exactly one operation, or operationName must name the one to run"


def operation_refusal(error: CannotGetOperationTypeError) -> str:
    """Why no operation was chosen: an operationName the document lacks, or none given (OperationNotChosen)."""
    return (OperationNotChosen() if error.operation_name is None else error).as_http_error_reason()


def classify(error: GraphQLError) -> GraphQLError:
    original = error.original_error
    existing = (error.extensions or {}).get("code")
    if isinstance(original, AppError):
        code, message, extra = original.code.value, original.message, original.extensions
    elif existing in ErrorCode.__members__:
        return error
    elif isinstance(
        original, CannotGetOperationTypeError
    ):  # over a websocket; HTTP answers 400 (server/graphql_view.py)
        code, message, extra = ErrorCode.BAD_USER_INPUT.value, operation_refusal(original), {}
    elif original is None or (error.path is None and error.message.startswith("Variable '$")):
        # parse/validation/variable-coercion errors: the client's document or variables are wrong (graphql-core 3.3
        # keeps the scalar's exception, e.g. "not a UUID", or its own GraphQLError as a bad variable's original_error)
        code = (
            ErrorCode.QUERY_TOO_COMPLEX.value if _TOO_COMPLEX.match(error.message) else ErrorCode.BAD_USER_INPUT.value
        )
        message, extra = bounded(error.message), {}  # graphql-core and strawberry quote the whole bad value
    elif error.path is None and isinstance(original, ValueError) and "integer string conversion" in str(original):
        # an Int/BigInt literal longer than int() converts (sys.get_int_max_str_digits(), 4300): graphql-core's
        # literal coercion let the ValueError through and it answered INTERNAL, logged with a traceback
        code, extra = ErrorCode.BAD_USER_INPUT.value, {}
        message = f"an integer literal has more than {sys.get_int_max_str_digits()} digits"
    elif (sqlstate := transient_sqlstate(original)) is not None:
        # a deadlock/serialization failure outside a retried unit (core.transactions): Postgres rolled the
        # transaction back, so the client may simply send the operation again
        log.warning("transaction aborted (%s) in %s", sqlstate, error.path)
        conflict = transient_conflict("send it again")
        code, message, extra = conflict.code.value, conflict.message, conflict.extensions
    else:
        log.error("unhandled error in %s", error.path, exc_info=original)
        code, message, extra = ErrorCode.INTERNAL.value, "Internal server error", {}
    return GraphQLError(
        message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        original_error=None,
        extensions={**extra, "code": code},
    )


def classify_all(errors: list[GraphQLError]) -> list[GraphQLError]:
    out = [classify(e) for e in errors]
    for e in out:
        GRAPHQL_ERRORS.labels((e.extensions or {})["code"]).inc()  # classify() always sets it
    return out


@dataclass(frozen=True)
class Limits:
    """What OperationLifecycle enforces, built once per schema."""

    documents: DocumentCache
    max_cost: int


class OperationLifecycle(SchemaExtension):
    """Everything the API does around each operation, in one extension with two hooks (every hook of every
    extension costs context-manager plumbing on each request):

    - operation start: parse and validate through the DocumentCache (token limit -> QUERY_TOO_COMPLEX; depth,
      alias and field-merge limits are checked first, in linear time, then graphql-core's and the introspection
      rule: schema/document_cache.py);
    - execute: queries get autocommit read sessions; API keys are read-only (mutations and subscriptions made
      with one are refused before execution, public fields included); the query cost is computed and an
      operation over budget is refused before execution (schema/cost.py); accepted ones report `cost`;
    - end: every error gets its `extensions.code` (unexpected ones masked and logged), requests and latency are
      counted per operation name, and the DB session goes back to the pool.

    Metrics label cardinality is bounded: a name is recorded verbatim only for documents that validated, and only
    the first `max_operation_names` distinct names are (later ones count as "other").
    """

    max_operation_names = 500
    _known_names: set[str] = set()
    _metrics: dict[tuple[str, str], tuple[Any, Any]] = {}

    def __init__(self, limits: Limits, *, execution_context: Any = None) -> None:
        self.limits = limits
        self.cost: int | None = None
        self._entry: CachedDocument | None = None
        if execution_context is not None:
            self.execution_context = execution_context

    async def on_operation(self):
        started = time.perf_counter()
        ctx = self.execution_context
        documents = self.limits.documents
        ctx.parse_options["max_tokens"] = documents.max_tokens
        ctx.parse_options["max_source_length"] = documents.max_source_length  # type: ignore[typeddict-unknown-key]  # strawberry types only max_tokens; graphql-core 3.3 parse() takes it
        self._validated = False
        if ctx.query and ctx.graphql_document is None:
            try:
                self._entry = documents.get(ctx.query)
            except GraphQLError:
                pass
            else:
                ctx.graphql_document = self._entry.document
                # strawberry validates only when this is None; it checks the operation type first either way
                ctx.pre_execution_errors = list(self._entry.errors)
                self._validated = not self._entry.errors
        try:
            yield
            result = ctx.result
            if isinstance(result, (GraphQLExecutionResult, StrawberryExecutionResult)) and result.errors:
                result.errors = classify_all(result.errors)
            elif (initial := getattr(result, "initial_result", None)) is not None and initial.errors:
                initial.errors = classify_all(initial.errors)
            self._record(ctx, started)
        finally:
            context = ctx.context
            if context is not None and not getattr(context, "keeps_session", False):
                await context.close()

    def on_stream_result(self, result: Any) -> Iterator[None]:
        """Streaming transports (a query or mutation sent over graphql-transport-ws) send each result before
        on_operation resumes: code and mask its errors here (on_operation counts them, once, for the metrics).
        Without this they left with no extensions.code and unexpected errors unmasked."""
        if getattr(result, "errors", None):
            result.errors = [classify(e) for e in result.errors]
        yield

    def on_execute(self) -> Iterator[None]:
        ctx = self.execution_context
        context = ctx.context
        op_type = ctx.operation_type
        if context is not None:
            # queries get autocommit sessions; on a websocket each operation gets database state of its own
            start = getattr(context, "start_operation", None)
            if start is not None:
                start(read_only=op_type is OperationType.QUERY)
            else:
                context.read_only = op_type is OperationType.QUERY
            viewer = getattr(context, "viewer", None)
            if viewer is not None and viewer.read_only and op_type is not OperationType.QUERY:
                # a result set before execution makes strawberry skip it; on_operation then gives it its code
                ctx.result = GraphQLExecutionResult(
                    data=None,
                    errors=[GraphQLError("API keys are read-only", original_error=Forbidden("API keys are read-only"))],
                )
            elif viewer is not None and getattr(viewer, "scopes", None) is not None:
                # an OAuth client's token: only the root fields its scopes allow (schema/scopes.py); a subscription
                # is refused by raising here (strawberry subscribes whatever the result)
                refused = scope_refusal(ctx.graphql_document, ctx.operation_name, viewer.scopes)
                if refused is not None and op_type is OperationType.SUBSCRIPTION:
                    raise refused
                if refused is not None:
                    ctx.result = GraphQLExecutionResult(
                        data=None, errors=[GraphQLError(refused.message, original_error=refused)]
                    )
        if ctx.graphql_document is not None and ctx.result is None:
            self.cost = cached_cost(ctx, self._entry)
            too_costly = over_budget(self.cost, self.limits.max_cost)
            if too_costly is not None:
                ctx.result = too_costly
        yield

    def get_results(self) -> dict[str, Any]:
        return {"cost": self.cost} if self.cost is not None else {}

    def _record(self, ctx: Any, started: float) -> None:
        name = ctx.operation_name or "anonymous"
        try:
            op_type = ctx.operation_type._value_  # the value, without enum's two-call property
        except Exception:  # the document did not parse: no operation type
            op_type = "invalid"
        if op_type == "invalid" or not self._validated:
            name = "invalid"
        elif len(name) > 64:
            name = "long-name"
        elif name not in self._known_names:
            if len(self._known_names) >= self.max_operation_names:
                name = "other"
            else:
                self._known_names.add(name)
        children = self._metrics.get((name, op_type))
        if children is None:  # bounded like the names (labels() takes a lock and validates on every call)
            children = self._metrics[(name, op_type)] = (
                GRAPHQL_REQUESTS.labels(name, op_type),
                GRAPHQL_LATENCY.labels(name),
            )
        children[0].inc()
        children[1].observe(time.perf_counter() - started)
