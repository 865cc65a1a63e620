"""The server-side response cache: whole answers of the public and per-role reads, per API process.

Only queries whose root fields are all in `CACHEABLE` are cached; anything else (mutations, per-user reads such
as `me`/`myOrders`, batches, documents with errors) always executes.

- Key: sha256 of the scope, the document, the operation name and the variables (sorted). The scope is `public`
  for market data (the same answer for everyone, signed in or not), else the caller's roles. An answer whose
  execution asked who the caller is (RecordingViewer: an issuer's own drafts, an investor's own holdings) is kept
  per caller, and that shared key is looked up per caller from then on. OAuth client tokens (scoped) are never
  served from the cache; with MARKET_DATA_REQUIRES_LOGIN an anonymous caller is not either.
- Invalidation: an entry remembers the versions of its tags (core/response_versions.py) read *before* its query
  executed; a successful mutation bumps them after its commit and before its answer goes out, so a read that
  follows a successful mutation (on any API process) never gets an answer from before it. Writes that are not
  mutations (indexer, agent, jobs) show after at most RESPONSE_CACHE_TTL_S.
- A hit still counts against the anonymous per-IP market-data limit (one per root field, as a miss would).
- Bounded: RESPONSE_CACHE_BYTES per process (LRU); answers larger than a tenth of it are not kept.
Responses carry `X-Cache: HIT` or `MISS` (cacheable reads only).
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from dataclasses import dataclass, fields
from typing import Any

import orjson
from graphql import (
    FieldNode,
    OperationDefinitionNode,
    OperationType,
    parse,
)
from graphql.error import GraphQLError

from core.rate_limit import hit
from core.response_versions import ALL, MARKET, current
from resolvers.viewer import Viewer

PUBLIC, ROLE = "public", "role"
# root field -> (scope, tags it depends on)
CACHEABLE: dict[str, tuple[str, tuple[str, ...]]] = {
    "markets": (PUBLIC, (ALL, MARKET)),
    "orderBook": (PUBLIC, (ALL, MARKET)),
    "trades": (PUBLIC, (ALL, MARKET)),
    "candles": (PUBLIC, (ALL, MARKET)),
    "ticker": (PUBLIC, (ALL, MARKET)),
    "assets": (ROLE, (ALL,)),
    "asset": (ROLE, (ALL,)),
}
_PARSED_MAX = 256
_PERSONAL_MAX = 4096
_QUERY_MAX_CHARS = 16 * 1024


class CachedAnswer(Exception):
    def __init__(self, body: bytes) -> None:
        self.body = body


@dataclass(frozen=True)
class Plan:
    key: str  # shared by every caller of the scope (public, or a role set)
    user_key: str  # this caller's own entry, used once the document was seen to depend on who asks
    tags: tuple[str, ...]
    rate_counts: int  # anonymous public reads: how many root fields to count against the per-IP limit


# what identifies a caller beyond its roles; reading any of it while answering makes the answer per caller
_IDENTITY = frozenset({"user_id", "api_key_id", "session_family", "issued_at", "client_id", "expires_at"})


class RecordingViewer(Viewer):
    """The viewer of a cacheable read: records whether anything that executes the query asks who the caller is
    (its id, its session...), beyond whether it is signed in and its roles (the permission layer's checks,
    Viewer.check_signed_in/check_role, do not count). An answer computed without asking is the same for every caller
    of the scope and is shared; one that asked is cached for that caller only. This catches every resolver, also
    ones written after this cache, instead of a list of fields known to be personal."""

    def __getattribute__(self, name: str) -> Any:
        if name in _IDENTITY:
            object.__setattr__(self, "_identity_read", True)
        return object.__getattribute__(self, name)

    @property
    def authenticated(self) -> bool:
        return object.__getattribute__(self, "user_id") is not None

    @property
    def read_only(self) -> bool:
        return object.__getattribute__(self, "api_key_id") is not None

    @property
    def identity_read(self) -> bool:
        return bool(self.__dict__.get("_identity_read"))

    @classmethod
    def of(cls, viewer: Viewer) -> RecordingViewer:
        return cls(**{f.name: object.__getattribute__(viewer, f.name) for f in fields(Viewer)})


@dataclass
class Entry:
    body: bytes
    versions: tuple[int, ...]
    stored_at: float


class ResponseCache:
    def __init__(self, services: Any) -> None:
        self.services = services
        settings = services.settings
        self.ttl_s = settings.response_cache_ttl_s
        self.max_bytes = settings.response_cache_bytes
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self._size = 0
        self._roots: OrderedDict[tuple[str, str | None], tuple[str, ...] | None] = OrderedDict()
        # shared keys whose answer turned out to depend on who asks: looked up per caller from then on
        self._personal: OrderedDict[str, None] = OrderedDict()

    def _root_fields(self, query: str, operation_name: str | None) -> tuple[str, ...] | None:
        """The root fields of the query operation, None when it is not a plain cacheable query."""
        if len(query) > _QUERY_MAX_CHARS:
            return None  # not kept (nor parsed again here): a read this large is not worth caching
        key = (query, operation_name)
        if key in self._roots:
            self._roots.move_to_end(key)
            return self._roots[key]
        roots: tuple[str, ...] | None = None
        try:
            document = parse(query, no_location=True, max_tokens=5000)
        except GraphQLError:
            document = None
        if document is not None:
            operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
            chosen = [o for o in operations if operation_name is None or (o.name and o.name.value == operation_name)]
            if len(chosen) == 1 and chosen[0].operation is OperationType.QUERY:
                selections = chosen[0].selection_set.selections
                if all(isinstance(s, FieldNode) for s in selections):
                    names = tuple(s.name.value for s in selections if s.name.value != "__typename")  # type: ignore[attr-defined]  # FieldNode, checked above
                    roots = names if names and all(n in CACHEABLE for n in names) else None
        self._roots[key] = roots
        if len(self._roots) > _PARSED_MAX:
            self._roots.popitem(last=False)
        return roots

    def plan(self, query: str | None, operation_name: str | None, variables: Any, viewer: Any) -> Plan | None:
        if not query or viewer.scopes is not None:
            return None
        roots = self._root_fields(query, operation_name)
        if roots is None:
            return None
        scopes = {CACHEABLE[r][0] for r in roots}
        tags = tuple(sorted({t for r in roots for t in CACHEABLE[r][1]}))
        anonymous = not viewer.authenticated
        if scopes == {PUBLIC}:
            if anonymous and self.services.settings.market_data_requires_login:
                return None
            scope = PUBLIC
        else:
            if anonymous:
                return None  # refused by the fields' own authorization
            # API keys are read-only callers of the same user: kept apart in case a field treats them differently
            scope = "roles:" + ",".join(sorted(viewer.roles)) + (":key" if viewer.read_only else "")
        try:
            encoded_vars = orjson.dumps(variables or {}, option=orjson.OPT_SORT_KEYS)
        except TypeError:
            return None
        digest = hashlib.sha256()
        for part in (scope.encode(), query.encode(), (operation_name or "").encode(), encoded_vars):
            digest.update(part)
            digest.update(b"\0")
        key = digest.hexdigest()
        user_key = hashlib.sha256(f"{key}\0{viewer.user_id}".encode()).hexdigest()
        rate_counts = len(roots) if anonymous else 0
        return Plan(key, user_key, tags, rate_counts)

    def _mark_personal(self, key: str) -> None:
        self._personal[key] = None
        self._personal.move_to_end(key)
        if len(self._personal) > _PERSONAL_MAX:
            self._personal.popitem(last=False)

    def key_for(self, plan: Plan) -> str:
        return plan.user_key if plan.key in self._personal else plan.key

    async def lookup(self, plan: Plan, client_ip: str) -> tuple[bytes | None, tuple[int, ...]]:
        services = self.services
        versions = await current(services.redis, services.keys, plan.tags)
        key = self.key_for(plan)
        entry = self._entries.get(key)
        if entry is None or entry.versions != versions or time.monotonic() - entry.stored_at > self.ttl_s:
            return None, versions
        self._entries.move_to_end(key)
        for _ in range(plan.rate_counts):
            await hit(
                services.redis,
                services.keys("rl", "public", client_ip),
                services.settings.public_rate_per_minute,
                60,
                "market data requests",
            )
        return entry.body, versions

    def store(self, plan: Plan, versions: tuple[int, ...], body: bytes, identity_read: bool) -> None:
        """Keep `body`: shared by the scope, or, when answering it asked who the caller is, for that caller only
        (and the shared key is looked up per caller from then on)."""
        if identity_read:
            self._mark_personal(plan.key)
            shared = self._entries.pop(plan.key, None)  # an answer shared before is not trusted any more
            if shared is not None:
                self._size -= len(shared.body)
        if len(body) > self.max_bytes // 10:
            return
        key = self.key_for(plan)
        old = self._entries.pop(key, None)
        if old is not None:
            self._size -= len(old.body)
        self._entries[key] = Entry(body, versions, time.monotonic())
        self._size += len(body)
        while self._size > self.max_bytes and self._entries:
            _, evicted = self._entries.popitem(last=False)
            self._size -= len(evicted.body)
