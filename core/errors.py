"""Domain errors with stable codes.

Every error a client can see carries one `ErrorCode`, sent as GraphQL `extensions.code`.
Anything that is not an `AppError` is masked as INTERNAL (the message never reaches the client).

    AppError
      Unauthenticated      no or invalid credentials
      Forbidden            authenticated but not allowed
      BadUserInput         invalid arguments (field errors in `extensions.fields`)
      NotFound             the target does not exist (or the caller may not know it does)
      Conflict             state or uniqueness conflict (invalid state transitions too)
      RateLimited          too many attempts; `extensions.retryAfter` in seconds
      QueryTooComplex      rejected before execution by depth/alias/token/cost limits
"""

from __future__ import annotations

from enum import Enum
from typing import Any


class ErrorCode(str, Enum):
    UNAUTHENTICATED = "UNAUTHENTICATED"
    FORBIDDEN = "FORBIDDEN"
    BAD_USER_INPUT = "BAD_USER_INPUT"
    NOT_FOUND = "NOT_FOUND"
    CONFLICT = "CONFLICT"
    RATE_LIMITED = "RATE_LIMITED"
    QUERY_TOO_COMPLEX = "QUERY_TOO_COMPLEX"
    INTERNAL = "INTERNAL"


class AppError(Exception):
    code: ErrorCode = ErrorCode.INTERNAL

    def __init__(self, message: str, **extensions: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extensions = extensions


class Unauthenticated(AppError):
    code = ErrorCode.UNAUTHENTICATED


class Forbidden(AppError):
    code = ErrorCode.FORBIDDEN


class BadUserInput(AppError):
    code = ErrorCode.BAD_USER_INPUT


class NotFound(AppError):
    code = ErrorCode.NOT_FOUND


class Conflict(AppError):
    code = ErrorCode.CONFLICT


class InvalidTransition(Conflict):
    """A state machine refused a transition; extensions carry `from` and `to`."""

    def __init__(self, entity: str, current: str, target: str) -> None:
        super().__init__(f"{entity} cannot go from {current} to {target}", current=current, target=target)


class RateLimited(AppError):
    code = ErrorCode.RATE_LIMITED

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message, retryAfter=retry_after)


class QueryTooComplex(AppError):
    code = ErrorCode.QUERY_TOO_COMPLEX
