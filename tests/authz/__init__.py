"""The authorization matrix: one entry per root field of the schema (Query, Mutation, Subscription).

Each domain lists its fields in tests/authz/<domain>.py as `ENTRIES: dict[str, Rule]`, keyed "Query.me",
"Mutation.grantRole", ... `tests/test_authorization_matrix.py` calls every entry as anonymous, as each role and
with an API key, and with OAuth client tokens (scopes), and fails when a schema field has no entry. A `document` only needs to reach the field's
authorization check: arguments may point at rows that do not exist (NOT_FOUND is a pass for allowed callers).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable
from dataclasses import dataclass, field

ROLES = ("INVESTOR", "ISSUER", "COMPLIANCE", "ADMIN")
ANY_ROLE = frozenset(ROLES)


@dataclass(frozen=True)
class Rule:
    document: str
    variables: dict = field(default_factory=dict)
    public: bool = False  # anonymous callers allowed
    roles: frozenset[str] = ANY_ROLE  # roles allowed when not public
    api_key: bool = True  # read-only API keys allowed (queries only; mutations never)
    # OAuth 2.0 scopes that let a partner client's token call the field (core/oauth_scopes.py); none: every
    # client token is refused (FORBIDDEN, reason INSUFFICIENT_SCOPE), whatever its owner's roles
    scopes: frozenset[str] = frozenset()


def mutation(call: str, roles: Iterable[str] = ANY_ROLE, scopes: frozenset[str] = frozenset()) -> Rule:
    """The rule of a mutation whose payload only needs `__typename` to reach its check: `call` is the field with
    its arguments."""
    return Rule(f"mutation {{ {call} {{ __typename }} }}", roles=frozenset(roles), scopes=scopes)


def all_entries() -> dict[str, Rule]:
    entries: dict[str, Rule] = {}
    for mod in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{mod.name}")
        for name, rule in getattr(module, "ENTRIES", {}).items():
            assert name not in entries, f"{name} listed twice in the authorization matrix"
            entries[name] = rule
    return entries
