"""The dramatiq worker (in-process, on a StubBroker, with the real scheduler middleware) and the in-process
indexer bring deposits to CONFIRMED; webhooks are POSTed signed, retried with backoff against a local receiver
that fails the first attempts, and dead-lettered when every retry fails."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from datetime import UTC
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import dramatiq
import pytest
from dramatiq.asyncio import get_event_loop_thread
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import AsyncIO
from standardwebhooks import Webhook, WebhookVerificationError

from core.webhooks import key_of, public_secret
from jobs import context as job_context
from models.payments import PaymentState, WebhookEndpoint
from resolvers.payments import webhooks
from tests.payments.conftest import USDC, Rig, state_is

S = PaymentState


@pytest.fixture
def worker() -> Iterator[dramatiq.Worker]:
    """All actors of jobs/actors.py moved onto a fresh StubBroker with the worker's middleware, and a worker."""
    import jobs.actors

    old = dramatiq.get_broker()
    stub = StubBroker()
    stub.add_middleware(AsyncIO())
    stub.add_middleware(jobs.actors.build_scheduler())
    stub.emit_after("process_boot")
    names = list(old.get_declared_actors())
    for name in names:
        actor = old.get_actor(name)
        actor.broker = stub
        stub.declare_actor(actor)
    dramatiq.set_broker(stub)
    w = dramatiq.Worker(stub, worker_timeout=50, worker_threads=4)
    w.start()
    try:
        yield w
    finally:
        get_event_loop_thread().run_coroutine(job_context.close_current())  # type: ignore[union-attr]
        w.stop()
        for name in names:
            stub.get_actor(name).broker = old
        dramatiq.set_broker(old)


async def test_indexer_and_worker_confirm_a_deposit_once(rig: Rig, worker: dramatiq.Worker) -> None:
    p = await rig.create("10.25")
    block = await rig.pay(p, 10_250_000)
    await rig.wait(state_is(rig, p.id, S.DETECTED))
    await rig.wait_final(block)
    await rig.wait(state_is(rig, p.id, S.CONFIRMED))
    from jobs.payments import reconcile_chain

    for _ in range(5):  # duplicate messages and the scheduler's own keep running: still one credit
        reconcile_chain.send(1)
    await asyncio.sleep(1.5)
    assert await rig.credits(p.id) == 1 and await rig.ledger_balanced()
    assert (await rig.payment(p.id)).credited_amount == 10.25


class Receiver:
    """A local webhook receiver: /ok answers 500 to the first `fail_first` attempts of each delivery, /down always."""

    def __init__(self, fail_first: int) -> None:
        self.fail_first = fail_first
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((self.path, dict(self.headers), body))
                delivery = self.headers["webhook-id"]
                seen = sum(1 for _, h, _ in receiver.requests if h["webhook-id"] == delivery)
                ok = self.path == "/ok" and seen > receiver.fail_first
                self.send_response(200 if ok else 500)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


