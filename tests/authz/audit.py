"""Audit log fields in the authorization matrix."""

from tests.authz import Rule

ENTRIES = {
    "Query.auditLog": Rule(
        "{ auditLog(first: 1) { edges { node { action } } } }", roles=frozenset({"ADMIN", "COMPLIANCE"})
    ),
}
