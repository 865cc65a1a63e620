"""Schema extensions: stable error codes with masking, and per-operation metrics.

Every error leaving the API has `extensions.code`. Domain errors (`core.errors.AppError`) keep their message;
anything unexpected is logged with its traceback and replaced by "Internal server error" (code INTERNAL).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from typing import Any

from graphql import GraphQLError
from graphql import ExecutionResult as GraphQLExecutionResult
from strawberry.extensions import ParserCache, SchemaExtension
from strawberry.types.graphql import OperationType
from strawberry.types.execution import ExecutionResult as StrawberryExecutionResult

from core.errors import AppError, ErrorCode, Forbidden
from core.metrics import GRAPHQL_ERRORS, GRAPHQL_LATENCY, GRAPHQL_REQUESTS

log = logging.getLogger("rwa.graphql")

# The exact messages of strawberry's QueryDepthLimiter / MaxAliasesLimiter and graphql-core's token/size limits
# (MaxTokensLimiter). Anchored, so that a field named e.g. `tokens` in an ordinary validation error cannot match;
# tests/platform/test_graphql_limits.py fails if a library upgrade changes them.
_TOO_COMPLEX = re.compile(
    r"^(?:'[^']*' exceeds maximum operation depth of \d+"
    r"|\d+ aliases found\. Allowed: \d+"
    r"|Syntax Error: Document contains more than \d+ tokens\..*"
    r"|Syntax Error: Source contains more than \d+ code points\..*)$",
    re.DOTALL,
)


def classify(error: GraphQLError) -> GraphQLError:
    original = error.original_error
    existing = (error.extensions or {}).get("code")
    if isinstance(original, AppError):
        code, message, extra = original.code.value, original.message, original.extensions
    elif existing in ErrorCode.__members__:
        return error
    elif original is None or (error.path is None and error.message.startswith("Variable '$")):
        # parse/validation/variable-coercion errors: the client's document or variables are wrong (graphql-core 3.3
        # keeps the scalar's exception, e.g. "not a UUID", or its own GraphQLError as a bad variable's original_error)
        code = (ErrorCode.QUERY_TOO_COMPLEX.value if _TOO_COMPLEX.match(error.message)
                else ErrorCode.BAD_USER_INPUT.value)
        message, extra = error.message, {}
    else:
        log.error("unhandled error in %s", error.path, exc_info=original)
        code, message, extra = ErrorCode.INTERNAL.value, "Internal server error", {}
    return GraphQLError(message, nodes=error.nodes, source=error.source, positions=error.positions,
                        path=error.path, original_error=None, extensions={**extra, "code": code})


def classify_all(errors: list[GraphQLError]) -> list[GraphQLError]:
    out = [classify(e) for e in errors]
    for e in out:
        GRAPHQL_ERRORS.labels(e.extensions["code"]).inc()
    return out


class ParserCacheKeepingErrors(ParserCache):
    """strawberry's ParserCache parses in its hook, outside the `try` that turns a syntax error (or the token limit)
    into a result, so such errors used to escape ErrorCodes and reach the client without a code. On a syntax error
    the document is left unset and strawberry parses again inside that `try` (only on the error path)."""

    def on_parse(self) -> Iterator[None]:
        ctx = self.execution_context
        try:
            ctx.graphql_document = self.cached_parse_document(ctx.query, **ctx.parse_options)
        except GraphQLError:
            pass
        yield


class OperationLifecycle(SchemaExtension):
    """Everything the API does around each operation, in one extension (each extension costs hook dispatches
    on every request):

    - parse: the token limit (`max_tokens`; over it -> QUERY_TOO_COMPLEX);
    - execute: queries get autocommit read sessions; API keys are read-only (mutations and subscriptions made
      with one are refused before execution, public fields included);
    - end: every error gets its `extensions.code` (unexpected ones masked and logged), requests and latency are
      counted per operation name, and the DB session goes back to the pool.

    Metrics label cardinality is bounded: a name is recorded verbatim only for documents that validated, and only
    the first `max_operation_names` distinct names are (later ones count as "other").
    """

    max_operation_names = 500
    _known_names: set[str] = set()

    def __init__(self, *, max_tokens: int, execution_context: Any = None) -> None:
        self.max_tokens = max_tokens
        if execution_context is not None:
            self.execution_context = execution_context

    async def on_operation(self):  # type: ignore[override]
        started = time.perf_counter()
        ctx = self.execution_context
        ctx.parse_options["max_tokens"] = self.max_tokens
        self._validated = False
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

    def on_validate(self) -> Iterator[None]:
        yield
        self._validated = not self.execution_context.pre_execution_errors

    def on_execute(self) -> Iterator[None]:
        ctx = self.execution_context
        context = ctx.context
        op_type = ctx.operation_type
        if context is not None:
            context.read_only = op_type is OperationType.QUERY
            viewer = getattr(context, "viewer", None)
            if viewer is not None and viewer.read_only and op_type is not OperationType.QUERY:
                # a result set before execution makes strawberry skip it; on_operation then gives it its code
                ctx.result = GraphQLExecutionResult(data=None, errors=[
                    GraphQLError("API keys are read-only", original_error=Forbidden("API keys are read-only"))])
        yield

    def _record(self, ctx: Any, started: float) -> None:
        name = ctx.operation_name or "anonymous"
        try:
            op_type = ctx.operation_type.value
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
        GRAPHQL_REQUESTS.labels(name, op_type).inc()
        GRAPHQL_LATENCY.labels(name).observe(time.perf_counter() - started)
