"""The one rule for a client's idempotency key (`idempotencyKey`, `clientKey`, `clientOrderId`) on every mutation.

null is no key where the argument is optional (a required key is refused when null). Otherwise the key is 1 to
`max_chars` visible characters, taken as given: no whitespace anywhere (so none around it: " k" and "k" are not
silently made the same key) and no control or format characters (zero-width, bidi). Anything else is
BAD_USER_INPUT on the argument, raised before anything is read or written. The maximum length stays each table's
own (64 or 120), as the columns were made for them.
"""

from __future__ import annotations

from core.errors import BadUserInput


def _visible(key: str) -> bool:
    return all(c.isprintable() and not c.isspace() for c in key)


def check_key(value: str | None, *, field: str, max_chars: int, required: bool = False) -> str | None:
    """`value` when it is a valid key (None when optional and absent), else BadUserInput(field=`field`)."""
    if value is None:
        if required:
            raise BadUserInput(f"{field} is required", field=field)
        return None
    if not 0 < len(value) <= max_chars or not _visible(value):
        raise BadUserInput(
            f"{field} must be 1 to {max_chars} visible characters (no spaces or control characters)", field=field
        )
    return value
