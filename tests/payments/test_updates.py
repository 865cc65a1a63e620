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
                           idempotencyKey: "sub"}) { id } }""",
        token=user.token,
    )
    pid = created["data"]["createPayment"]["id"]

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
        await gql(
            f'mutation {{ confirmBankTransfer(paymentId: "{pid}", bankReference: "X") {{ id }} }}', token=admin.token
        )
        update = await asyncio.wait_for(stream.__anext__(), 5)
        assert update.data["paymentUpdates"] == {
            "paymentId": pid,
            "state": "CONFIRMED",
            "previousState": "AWAITING_FUNDS",
            "creditedAmount": "100",
        }
        failed = await gql(
            f'mutation {{ confirmBankTransfer(paymentId: "{pid}", bankReference: "X") {{ id }} }}', token=admin.token
        )
        assert gql.error_code(failed) == "CONFLICT"  # a refused transition publishes nothing
        await gql(
            f'mutation {{ refundPayment(paymentId: "{pid}", amount: "1", reason: "r") {{ id }} }}', token=admin.token
        )
        nxt = await asyncio.wait_for(stream.__anext__(), 5)
        assert nxt.data["paymentUpdates"]["state"] == "PARTIALLY_REFUNDED"
    finally:
        await stream.aclose()
        await ctx.close()
