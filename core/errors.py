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

import re
from enum import Enum
from typing import Any

# What a client error message repeats of the client's own input: an invalid 100 kB UUID was echoed whole (and twice,
# by graphql-core's variable error), so the answer grew with the attack. echo() bounds a value a message quotes;
# bounded() bounds a finished message (graphql-core's and strawberry's included): every run of more than
# _LONG_RUN_CHARS non-blank characters (a tx hash, 66, stays whole) to ECHO_CHARS + "…", the whole to MAX_MESSAGE_CHARS.
ECHO_CHARS = 64
_LONG_RUN_CHARS = 80
MAX_MESSAGE_CHARS = 1024
_LONG_RUN = re.compile(r"\S{%d,}" % (_LONG_RUN_CHARS + 1))


def echo(value: object) -> str:
    """`value` as an error message may quote it: its first ECHO_CHARS characters, then "…" when there was more."""
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= ECHO_CHARS else text[:ECHO_CHARS] + "…"


def bounded(message: str) -> str:
    """A client-facing message with whatever input it repeats cut short (see ECHO_CHARS above)."""
    if len(message) <= _LONG_RUN_CHARS:
        return message
    message = _LONG_RUN.sub(lambda run: run[0][:ECHO_CHARS] + "…", message)
    return message if len(message) <= MAX_MESSAGE_CHARS else message[:MAX_MESSAGE_CHARS] + "…"


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
        message = bounded(message)  # a message built from client input stays small whatever was sent
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
