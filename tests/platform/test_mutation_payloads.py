"""The mutation contract (issue 14 item 3, schema/mutations.py) and the one unit of work behind it (item 8,
resolvers/unit_of_work.py): every mutation takes one `input:` (plus the `id` it acts on) and returns a payload whose
`errors` carry the expected failures as typed data; a failed mutation changes nothing; publishes run only after
the commit; a deadlock re-runs the work. Also the Relay `node`/`nodes` lookups and `totalCount`."""

from __future__ import annotations

import ast
import uuid
from pathlib import Path

import pytest
from graphql import GraphQLList, GraphQLNonNull, GraphQLObjectType
from sqlalchemy import func, select, text

from core.errors import Conflict, ErrorReason
from core.settings import Environment, Settings
from models.identity import AuditLog
from resolvers.unit_of_work import UnitOfWork
from schema import build_schema
from tests.trading.factories import make_market, make_trader

REPO = Path(__file__).resolve().parents[2]


def served() -> object:
    return build_schema(Settings(RWA_ENV=Environment.DEVELOPMENT))._schema  # type: ignore[call-arg]  # by alias


def test_every_mutation_takes_one_input_and_returns_a_payload_with_typed_errors() -> None:
    schema = served()
    user_error = schema.type_map["UserError"]  # type: ignore[attr-defined]  # a GraphQLSchema
    wrong = []
    for name, field in schema.mutation_type.fields.items():  # type: ignore[attr-defined]
        extra = set(field.args) - {"id", "input"}
        payload = field.type.of_type if isinstance(field.type, GraphQLNonNull) else None
        if extra:
            wrong.append(f"{name}: arguments {sorted(extra)} outside `input`")
        if not isinstance(payload, GraphQLObjectType) or payload.name != name[0].upper() + name[1:] + "Payload":
            wrong.append(f"{name}: returns {field.type}, not a non-null {name[0].upper()}{name[1:]}Payload")
            continue
        errors = payload.fields.get("errors")
        item = errors.type.of_type.of_type.of_type if errors else None  # [X!]!
        if (
            errors is None
            or not isinstance(errors.type, GraphQLNonNull)
            or not isinstance(errors.type.of_type, GraphQLList)
            or user_error not in getattr(item, "interfaces", [])
        ):
            wrong.append(f"{name}: its payload has no `errors: [<Name>Error!]!` implementing UserError")
        results = [f for f in payload.fields if f != "errors"]
        if len(results) != 1 or isinstance(payload.fields[results[0]].type, GraphQLNonNull):
            wrong.append(f"{name}: the payload needs exactly one nullable result field, has {results}")
    assert not wrong, "\n".join(wrong)


