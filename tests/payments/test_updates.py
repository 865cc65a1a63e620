"""paymentUpdates: the current state first, then every committed transition, through Redis pub/sub; only the
owner (or ADMIN/COMPLIANCE) may listen."""

from __future__ import annotations

import asyncio

from starlette.websockets import WebSocket

from resolvers.viewer import viewer_from_headers
from schema import build_schema
from server.context import Context

SUB = "subscription($id: UUID!) { paymentUpdates(id: $id) { paymentId state previousState creditedAmount } }"


async def _never() -> None:  # a socket nobody talks to
    await asyncio.Future()


async def subscribe(services, token: str, pid: str):  # type: ignore[no-untyped-def]
    viewer = await viewer_from_headers(services, f"Bearer {token}", None, "127.0.0.1")
    socket = WebSocket(
        {"type": "websocket", "path": "/graphql", "headers": [], "client": ("127.0.0.1", 50002)},
        receive=_never,
        send=_never,
    )  # type: ignore[arg-type]
    context = Context(services, socket, socket, viewer)
    schema = build_schema(services.settings)
    return await schema.subscribe(SUB, variable_values={"id": pid}, context_value=context), context


async def test_owner_sees_the_current_state_then_each_transition(gql, make_user, services) -> None:  # type: ignore[no-untyped-def]
    user, admin, stranger = await make_user(), await make_user(roles=["ADMIN"]), await make_user()
    created = await gql(
        """mutation { createPayment(input: {amount: "100.00", currency: "USD", method: BANK_TRANSFER,
                           idempotencyKey: "sub"}) { payment { id } } }""",
        token=user.token,
    )
    pid = created["data"]["createPayment"]["payment"]["id"]

    denied, ctx = await subscribe(services, stranger.token, pid)
    first = await asyncio.wait_for(denied.__anext__(), 5)
    assert first.errors and first.errors[0].extensions["code"] == "NOT_FOUND"
    await denied.aclose()
    await ctx.close()

    stream, ctx = await subscribe(services, user.token, pid)
    try:
        now = await asyncio.wait_for(stream.__anext__(), 5)
        assert now.data["paymentUpdates"] == {
            "paymentId": pid,
            "state": "AWAITING_FUNDS",
            "previousState": None,
            "creditedAmount": "0",
        }
        await asyncio.sleep(0.2)  # the Redis subscription is up
        confirm = (
            f'mutation {{ confirmBankTransfer(input: {{paymentId: "{pid}", bankReference: "X"}}) '
            "{ payment { id } errors { code } } }"
        )
        gql.payload(await gql(confirm, token=admin.token), "confirmBankTransfer", "payment")
        update = await asyncio.wait_for(stream.__anext__(), 5)
        assert update.data["paymentUpdates"] == {
            "paymentId": pid,
            "state": "CONFIRMED",
            "previousState": "AWAITING_FUNDS",
            "creditedAmount": "100",
        }
        failed = await gql(confirm, token=admin.token)
        assert gql.error_code(failed) == "INVALID_STATE"  # a refused transition publishes nothing
        refund = await gql(
            f'mutation {{ refundPayment(input: {{paymentId: "{pid}", amount: "1", reason: "r"}}) '
            "{ paymentRefund { id } errors { code } } }",
            token=admin.token,
        )
        gql.payload(refund, "refundPayment", "paymentRefund")
        nxt = await asyncio.wait_for(stream.__anext__(), 5)
        assert nxt.data["paymentUpdates"]["state"] == "PARTIALLY_REFUNDED"
    finally:
        await stream.aclose()
        await ctx.close()
