"""Automatic persisted queries (Apollo's APQ protocol) and cacheable GET reads.

A client sends `extensions: {"persistedQuery": {"version": 1, "sha256Hash": "<hex>"}}` without the query; the
server answers `PersistedQueryNotFound` (HTTP 200, `extensions.code` PERSISTED_QUERY_NOT_FOUND) the first time,
the client sends hash and query once, and from then on the hash alone, by POST or by GET
(`/graphql?extensions=...&variables=...`), which CDNs and browsers can cache.

- The hash is checked against the query (sha256 of its UTF-8 text) before anything is stored: a client cannot make a
  hash name another document. Documents are stored in Redis (shared by every API process, APQ_TTL_S) and in a small
  per-process LRU bounded in bytes; a document longer than APQ_MAX_QUERY_BYTES is executed but not stored.
- GET runs queries only through a persisted hash (plain GET queries stay refused: a GET URL carries no body, so a
  large ad-hoc document in a URL is only ever a mistake or a probe). Mutations are never run by GET.
- Caching: every GraphQL response is `no-store` (server/middleware.py) except a GET persisted query answered
  without errors: to a caller without credentials (it can only read public data, the same for everyone) it is
  `public, max-age=APQ_PUBLIC_MAX_AGE_S`; to a signed-in caller `private, no-cache` (revalidate each time). Both
  carry an ETag of the body, and `If-None-Match` with the current ETag answers 304 without a body.
"""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from typing import Any

from cross_web import HTTPException
from redis.asyncio import Redis

from core.redis import Keys

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
NOT_FOUND_MESSAGE = "PersistedQueryNotFound"


class PersistedQueryNotFound(Exception):
    """The hash is unknown: the client resends it with its query (Apollo's protocol)."""


class PersistedQueries:
    def __init__(
        self, redis: Redis, keys: Keys, *, ttl_s: int, max_query_bytes: int, local_bytes: int = 4 * 1024 * 1024
    ) -> None:
        self.redis, self.keys = redis, keys
        self.ttl_s, self.max_query_bytes, self.local_bytes = ttl_s, max_query_bytes, local_bytes
        self._local: OrderedDict[str, str] = OrderedDict()
        self._local_size = 0

    @staticmethod
    def requested_hash(extensions: dict[str, Any] | None) -> str | None:
        """The sha256 of a persisted-query request, None when the request does not use the protocol; a malformed
        persistedQuery extension is a typed 400."""
        if not extensions or "persistedQuery" not in extensions:
            return None
        pq = extensions["persistedQuery"]
        if not isinstance(pq, dict) or pq.get("version") != 1:
            raise HTTPException(400, 'extensions.persistedQuery must be {"version": 1, "sha256Hash": "<hex>"}')
        digest = pq.get("sha256Hash")
        if not isinstance(digest, str) or not _HEX64.match(digest.lower()):
            raise HTTPException(400, "extensions.persistedQuery.sha256Hash must be 64 hexadecimal characters")
        return digest.lower()

    async def resolve(self, digest: str, query: str | None) -> str:
        """The document for `digest`: `query` after checking and storing it, else the stored one."""
        if query is not None:
            if hashlib.sha256(query.encode()).hexdigest() != digest:
                raise HTTPException(400, "provided sha does not match query")
            if len(query) <= self.max_query_bytes and digest not in self._local:
                await self.redis.set(self.keys("apq", digest), query, ex=self.ttl_s)
                self._remember(digest, query)
            return query
        cached = self._local.get(digest)
        if cached is not None:
            self._local.move_to_end(digest)
            return cached
        stored = await self.redis.get(self.keys("apq", digest))
        if stored is None:
            raise PersistedQueryNotFound
        text = stored.decode() if isinstance(stored, bytes) else str(stored)
        self._remember(digest, text)
        return text

    def _remember(self, digest: str, query: str) -> None:
        if digest in self._local:
            return
        self._local[digest] = query
        self._local_size += len(query)
        while self._local_size > self.local_bytes and self._local:
            _, dropped = self._local.popitem(last=False)
            self._local_size -= len(dropped)


def etag_of(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    candidates = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
    return "*" in candidates or etag in candidates
