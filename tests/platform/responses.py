"""Reading GraphQL error responses in platform tests."""

from __future__ import annotations

from typing import Any


def codes(body: dict[str, Any]) -> list[str]:
    """extensions.code of every error; a missing code shows as "<no code>" so the assertion names it."""
    return [(e.get("extensions") or {}).get("code", "<no code>") for e in body.get("errors") or []]


def first_code(body: dict[str, Any]) -> str | None:
    found = codes(body)
    return found[0] if found else None
