"""Parsed and validated documents shared by all requests, bounded in entries and in bytes.

Parsing and validating are most of a small operation's cost, so documents are cached by their text. The cache used
to be three LRUs keyed by the full text (parse, validation, cost): 300 distinct `{ __typename }` documents padded
with a 900 kB comment pinned ~1.7 MB each (the text, the comment token, the AST) and took a process from 134 MB to
652 MB. Now:

- a document longer than `max_document_chars` is parsed and validated for its request only, never kept;
- one entry per document holds the AST, the validation errors and the operation costs (by operation name and page
  size variables), and its estimated footprint (`footprint`) counts against `max_bytes`; the least recently used
  entries go first when either bound is exceeded.

The key is the text itself (one dict lookup, ~0.1 us for a small document), which the entry's AST keeps anyway.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from graphql import DocumentNode, GraphQLError, GraphQLSchema, parse
from graphql.validation import ASTValidationRule
from strawberry.schema.schema import validate_document

from schema.document_limits import limit_errors

# Retained bytes per lexer token (token + AST node + validation bookkeeping) and per validation error, measured with
# tracemalloc on these machines: 290-730 B per token over documents of aliases, strings, comments and nesting; the
# text is counted twice (a comment's or string's token value copies it).
TOKEN_BYTES = 768
ERROR_BYTES = 2048
# Costs kept per document (by operation name and page-size variables): a client varying `first` cannot grow it.
COSTS_PER_DOCUMENT = 16


def token_count(document: DocumentNode) -> int:
    """Lexer tokens the AST keeps alive (comments included: the token chain links them)."""
    n = 0
    token = document.loc.start_token if document.loc else None
    while token is not None:
        n += 1
        token = token.next
    return n


def footprint(query: str, document: DocumentNode, errors: tuple[GraphQLError, ...]) -> int:
    """Estimated bytes an entry keeps alive (tests/platform/test_document_cache.py checks it against tracemalloc)."""
    return 2 * sys.getsizeof(query) + TOKEN_BYTES * token_count(document) + ERROR_BYTES * len(errors)


@dataclass(eq=False)
class CachedDocument:
    document: DocumentNode
    errors: tuple[GraphQLError, ...]
    size: int = 0
    costs: dict[tuple[Any, ...], int] = field(default_factory=dict)
    # per operation name: what schema.root_field.prepare_root_field found for it (None: the normal path)
    root_fields: dict[str | None, Any] = field(default_factory=dict)

    def remember_cost(self, key: tuple[Any, ...], cost: int) -> None:
        if len(self.costs) >= COSTS_PER_DOCUMENT:
            self.costs.clear()
        self.costs[key] = cost


class DocumentCache:
    """`get(query)` -> the parsed document and its validation errors (a syntax error raises GraphQLError and is not
    cached). `schema` is set once the schema is built."""

    def __init__(
        self,
        *,
        max_entries: int,
        max_bytes: int,
        max_document_chars: int,
        max_tokens: int,
        max_source_length: int | None = None,
        rules: tuple[type[ASTValidationRule], ...],
        max_depth: int,
        max_aliases: int,
    ) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.max_document_chars = max_document_chars
        self.max_tokens = max_tokens
        # longer documents are refused before they are lexed (MAX_QUERY_CHARS): "Source contains more than N code
        # points", QUERY_TOO_COMPLEX; strawberry's own parse gets the same option (OperationLifecycle)
        self.max_source_length = max_source_length
        self.rules = rules
        self.max_depth = max_depth
        self.max_aliases = max_aliases
        self.schema: GraphQLSchema | None = None
        self.bytes = 0
        self.hits = self.misses = 0
        self._entries: OrderedDict[str, CachedDocument] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, query: str) -> CachedDocument:
        entry = self._entries.get(query)
        if entry is not None:
            self._entries.move_to_end(query)
            self.hits += 1
            return entry
        self.misses += 1
        document = parse(query, max_tokens=self.max_tokens, max_source_length=self.max_source_length)
        entry = CachedDocument(document, self.validate(document))
        if len(query) <= self.max_document_chars:
            entry.size = footprint(query, document, entry.errors)
            if entry.size <= self.max_bytes:
                self._store(query, entry)
        return entry

    def entry(self, query: str) -> CachedDocument | None:
        """The kept entry of this text, if any (no LRU bookkeeping: `get` did it for this request)."""
        return self._entries.get(query)

    def document(self, query: str) -> DocumentNode | None:
        """The parsed document, or None when it does not parse."""
        try:
            return self.get(query).document
        except GraphQLError:
            return None

    def validate(self, document: DocumentNode) -> tuple[GraphQLError, ...]:
        """The linear limits first (document_limits.py): a document over them never reaches graphql-core's rules,
        some of which are quadratic in repeated fields."""
        assert self.schema is not None
        refused = limit_errors(document, max_depth=self.max_depth, max_aliases=self.max_aliases)
        if refused:
            return tuple(refused)
        return tuple(validate_document(self.schema, document, self.rules))

    def _store(self, query: str, entry: CachedDocument) -> None:
        self._entries[query] = entry
        self.bytes += entry.size
        while self.bytes > self.max_bytes or len(self._entries) > self.max_entries:
            _, old = self._entries.popitem(last=False)
            self.bytes -= old.size
