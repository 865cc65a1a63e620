"""A validly signed access token with malformed claims is refused like a forged one: UNAUTHENTICATED, never an HTTP
500 (a `roles` list of objects or a numeric `sub` crashed the request before). The tokens are signed with the
app's own key, so only the claims are wrong."""

from __future__ import annotations

import time
import uuid
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.jwt_keys import ALGORITHM
from tests.fixtures.app import TEST_JWT_KEY

ME = "{ me { id } }"
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
_NOT_A_UUID_STRING = _JSON.filter(lambda v: not _is_uuid(v))
_BAD = {
    "sub": _NOT_A_UUID_STRING,
    "sid": _NOT_A_UUID_STRING,
    "roles": st.one_of(
        _JSON.filter(lambda v: not isinstance(v, list)),
        st.lists(_JSON, min_size=1, max_size=3).filter(
            lambda v: not all(isinstance(r, str) and r in {"INVESTOR", "ISSUER", "COMPLIANCE", "ADMIN"} for r in v)
        ),
        st.lists(st.sampled_from(["investor", "ROOT", "ADMIN ", ""]), min_size=1, max_size=2),
    ),
    "exp": st.one_of(
        st.booleans(),
        st.text(max_size=12),
        st.lists(st.integers(), max_size=2),
        st.none(),
        st.sampled_from([str(int(time.time()) + 600), 10**400, 2**63, -(10**30)]),
    ),
    "iat": st.one_of(
        st.booleans(),
        st.text(max_size=12),
        st.none(),
        st.just(10**400),
        st.dictionaries(st.text(max_size=2), st.integers(), max_size=1),
    ),
}
_MISSING = object()


def _is_uuid(value: Any) -> bool:
    try:
        uuid.UUID(value)
    except Exception:  # noqa: BLE001
        return False
    return isinstance(value, str)


def _valid_claims(user_id: uuid.UUID) -> dict[str, Any]:
    now = int(time.time())
    return {
        "sub": str(user_id),
        "roles": ["INVESTOR"],
        "iat": now,
        "exp": now + 600,
        "iss": "stablerwa",
        "sid": str(uuid.uuid4()),
    }


def _sign(claims: Any, kid: Any = "dev-1") -> str:
    """A compact JWS over exactly these header and payload values (PyJWT refuses to encode some of them)."""
    import base64
    import json

    from cryptography.hazmat.primitives import serialization

    def b64(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    key = serialization.load_pem_private_key(TEST_JWT_KEY.encode(), password=None)
    signing_input = (
        b64(json.dumps({"alg": ALGORITHM, "typ": "JWT", "kid": kid}).encode()) + b"." + b64(json.dumps(claims).encode())
    )
    return (signing_input + b"." + b64(key.sign(signing_input))).decode()  # type: ignore[union-attr]


async def _me(client, token: str):  # type: ignore[no-untyped-def]
    resp = await client.post("/graphql", json={"query": ME}, headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 200, resp.text[:300]
    return resp.json()


async def test_the_well_formed_token_is_accepted(client, make_user, settings) -> None:  # type: ignore[no-untyped-def]
    user = await make_user()
    claims = _valid_claims(user.id)
    claims["iss"] = settings.jwt_issuer
    body = await _me(client, _sign(claims, settings.jwt_key_id))
    assert body["data"]["me"]["id"] == str(user.id), body


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    bad=st.dictionaries(st.sampled_from(sorted(_BAD)), st.none(), min_size=1).flatmap(
        lambda fields: st.fixed_dictionaries({f: st.one_of(st.just(_MISSING), _BAD[f]) for f in fields})
    )
)
async def test_malformed_claims_are_unauthenticated(client, make_user, settings, bad: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    claims = _valid_claims(uuid.uuid4())
    claims["iss"] = settings.jwt_issuer
    for name, value in bad.items():
        if value is _MISSING:
            claims.pop(name)
        else:
            claims[name] = value
    body = await _me(client, _sign(claims, settings.jwt_key_id))
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED", (claims, body)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    kid=st.one_of(st.just("dev-1"), _JSON),
    claims=st.one_of(_JSON, st.dictionaries(st.text(max_size=5), _JSON, max_size=4)),
)
async def test_any_header_kid_and_any_payload(client, settings, kid: Any, claims: Any) -> None:  # type: ignore[no-untyped-def]
    body = await _me(client, _sign(claims, kid))
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED", body