async def test_webhooks_signed_retried_and_dead_lettered(
    rig: Rig, worker: dramatiq.Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jobs.webhooks import deliver_webhook

    monkeypatch.setitem(deliver_webhook.options, "min_backoff", 50)
    monkeypatch.setitem(deliver_webhook.options, "max_backoff", 200)
    monkeypatch.setitem(deliver_webhook.options, "max_retries", 3)
    with Receiver(fail_first=2) as receiver:
        async with rig.factory() as s:
            s.add_all([WebhookEndpoint(url=receiver.url + "/ok"), WebhookEndpoint(url=receiver.url + "/down")])
            await s.commit()
        p = await rig.create("3")
        block = await rig.pay(p, 3 * USDC)
        await rig.wait_final(block)
        await rig.wait(state_is(rig, p.id, S.CONFIRMED))

        async def settled() -> bool:
            return await rig.scalar("SELECT count(*) FROM webhook_deliveries WHERE state IN ('PENDING', 'QUEUED')") == 0

        await rig.wait(settled, timeout=30)

    # what a receiver configures: the whsec_ form of WEBHOOK_SECRET
    receiver_secret = public_secret(key_of(rig.settings.webhook_secret.get_secret_value()))  # type: ignore[union-attr]
    ok = [(h, b) for path, h, b in receiver.requests if path == "/ok"]
    events = [json.loads(b)["event"] for h, b in ok]
    # each event failed twice then went through: 3 attempts each, all signed per Standard Webhooks (verified by
    # its reference library), the same webhook-id on every attempt of a delivery
    assert {"payment.awaiting_funds", "payment.confirmed"} <= set(events)  # DETECTED too if a pass saw it unfinal
    assert all(events.count(e) == 3 for e in set(events))
    assert all(Webhook(receiver_secret).verify(b, h)["event"] for h, b in ok)
    assert len({h["webhook-id"] for h, _ in ok}) == len(set(events))
    with pytest.raises(WebhookVerificationError):
        Webhook(public_secret(b"wrong" * 8)).verify(ok[0][1], ok[0][0])
    confirmed = [json.loads(b) for h, b in ok if json.loads(b)["event"] == "payment.confirmed"][0]
    assert confirmed["data"]["id"] == str(p.id) and confirmed["data"]["creditedAmount"] in ("3", "3.000000000000000000")
    async with rig.factory() as s:
        delivered = await webhooks.deliveries(s, "DELIVERED", 50, None)
        dead = await webhooks.deliveries(s, "DEAD", 50, None)
    assert len(delivered.rows) == len(set(events)) and all(
        d.attempts == 3 and d.url.endswith("/ok") for d in delivered.rows
    )
    # the always-failing endpoint: 1 try + 3 retries, then a dead letter with the last error
    assert len(dead.rows) == len(set(events)) and all(
        d.url.endswith("/down") and d.last_error == "HTTP 500" for d in dead.rows
    )
    assert [d.attempts for d in dead.rows] == [4] * len(dead.rows)


async def test_trading_actors_run_against_the_schema(pay_settings, worker: dramatiq.Worker) -> None:  # type: ignore[no-untyped-def]
    """GTD expiry and candle roll-ups run to completion on the worker (no markets: nothing to do)."""
    from jobs.candles import roll_up_candles
    from jobs.orders import expire_orders

    broker = worker.broker
    for actor in (expire_orders, roll_up_candles):
        actor.send_with_options(max_retries=0)
    await asyncio.to_thread(broker.join, "trading", fail_fast=True, timeout=20_000)
    assert not broker.dead_letters


async def test_kyc_expiry_actor_expires_a_lapsed_approval(pay_settings, factory, worker: dramatiq.Worker) -> None:  # type: ignore[no-untyped-def]
    """The periodic KYC job runs on the worker and writes EXPIRED on a lapsed approval (committed data)."""
    import uuid
    from datetime import datetime, timedelta

    from jobs.kyc import expire_kyc_approvals
    from models.identity import KycCase, KycStatus, User

    user_id, case_id = uuid.uuid4(), uuid.uuid4()
    async with factory() as s:
        s.add(User(id=user_id, email=f"kyc-{user_id.hex[:8]}@example.com", password_hash="x"))
        await s.flush()
        s.add(
            KycCase(
                id=case_id,
                user_id=user_id,
                status=KycStatus.APPROVED,
                expires_at=datetime.now(UTC) - timedelta(seconds=1),
            )
        )
        await s.commit()
    expire_kyc_approvals.send_with_options(max_retries=0)
    await asyncio.to_thread(worker.broker.join, "identity", fail_fast=True, timeout=20_000)
    assert not worker.broker.dead_letters
    async with factory() as s:
        assert (await s.get(KycCase, case_id)).status is KycStatus.EXPIRED  # type: ignore[union-attr]


async def test_gtd_expiry_actor_publishes_the_expiry_once(  # type: ignore[no-untyped-def]
    pay_settings, factory, worker: dramatiq.Worker
) -> None:
    """The worker's GTD expiry reaches the API's subscribers: the expired order's book and order events, once, on
    the API's Redis prefix (the job published nothing before: subscribers never saw an order expire)."""
    import uuid
    from datetime import datetime, timedelta
    from decimal import Decimal

    from jobs.orders import expire_orders
    from models.trading import OrderStatus, OrderType, Side, TimeInForce
    from resolvers.trading.orders import OrderRequest, place_order
    from tests.trading.factories import make_market, make_trader
    from tests.trading.live import listening

    m = await make_market(factory)
    trader = await make_trader(factory, m, cash="100")
    expires = datetime.now(UTC) + timedelta(seconds=1)
    req = OrderRequest(
        m.market_id, Side.BUY, OrderType.LIMIT, Decimal("2"), Decimal("1.00"), TimeInForce.GTD, expires, "gtd-1"
    )
    async with factory() as s:
        placed = await place_order(s, trader.user_id, req, request_id=str(uuid.uuid4()))
        await s.commit()
    assert placed.order.status == OrderStatus.NEW
    async with listening(pay_settings.redis_url, pay_settings.redis_prefix) as listener:
        await asyncio.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 0.05)
        expire_orders.send_with_options(max_retries=0)
        await asyncio.to_thread(worker.broker.join, "trading", fail_fast=True, timeout=20_000)
        assert not worker.broker.dead_letters
        got: list[tuple[str, dict[str, Any]]] = []
        while (message := await listener.get_message(ignore_subscribe_messages=True, timeout=1)) is not None:
            got.append(
                (message["channel"].decode().removeprefix(pay_settings.redis_prefix), json.loads(message["data"]))
            )
    mine = [body for channel, body in got if channel.startswith("user:")]
    assert [(o["client_order_id"], o["status"]) for o in mine] == [("gtd-1", "EXPIRED")]
    book = [body for channel, body in got if channel.endswith(":book")]
    assert len(book) == 1 and str(m.market_id) in next(c for c, _ in got if c.endswith(":book"))