def _raised_reasons() -> dict[str, str]:
    """Every constant `reason=` given to BadUserInput/Conflict/NotFound in the product's code."""
    found: dict[str, str] = {}
    for package in ("agent", "chains", "cli", "core", "indexer", "jobs", "models", "resolvers", "schema", "server"):
        for path in (REPO / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if not isinstance(node, ast.Call):
                    continue
                name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
                if name not in {"BadUserInput", "Conflict", "NotFound"}:
                    continue
                for kw in node.keywords:
                    if kw.arg == "reason" and isinstance(kw.value, ast.Constant):
                        found[kw.value.value] = f"{path.relative_to(REPO)}:{node.lineno}"
    return found


def test_every_reason_raised_is_a_typed_error_code() -> None:
    reasons = _raised_reasons()
    assert "INSUFFICIENT_BALANCE" in reasons  # the scan sees the raise sites
    missing = {r: where for r, where in reasons.items() if r not in ErrorReason.__members__}
    assert not missing, f"add these to core.errors.ErrorReason: {missing}"
    enum_values = set(served().type_map["UserErrorCode"].values)  # type: ignore[attr-defined]
    assert set(ErrorReason.__members__) <= enum_values and {"BAD_USER_INPUT", "NOT_FOUND", "CONFLICT"} <= enum_values


async def _audit_rows(session_factory, action: str) -> int:  # type: ignore[no-untyped-def]
    async with session_factory() as s:
        return (
            await s.execute(select(func.count()).select_from(AuditLog).where(AuditLog.action == action))
        ).scalar_one()


async def test_an_expected_failure_commits_nothing_and_publishes_nothing(session_factory) -> None:  # type: ignore[no-untyped-def]
    action = f"test.{uuid.uuid4().hex[:8]}"
    published: list[str] = []

    async with session_factory() as session:
        uow = UnitOfWork(session)

        async def work() -> None:
            session.add(AuditLog(action=action, target_type="test", target_id=str(uuid.uuid4())))
            await session.flush()
            uow.after_commit(lambda: _append(published, "sent"))
            raise Conflict("refused", reason="INVALID_STATE")

        with pytest.raises(Conflict):
            await uow.run(work)
        await uow.abort()
    assert await _audit_rows(session_factory, action) == 0
    assert published == []


async def _append(items: list[str], item: str) -> None:
    items.append(item)


async def test_success_commits_then_publishes(session_factory) -> None:  # type: ignore[no-untyped-def]
    action = f"test.{uuid.uuid4().hex[:8]}"
    seen_at_publish: list[int] = []

    async with session_factory() as session:
        uow = UnitOfWork(session)

        async def publish() -> None:  # runs after the commit: another session already sees the row
            seen_at_publish.append(await _audit_rows(session_factory, action))

        async def work() -> str:
            session.add(AuditLog(action=action, target_type="test", target_id=str(uuid.uuid4())))
            uow.after_commit(publish)
            return "done"

        assert await uow.run(work) == "done"
    assert seen_at_publish == [1]


async def test_a_deadlock_reruns_the_work_and_drops_the_first_attempts_publishes(session_factory) -> None:  # type: ignore[no-untyped-def]
    action = f"test.{uuid.uuid4().hex[:8]}"
    published: list[int] = []
    attempts = 0

    async with session_factory() as session:
        uow = UnitOfWork(session)

        async def work() -> None:
            nonlocal attempts
            attempts += 1
            session.add(AuditLog(action=action, target_type="test", target_id=str(uuid.uuid4())))
            await session.flush()
            n = attempts
            uow.after_commit(lambda: _append(published, str(n)))  # type: ignore[arg-type]
            if attempts == 1:  # Postgres itself reports the deadlock SQLSTATE
                await session.execute(text("DO $$ BEGIN RAISE EXCEPTION 'x' USING ERRCODE = '40P01'; END $$"))

        await uow.run(work)
    assert attempts == 2 and published == ["2"]
    assert await _audit_rows(session_factory, action) == 1  # the first attempt's row was rolled back


async def test_a_refused_mutation_is_data_and_changes_nothing(gql, make_user, session_factory) -> None:  # type: ignore[no-untyped-def]
    user = await make_user()
    m = await make_market(session_factory)
    await make_trader(session_factory, m, user_id=user.id, cash="100")
    place = (
        "mutation($i: PlaceOrderInput!) { placeOrder(input: $i) { order { id } "
        "errors { __typename code field message } } }"
    )
    bad = {"marketId": str(m.market_id), "side": "BUY", "type": "LIMIT", "quantity": "-1", "price": "1"}
    result = await gql(place, {"i": bad}, token=user.token)
    assert "errors" not in result
    body = result["data"]["placeOrder"]
    assert body["order"] is None
    assert body["errors"] == [
        {
            "__typename": "PlaceOrderError",
            "code": "BAD_USER_INPUT",
            "field": ["input", "quantity"],
            "message": body["errors"][0]["message"],
        }
    ]
    orders = await gql("{ myOrders { totalCount edges { node { id } } } }", token=user.token)
    assert orders["data"]["myOrders"] == {"totalCount": 0, "edges": []}
    # authentication stays a top-level error
    anonymous = await gql(place, {"i": bad})
    assert anonymous["data"] is None and anonymous["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_node_and_nodes_follow_each_types_visibility(gql, make_user, session_factory) -> None:  # type: ignore[no-untyped-def]
    owner, other = await make_user(), await make_user()
    m = await make_market(session_factory)
    await make_trader(session_factory, m, user_id=owner.id, cash="100")
    placed = await gql(
        "mutation($i: PlaceOrderInput!) { placeOrder(input: $i) { order { id } errors { code } } }",
        {"i": {"marketId": str(m.market_id), "side": "BUY", "type": "LIMIT", "quantity": "1", "price": "1"}},
        token=owner.token,
    )
    order_id = gql.payload(placed, "placeOrder", "order")["id"]
    query = "query($ids: [ID!]!) { nodes(ids: $ids) { __typename id ... on Market { symbol } } }"
    ids = [order_id, str(m.market_id), str(uuid.uuid4()), "not-a-uuid"]
    mine = await gql(query, {"ids": ids}, token=owner.token)
    assert [n and n["__typename"] for n in mine["data"]["nodes"]] == ["Order", "Market", None, None]
    assert mine["data"]["nodes"][0]["id"] == order_id
    theirs = await gql(query, {"ids": ids}, token=other.token)
    assert [n and n["__typename"] for n in theirs["data"]["nodes"]] == [None, "Market", None, None]
    one = await gql("query($id: ID!) { node(id: $id) { id } }", {"id": str(m.market_id)})
    assert one["data"]["node"] == {"id": str(m.market_id)}
    too_many = await gql(query, {"ids": [str(uuid.uuid4())] * 101}, token=owner.token)
    assert gql.error_code(too_many) == "BAD_USER_INPUT"
    counted = await gql("{ myOrders(first: 1) { totalCount edges { node { id } } } }", token=owner.token)
    assert counted["data"]["myOrders"]["totalCount"] == 1 and len(counted["data"]["myOrders"]["edges"]) == 1


async def test_a_domain_operation_runs_without_a_request(services, make_user, session_factory) -> None:  # type: ignore[no-untyped-def]
    """Jobs and the CLI call the same domain operations the mutations call, with an OperationContext (no request)
    in the same unit of work."""
    from models.trading import Market, MarketStatus
    from resolvers.context import OperationContext
    from resolvers.trading import markets
    from resolvers.viewer import Viewer

    admin = await make_user(roles=["ADMIN"])
    m = await make_market(session_factory)
    async with session_factory() as session:
        ctx = OperationContext(services, session, Viewer(admin.id, frozenset({"ADMIN"})))
        halted = await UnitOfWork(session).run(lambda: markets.set_status(ctx, m.market_id, MarketStatus.HALTED))
    assert halted.status is MarketStatus.HALTED
    async with session_factory() as other:  # committed by the unit of work, with its audit row
        assert (await other.get(Market, m.market_id)).status is MarketStatus.HALTED  # type: ignore[union-attr]
        audited = select(func.count()).select_from(AuditLog).where(AuditLog.target_id == str(m.market_id))
        assert (await other.execute(audited)).scalar_one() == 1
