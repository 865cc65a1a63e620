"""The job broker follows settings: RabbitMQ for an amqp:// BROKER_URL, Redis otherwise. Both deliver a message
to a worker (real servers: RabbitMQ and Redis on this machine, or TEST_BROKER_URL)."""

from __future__ import annotations

import os
import threading
import uuid

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.redis import RedisBroker

from jobs.broker import make_broker

RABBITMQ_URL = os.environ.get("TEST_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")


def _round_trip(broker: dramatiq.Broker) -> str:
    """Declare a throwaway actor on `broker`, send it a message and run a worker until it has run."""
    done = threading.Event()
    seen: list[str] = []
    queue = f"rwa_test_{uuid.uuid4().hex[:8]}"

    def record(payload: str) -> None:
        seen.append(payload)
        done.set()

    actor = dramatiq.Actor(
        record, broker=broker, actor_name=f"record_{queue}", queue_name=queue, priority=0, options={"max_retries": 0}
    )
    token = uuid.uuid4().hex
    actor.send(token)
    worker = dramatiq.Worker(broker, queues={queue}, worker_threads=1, worker_timeout=100)
    worker.start()
    try:
        assert done.wait(20), "the worker never ran the message"
    finally:
        worker.stop()
        if isinstance(broker, RabbitmqBroker):  # leave no test queues on the server
            for name in (queue, f"{queue}.DQ", f"{queue}.XQ"):
                broker.channel.queue_delete(name)
        broker.close()
    assert seen == [token]
    return token


def test_amqp_url_selects_rabbitmq_and_delivers() -> None:
    broker = make_broker(RABBITMQ_URL)
    assert isinstance(broker, RabbitmqBroker)
    _round_trip(broker)


def test_redis_url_selects_redis_and_delivers(redis_url: str) -> None:
    broker = make_broker(redis_url)
    assert isinstance(broker, RedisBroker)
    _round_trip(broker)
