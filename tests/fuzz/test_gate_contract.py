"""The gate itself can fail: its check flags each kind of broken answer, and hoisted operations stay valid."""

from __future__ import annotations

import graphql
import httpx
import pytest

from core.settings import Environment, Settings
from schema import build_schema
from tests.fuzz.documents import PDF, hoist
from tests.fuzz.runner import _problem


@pytest.mark.parametrize(
    "status, body, problem",
    [
        (500, {"errors": [{"message": "x", "extensions": {"code": "INTERNAL"}}]}, "HTTP 500"),
        (502, None, "HTTP 502"),
        (
            200,
            {"data": None, "errors": [{"message": "Internal server error", "extensions": {"code": "INTERNAL"}}]},
            "an INTERNAL error",
        ),
        (200, {"data": None, "errors": [{"message": "boom"}]}, "an error without extensions.code"),
        (400, {"errors": [{"message": "bad", "extensions": {}}]}, "an error without extensions.code"),
        (200, [1, 2], "a body that is not a JSON object"),
        (200, None, "a body that is not JSON"),
        (200, {"data": {"me": None}, "errors": [{"message": "no", "extensions": {"code": "UNAUTHENTICATED"}}]}, None),
        (400, {"errors": [{"message": "bad", "extensions": {"code": "BAD_USER_INPUT"}}]}, None),
        (200, {"data": {"markets": []}}, None),
    ],
)
def test_the_check_flags_every_broken_answer(status: int, body: object, problem: str | None) -> None:
    resp = httpx.Response(status, json=body) if body is not None else httpx.Response(status, text="<html>oops")
    assert _problem(resp) == problem


def test_hoisted_arguments_keep_their_types_and_uploads_become_files() -> None:
    schema = build_schema(Settings(RWA_ENV=Environment.TEST))._schema
    document = graphql.parse(
        'mutation { uploadAssetDocument(input: {assetId: "00000000-0000-0000-0000-000000000001", '
        'kind: PROSPECTUS, file: "x"}) { __typename } placeOrder(input: {marketId: "m", side: BUY, '
        "type: LIMIT, quantity: 1.5}) { __typename } }"
    )
    op = hoist(schema, document, [("a.pdf", PDF, "application/pdf")])
    assert graphql.validate(schema, graphql.parse(op.query)) == []
    assert op.variables == {
        "v0": {"assetId": "00000000-0000-0000-0000-000000000001", "kind": "PROSPECTUS", "file": None},
        "v1": {"marketId": "m", "side": "BUY", "type": "LIMIT", "quantity": 1.5},
    }
    assert op.files == {"v0.file": ("a.pdf", PDF, "application/pdf")}
