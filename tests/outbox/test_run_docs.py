"""The workers' and consumers' run(), written once, is documented by each class as its own."""

from __future__ import annotations

import inspect

import pytest

from tactical.outbox import AsyncOutboxRelay, AsyncTimerWorker, OutboxRelay, TimerWorker
from tactical.outbox.rabbitmq import AsyncRabbitMQConsumer, RabbitMQConsumer
from tactical.outbox.redis_streams import AsyncRedisStreamConsumer, RedisStreamConsumer
from tactical.projections import AsyncProjectionRunner, ProjectionRunner

RUNNERS: list[type] = [
    OutboxRelay,
    AsyncOutboxRelay,
    TimerWorker,
    AsyncTimerWorker,
    ProjectionRunner,
    AsyncProjectionRunner,
    RabbitMQConsumer,
    AsyncRabbitMQConsumer,
    RedisStreamConsumer,
    AsyncRedisStreamConsumer,
]


@pytest.mark.parametrize("cls", RUNNERS, ids=lambda cls: cls.__name__)
def test_run_is_the_classs_own_documented_method(cls: type) -> None:
    run = vars(cls).get("run")
    assert inspect.isfunction(run), f"{cls.__name__}.run is not its own"
    assert run.__qualname__ == f"{cls.__qualname__}.run"
    assert inspect.iscoroutinefunction(run) == cls.__name__.startswith("Async")
    doc = inspect.getdoc(run) or ""
    assert "documents its own" not in doc
    assert "stop" in inspect.signature(run).parameters
    assert "stop: Set it" in doc


def test_classes_sharing_a_run_document_it_each_in_their_own_words() -> None:
    docs = {inspect.getdoc(vars(cls)["run"]) for cls in RUNNERS}
    assert len(docs) == len(RUNNERS)
