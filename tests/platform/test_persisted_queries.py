"""Automatic persisted queries (Apollo's protocol) and cacheable GET reads (server/persisted_queries.py).

A client sends the hash alone, learns PersistedQueryNotFound, registers hash + query once, then uses the hash by
POST or GET. A hash is checked against its query before it is stored. GET answers without credentials are public and
cacheable with an ETag (304 when unchanged); signed-in GET answers are private and revalidated; every other GraphQL
answer stays no-store; and a persisted query registered on one process is known to the others (Redis)."""

from __future__ import annotations

import hashlib
import json

EXT = lambda digest: {"persistedQuery": {"version": 1, "sha256Hash": digest}}  # noqa: E731


def sha(query: str) -> str:
    return hashlib.sha256(query.encode()).hexdigest()


async def test_register_once_then_by_hash_over_post_and_get(app_client) -> None:  # type: ignore[no-untyped-def]
    query = "query PublicMarkets { markets { id symbol } }"
    digest = sha(query)
    async with app_client() as c:
        unknown = await c.post("/graphql", json={"extensions": EXT(digest)})
        assert unknown.status_code == 200, unknown.text
        error = unknown.json()["errors"][0]
        assert error["message"] == "PersistedQueryNotFound"
        assert error["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"

        registered = await c.post("/graphql", json={"query": query, "extensions": EXT(digest)})
        assert registered.json() == {"data": {"markets": []}, "extensions": registered.json()["extensions"]}
        assert registered.headers["cache-control"] == "no-store"  # POST answers are never cached

        by_hash = await c.post("/graphql", json={"extensions": EXT(digest)})
        assert by_hash.json()["data"] == {"markets": []}

        got = await c.get("/graphql", params={"extensions": json.dumps(EXT(digest))})
        assert got.status_code == 200 and got.json()["data"] == {"markets": []}, got.text
        assert got.headers["cache-control"].startswith("public, max-age="), dict(got.headers)
        etag = got.headers["etag"]
        again = await c.get("/graphql", params={"extensions": json.dumps(EXT(digest))}, headers={"if-none-match": etag})
        assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag

    async with app_client() as other_process:  # another API process: its own memory, the same Redis
        known = await other_process.get("/graphql", params={"extensions": json.dumps(EXT(digest))})
        assert known.json()["data"] == {"markets": []}, known.text


async def test_signed_in_get_is_private_and_errors_are_not_cached(app_client, make_user) -> None:  # type: ignore[no-untyped-def]
    user = await make_user()
    me = "query Me { me { id } }"
    async with app_client() as c:
        await c.post("/graphql", json={"query": me, "extensions": EXT(sha(me))})
        mine = await c.get(
            "/graphql",
            params={"extensions": json.dumps(EXT(sha(me)))},
            headers={"authorization": f"Bearer {user.token}"},
        )
        assert mine.json()["data"]["me"]["id"] == str(user.id)
        assert mine.headers["cache-control"] == "private, no-cache" and "etag" in mine.headers
        anonymous = await c.get("/graphql", params={"extensions": json.dumps(EXT(sha(me)))})
        assert anonymous.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
        assert anonymous.headers["cache-control"] == "no-store" and "etag" not in anonymous.headers


async def test_an_answer_to_credentials_is_never_public(app_client, make_user) -> None:  # type: ignore[no-untyped-def]
    """The caller is authenticated by the first Authorization / X-API-Key header; `public` was decided from the last
    one (a dict of the headers): a signed-in `me` sent with a second, empty Authorization header went out as
    `public, max-age=5`, for any shared cache to keep and serve."""
    user = await make_user()
    me = "query Me { me { id email } }"
    params = {"extensions": json.dumps(EXT(sha(me)))}
    async with app_client() as c:
        await c.post("/graphql", json={"query": me, "extensions": EXT(sha(me))})
        for extra in (("authorization", ""), ("x-api-key", ""), ("authorization", "Bearer ")):
            mine = await c.get("/graphql", params=params, headers=[("authorization", f"Bearer {user.token}"), extra])
            assert mine.json()["data"]["me"]["email"] == user.email, (extra, mine.text)
            assert mine.headers["cache-control"] == "private, no-cache", (extra, dict(mine.headers))


async def test_bad_persisted_query_requests_are_typed_and_store_nothing(app_client) -> None:  # type: ignore[no-untyped-def]
    query = "{ markets { id } }"
    async with app_client() as c:
        mismatch = await c.post("/graphql", json={"query": "{ __typename }", "extensions": EXT(sha(query))})
        assert mismatch.status_code == 400
        assert mismatch.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
        # the mismatched hash did not become a name for the other document
        still_unknown = await c.post("/graphql", json={"extensions": EXT(sha(query))})
        assert still_unknown.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
        for bad in (
            {"persistedQuery": {"version": 2, "sha256Hash": sha(query)}},
            {"persistedQuery": {"version": 1, "sha256Hash": "xyz"}},
            {"persistedQuery": "x"},
        ):
            resp = await c.post("/graphql", json={"query": query, "extensions": bad})
            assert resp.status_code == 400 and resp.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", bad
        # GET runs persisted queries only, and never a mutation
        plain = await c.get("/graphql", params={"query": query}, headers={"accept": "application/json"})
        assert plain.status_code == 400 and plain.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
        mutation = 'mutation { logout(input: {refreshToken: "x"}) { ok } }'
        await c.post("/graphql", json={"query": mutation, "extensions": EXT(sha(mutation))})
        refused = await c.get("/graphql", params={"extensions": json.dumps(EXT(sha(mutation)))})
        assert refused.status_code in (400, 405)
        assert refused.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", refused.text
