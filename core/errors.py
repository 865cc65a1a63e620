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


class ErrorReason(str, Enum):
    """The domain's specific refusals, carried as `reason=` by BadUserInput/Conflict/NotFound. A mutation's payload
    reports one of these as its error `code` (schema/mutations.py); tests/platform/test_mutation_payloads.py fails
    when code raises a reason missing here."""

    ALREADY_FROZEN = "ALREADY_FROZEN"
    ALREADY_PAUSED = "ALREADY_PAUSED"
    ASSET_NOT_ACTIVE = "ASSET_NOT_ACTIVE"
    ASSET_NOT_REDEEMABLE = "ASSET_NOT_REDEEMABLE"
    CHAIN_UNAVAILABLE = "CHAIN_UNAVAILABLE"
    CHALLENGE_EXPIRED = "CHALLENGE_EXPIRED"
    CHALLENGE_NOT_FOUND = "CHALLENGE_NOT_FOUND"
    COMPENSATED = "COMPENSATED"
    DUPLICATE_MARKET = "DUPLICATE_MARKET"
    DUPLICATE_SYMBOL = "DUPLICATE_SYMBOL"
    ERASURE_BLOCKED = "ERASURE_BLOCKED"
    FOUR_EYES = "FOUR_EYES"
    IDEMPOTENCY_KEY_REUSED = "IDEMPOTENCY_KEY_REUSED"
    INSUFFICIENT_BALANCE = "INSUFFICIENT_BALANCE"
    INSUFFICIENT_FUNDS = "INSUFFICIENT_FUNDS"
    INVALID_STATE = "INVALID_STATE"
    LIMIT_EXCEEDED = "LIMIT_EXCEEDED"
    MARKET_CLOSED = "MARKET_CLOSED"
    MFA_ALREADY_ENABLED = "MFA_ALREADY_ENABLED"
    MFA_CODE_INVALID = "MFA_CODE_INVALID"
    MFA_NOT_ENABLED = "MFA_NOT_ENABLED"
    MFA_NOT_ENROLLING = "MFA_NOT_ENROLLING"
    NOTHING_TO_REFUND = "NOTHING_TO_REFUND"
    NOT_FROZEN = "NOT_FROZEN"
    NOT_PAUSED = "NOT_PAUSED"
    NO_SOURCE_ADDRESS = "NO_SOURCE_ADDRESS"
    NO_VERIFIED_WALLET = "NO_VERIFIED_WALLET"
    OFFERING_CLOSED = "OFFERING_CLOSED"
    OFFERING_NOT_OPEN = "OFFERING_NOT_OPEN"
    OPERATION_IN_FLIGHT = "OPERATION_IN_FLIGHT"
    PERSONAL_DATA_ERASED = "PERSONAL_DATA_ERASED"
    SIGNATURE_MALFORMED = "SIGNATURE_MALFORMED"
    SIGNER_MISMATCH = "SIGNER_MISMATCH"
    TOKEN_PAUSED = "TOKEN_PAUSED"
    TRANSIENT_DB_CONFLICT = "TRANSIENT_DB_CONFLICT"
    WALLET_ALREADY_LINKED = "WALLET_ALREADY_LINKED"
    WALLET_LINKED_ELSEWHERE = "WALLET_LINKED_ELSEWHERE"
    WEBHOOK_TARGET_REFUSED = "WEBHOOK_TARGET_REFUSED"


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
