"""Memory bounded by configuration, not by what clients send: the parsed/validated document cache is bounded in
entries and in (estimated) bytes, large documents are never kept, and the estimate is not smaller than what an entry
really keeps alive. (300 distinct `{ __typename }` documents padded with a 900 kB comment took a process from 134 MB
to 652 MB.)"""

from __future__ import annotations

import gc
import time
import tracemalloc
import uuid

import psutil
from graphql import get_introspection_query

from core.settings import Environment, Settings
from schema import build_schema
from schema.document_cache import footprint
from tests.platform.responses import codes

PADDING = 900_000
VALIDATOR_STATE = 256 * 1024


def padded(i: int, size: int = PADDING) -> str:
    return f"{{ __typename }}\n# {uuid.uuid4().hex} {i} " + "x" * size


async def post(client, query: str) -> dict:  # type: ignore[no-untyped-def,type-arg]
    resp = await client.post("/graphql", json={"query": query})
    assert resp.status_code == 200, resp.text[:500]
    return resp.json()


def rss() -> int:
    gc.collect()
    return psutil.Process().memory_info().rss


async def test_large_documents_are_answered_and_never_kept(app_client) -> None:  # type: ignore[no-untyped-def]
    # MAX_QUERY_CHARS (64 KiB) refuses these by default; a deployment that raises it still keeps none of them
    async with app_client(MAX_QUERY_CHARS=PADDING + 100) as c:
        documents = c.app.state.schema.documents
        await post(c, padded(-1))  # warm up allocator arenas and the schema's lazily built parts
        start_rss, start_entries, start_bytes = rss(), len(documents), documents.bytes
        for i in range(40):
            body = await post(c, padded(i))
            assert body["data"] == {"__typename": "Query"}
        assert len(documents) == start_entries and documents.bytes == start_bytes
        grown = rss() - start_rss
    # before: ~1.7 MB kept per document (68 MB for these 40); the bound leaves room for allocator noise
    assert grown < 25 * 1024 * 1024, f"RSS grew {grown / 1e6:.1f} MB"


async def test_cache_stays_within_its_byte_bound(app_client) -> None:  # type: ignore[no-untyped-def]
    bound = 2_000_000
    async with app_client(DOCUMENT_CACHE_BYTES=bound, DOCUMENT_CACHE_MAX_CHARS=64 * 1024) as c:
        documents = c.app.state.schema.documents
        for i in range(60):
            # ~30 kB each, under the per-document size: cached until the byte bound evicts
            query = (
                f"query Q{i} {{ __typename\n# "
                + "y" * 30_000
                + "\n"
                + " ".join(f"a{j}: __typename" for j in range(20))
                + " }"
            )
            assert codes(await post(c, query)) == []
            assert documents.bytes <= bound
            assert documents.bytes == sum(e.size for e in documents._entries.values())
        assert 0 < len(documents) < 60
        # a small, repeated document is still a hit
        hits = documents.hits
        await post(c, "{ __typename }")
        await post(c, "{ __typename }")
        assert documents.hits == hits + 1


def test_footprint_is_not_an_underestimate() -> None:
    """What cached entries keep alive (tracemalloc, over several entries of a shape) is at most their accounted size,
    for documents of many shapes."""
    schema = build_schema(Settings(RWA_ENV=Environment.TEST))
    documents = schema.documents
    documents.get("query Warm { me { id } } fragment F on User { id }")  # lazily built schema/validation state
    shapes = {
        "fields": "{ " + "__typename " * 1500 + "}",
        "aliases": "{ " + " ".join(f"a{i}: __typename" for i in range(25)) + " }",
        "comments": "{ __typename }\n" + "# a comment line that goes on for a while\n" * 700,
        "strings": "{ "
        + " ".join(f'a{i}: assets(filter: {{search: "{"s" * 300}"}}) {{ totalCount }}' for i in range(20))
        + " }",
        "errors": "{ " + " ".join(f"nope{i}" for i in range(300)) + " }",
        "introspection": get_introspection_query(descriptions=True),
        "small": "{ me { id email roles } }",
        "small with an error": "{ me { id email roles wallets { address chainId linkedAt } } }",
    }
    for name, query in shapes.items():
        copies = 20 if len(query) < 2000 else 4  # distinct strings, as request bodies give
        texts = [query + " " * i for i in range(1, copies + 1)]
        assert len(texts[-1]) <= documents.max_document_chars, name
        gc.collect()
        tracemalloc.start()
        entries = [documents.get(text) for text in texts]
        gc.collect()
        kept, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        accounted = sum(e.size for e in entries)
        assert all(e.size == footprint(t, e.document, e.errors) for t, e in zip(texts, entries))
        # the validator's first runs allocate ~200 KB of state later entries reuse (2,000 uncached documents: 246 KB)
        assert kept - VALIDATOR_STATE <= accounted, f"{name}: keeps {kept} B, accounted {accounted} B"


def test_cache_lookup_stays_cheap() -> None:
    """The hot path (a small document already cached) is one dict lookup: well under 5 us."""
    schema = build_schema(Settings(RWA_ENV=Environment.TEST))
    documents = schema.documents
    query = "query Me { me { id email roles } }"
    documents.get(query)
    copies = ["".join([query]) + "" for _ in range(1)] * 20_000  # the request's string object
    started = time.perf_counter()
    for q in copies:
        documents.get(q)
    per_lookup = (time.perf_counter() - started) / len(copies)
    assert per_lookup < 5e-6, f"{per_lookup * 1e6:.2f} us"
