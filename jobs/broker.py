"""Installs the dramatiq broker from settings: RabbitMQ when BROKER_URL is amqp://, otherwise Redis
(BROKER_URL if it is a redis:// / unix:// URL, else REDIS_URL). `configure_broker(stub=True)` gives tests a
StubBroker they can drain synchronously."""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import AsyncIO

from core.settings import get_settings


def make_broker(url: str | None) -> dramatiq.Broker:
    if url and url.startswith(("amqp://", "amqps://")):
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        broker: dramatiq.Broker = RabbitmqBroker(url=url)
    elif url:
        from dramatiq.brokers.redis import RedisBroker

        broker = RedisBroker(url=url, namespace=get_settings().redis_prefix + "dramatiq")
    else:
        broker = StubBroker()
        broker.emit_after("process_boot")
    broker.add_middleware(AsyncIO())
    return broker


def configure_broker(*, stub: bool = False) -> dramatiq.Broker:
    from core import tracing

    settings = get_settings()
    broker = StubBroker() if stub else make_broker(settings.broker_url or settings.redis_url)
    if stub:
        broker.add_middleware(AsyncIO())
        broker.emit_after("process_boot")
    from jobs.metrics import JobMetrics

    broker.add_middleware(JobMetrics())  # jobs processed/failed/duration, workers alive (jobs/metrics.py)
    if tracing.setup(settings):  # trace context travels in the messages (core/tracing.py); off: nothing added
        broker.add_middleware(tracing.dramatiq_middleware())
    dramatiq.set_broker(broker)
    return broker


broker = configure_broker(stub=get_settings().redis_url is None and get_settings().broker_url is None)
